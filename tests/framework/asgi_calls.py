"""Calling ASGI apps directly, the way a server does: ``receive()`` hands over the request
body in ``http.request`` events and then waits, like a server, until the response is
complete (or the test disconnects the client) to report ``http.disconnect``; ``send()``
records every message and checks the ASGI 3 ordering rules as it goes.

This is the ASGI interface itself, not a mock of anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT = 5.0


def http_scope(path: str = "/", *, method: str = "GET",
               headers: Iterable[tuple[str, str]] = (), query_string: bytes = b"",
               root_path: str = "", scheme: str = "http") -> dict[str, Any]:
    """An ASGI 3 ``http`` scope as the built-in server builds it (path decoded)."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": method, "scheme": scheme, "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"), "query_string": query_string,
        "root_path": root_path,
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }


class Exchange:
    """One request/response exchange: the body to hand over and what the app sent."""

    def __init__(self, body: bytes | list[bytes] = b"", *,
                 disconnect_after_sends: int | None = None) -> None:
        self.chunks = [body] if isinstance(body, bytes) else list(body) or [b""]
        self.messages: list[dict[str, Any]] = []
        self.receive_calls = 0
        self._disconnect_after = disconnect_after_sends
        self._gone = asyncio.Event()

    # ------------------------------------------------------------------ ASGI side

    async def receive(self) -> dict[str, Any]:
        self.receive_calls += 1
        if self.chunks and not self._gone.is_set():
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if not self.messages:
            assert kind == "http.response.start", f"first message is {kind}"
            assert isinstance(message["status"], int)
            for name, value in message.get("headers", []):
                assert isinstance(name, bytes) and isinstance(value, bytes)
                assert name == name.lower(), f"header name {name!r} is not lower-case"
        else:
            assert kind == "http.response.body", f"unexpected {kind} after the start"
            assert not self.complete, "a body message after the response completed"
            assert isinstance(message.get("body", b""), bytes)
        self.messages.append(message)
        if self.complete:
            self._gone.set()
        if self._disconnect_after is not None and len(self.messages) >= self._disconnect_after:
            self._gone.set()

    def disconnect(self) -> None:
        self._gone.set()

    # ---------------------------------------------------------------- test side

    @property
    def complete(self) -> bool:
        return len(self.messages) > 1 and not self.messages[-1].get("more_body", False)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1"))
                for n, v in self.messages[0].get("headers", [])]

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    @property
    def body_messages(self) -> list[dict[str, Any]]:
        return self.messages[1:]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.body_messages)


def run(awaitable: Awaitable[T]) -> T:
    """Run one coroutine on a fresh event loop, with a timeout so a hang fails fast."""
    async def bounded() -> T:
        return await asyncio.wait_for(awaitable, TIMEOUT)
    return asyncio.run(bounded())


def call(app: Any, scope: dict[str, Any] | None = None, body: bytes | list[bytes] = b"",
         **exchange_options: Any) -> Exchange:
    """Call ``app`` with ``scope`` (a GET of ``/`` by default) and return the exchange."""
    exchange = Exchange(body, **exchange_options)
    run(app(scope or http_scope(), exchange.receive, exchange.send))
    assert exchange.complete, "the app returned without completing its response"
    return exchange
