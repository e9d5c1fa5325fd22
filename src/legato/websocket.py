"""The WebSocket object handlers receive (SPEC §3, W1-W16).

It speaks ASGI to whatever server runs the App (legato's own, uvicorn, hypercorn...),
adding what handlers need on top: typed receive/send (W2, W3, W14), state (W1), close
rules (W5, W6), denial (W7), liveness (W16) and the facts of the handshake (W11).

States (``ws.state``)::

    CONNECTING ──accept()──▶ OPEN ──close()──▶ CLOSING ──sent──▶ CLOSED
        │                      └──peer closes / drops / send fails──▶ CLOSED
        └──reject() / close() before accept──▶ CLOSED (HTTP denial)

A Close frame without a status code arrives as 1005 (RFC 6455 §7.1.5); where legato
decides whether a closure was normal (``caught_close_codes``, ``async for``), 1005 counts
as 1000: it is what browsers send for ``ws.close()`` without a code.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import jsoncodec
from .exceptions import InvalidMessage, WebSocketDisconnect
from .protocol.close import check_send_code
from .scope import HTTPConnection
from .typed import dump_value, validator_for

__all__ = ["WebSocket", "WebSocketState", "Close", "ws_send", "ws_close", "ws_accept",
           "Rejected"]

logger = logging.getLogger("legato.websocket")

#: Validators of typed messages, by type, shared by all connections (building one is
#: far more expensive than a message).
_VALIDATORS: dict[Any, Callable[[Any], Any]] = {}

#: Messages wait_closed() keeps for a handler that has not read them yet. Beyond this it
#: discards what arrives (logged once) and goes on reading: a handler waiting for the end
#: must see the peer's Close, which TCP delivers only after every message sent before it.
_MAX_PENDING = 256


class WebSocketState(enum.Enum):
    CONNECTING = "CONNECTING"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


CONNECTING = WebSocketState.CONNECTING
OPEN = WebSocketState.OPEN
CLOSING = WebSocketState.CLOSING
CLOSED = WebSocketState.CLOSED


@dataclass(frozen=True)
class Close:
    """Yield from a generator handler to close the connection (R4)."""

    code: int = 1000
    reason: str = ""


def ws_send(data: str | bytes) -> dict[str, Any]:
    """A raw ``websocket.send`` event (Shallot's helper, seed 003)."""
    if isinstance(data, str):
        return {"type": "websocket.send", "text": data}
    return {"type": "websocket.send", "bytes": bytes(data)}


def ws_close(code: int = 1000, reason: str = "") -> dict[str, Any]:
    """A raw ``websocket.close`` event (seed 003)."""
    return {"type": "websocket.close", "code": code, "reason": reason}


def ws_accept(subprotocol: str | None = None) -> dict[str, Any]:
    """A raw ``websocket.accept`` event, e.g. returned by ``on_connect`` (seed 003)."""
    return {"type": "websocket.accept", "subprotocol": subprotocol}


class Rejected(BaseException):
    """Raised by :meth:`WebSocket.reject` after the denial is sent, so the handler stops
    there; the App ends the connection quietly. A BaseException, so a handler's
    ``except Exception`` does not swallow it."""


def normal_code(code: int) -> int:
    return 1000 if code == 1005 else code


def is_caught(code: int, caught: Sequence[int] | str) -> bool:
    """Does ``caught_close_codes`` cover ``code`` (1005 counting as 1000)?"""
    if caught == "all":
        return True
    return code in caught or normal_code(code) in caught


class WebSocket(HTTPConnection):
    """One WebSocket connection, as a handler sees it.

    ``receive_type``/``send_type``: None (str for text, bytes for binary; str/bytes sent
    as is, anything else as JSON), ``"text"``, ``"bytes"``, ``"json"``, or a pydantic
    model / dataclass type (JSON validated into it, W14).
    """

    __slots__ = (
        "_receive", "_send", "state", "receive_type", "send_type", "caught_close_codes",
        "max_message_size", "subprotocol", "close_code", "close_reason", "client_closed",
        "opened", "_connect_seen", "_pending", "_reader_busy", "_waiters",
        "_disconnect_seen", "accept_headers", "_check_sizes", "__weakref__",
        "metrics", "_session",
    )

    def __init__(self, scope: dict[str, Any], receive: Callable[[], Any],
                 send: Callable[[dict[str, Any]], Any], receive_type: Any = None,
                 send_type: Any = None, caught_close_codes: Sequence[int] | str = (1000, 1001),
                 max_message_size: int | None = None) -> None:
        super().__init__(scope)
        self._receive = receive
        self._send = send
        self.state = CONNECTING
        self.receive_type = receive_type
        self.send_type = send_type
        self.caught_close_codes = caught_close_codes
        self.max_message_size = max_message_size
        #: The subprotocol chosen at accept (None: none).
        self.subprotocol: str | None = None
        #: Set when the connection has ended: the peer's code, ours, or 1006.
        self.close_code: int | None = None
        self.close_reason = ""
        #: True when the peer started the closing (or dropped): on_disconnect runs then.
        self.client_closed = False
        #: True once accepted: lifecycle callbacks run only for connections that opened.
        self.opened = False
        self._connect_seen = False
        # Events read ahead by wait_closed() (a short list: it stays small, and an empty
        # list costs far less than a deque per idle connection).
        self._pending: list[dict[str, Any]] = []
        self._reader_busy = False  # a task is inside self._receive()
        self._waiters: list[asyncio.Future[None]] | None = None
        self._disconnect_seen = False
        #: Called at accept for extra response headers (the App sets the session cookie).
        self.accept_headers: Callable[[], list[tuple[str, str]]] | None = None
        extensions = scope.get("extensions")
        extension = extensions.get("legato.websocket") if extensions else None
        #: legato's server session when the App runs on it (its "legato.websocket"
        #: extension): sends skip the ASGI layer.
        self._session = extension.get("session") if extension else None
        # legato's server enforces max_message_size itself (told at accept).
        self._check_sizes = max_message_size is not None and self._session is None
        #: The route's counters when the App has metrics on (P7), else None.
        self.metrics: Any = None

    # ------------------------------------------------------------------ facts (W11)

    @property
    def subprotocols(self) -> list[str]:
        """Subprotocols the client offered, in its order of preference."""
        return list(self.scope.get("subprotocols", ()))

    def __repr__(self) -> str:
        return f"<WebSocket {self.path} {self.state.name}>"

    # -------------------------------------------------------------- handshake (W1, W7)

    async def _consume_connect(self) -> None:
        if not self._connect_seen:
            self._connect_seen = True
            event = await self._receive()
            if event["type"] == "websocket.disconnect":
                self._ended(event.get("code", 1006), event.get("reason") or "", peer=True)
                raise WebSocketDisconnect(self.close_code or 1006, self.close_reason)

    async def accept(self, subprotocol: str | None = None,
                     headers: Sequence[tuple[str, str]] | dict[str, str] | None = None) -> None:
        """Complete the handshake (101). Accepting an open connection again is a no-op
        (so a hook and the handler may both accept), unless it asks for another
        subprotocol; after close or reject it is a ``RuntimeError``."""
        if self.state is not CONNECTING:
            if self.state is OPEN and subprotocol in (None, self.subprotocol):
                return
            raise RuntimeError(f"cannot accept a WebSocket that is {self.state.name}")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client "
                             f"(offered: {self.subprotocols})")
        session = self._session
        if session is not None and not headers and self.accept_headers is None:
            # legato's server: no event dict, no coroutine (every connection's cost).
            self._connect_seen = True
            session.accept_now(subprotocol, self.max_message_size)
        else:
            await self._accept_event(subprotocol, headers)
        self.subprotocol = subprotocol
        self.state = OPEN
        self.opened = True
        if self.metrics is not None:
            self.metrics.open += 1
            self.metrics.opened += 1

    async def _accept_event(self, subprotocol: str | None,
                            headers: Sequence[tuple[str, str]] | dict[str, str] | None) -> None:
        if not self._connect_seen:
            await self._consume_connect()
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
        if self.accept_headers is not None:
            pairs += self.accept_headers()
        event: dict[str, Any] = {"type": "websocket.accept", "subprotocol": subprotocol,
                                 "headers": [(n.lower().encode("latin-1"),
                                              v.encode("latin-1")) for n, v in pairs]
                                 if pairs else []}
        if self._session is not None and self.max_message_size is not None:
            event["legato.max_message_size"] = self.max_message_size
        await self._send(event)

    async def reject(self, status: int = 403, body: str | bytes = b"",
                     headers: Sequence[tuple[str, str]] | dict[str, str] | None = None
                     ) -> None:
        """Deny the handshake with an HTTP ``status`` (W7), then stop the handler.

        Uses the ASGI denial-response extension where the server has it (legato's does);
        elsewhere the server answers its own 403.
        """
        if self.state is not CONNECTING:
            raise RuntimeError(f"reject() is only possible before accept (state "
                               f"{self.state.name})")
        await self.send_denial(status, body, headers)
        raise Rejected()

    async def send_denial(self, status: int, body: str | bytes = b"",
                          headers: Sequence[tuple[str, str]] | dict[str, str] | None = None,
                          ) -> None:
        """Send an HTTP response instead of accepting (no exception; see reject())."""
        await self._consume_connect()
        self.state = CLOSED
        self.close_code = 1006
        if isinstance(body, str):
            body = body.encode("utf-8")
        if "websocket.http.response" in self.scope.get("extensions", {}):
            pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
            raw = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs]
            if body and not any(n == b"content-type" for n, _ in raw):
                raw.append((b"content-type", b"text/plain; charset=utf-8"))
            await self._send({"type": "websocket.http.response.start", "status": status,
                              "headers": raw})
            await self._send({"type": "websocket.http.response.body", "body": body})
        else:
            await self._send({"type": "websocket.close", "code": 1008})

    # --------------------------------------------------------------------- receiving

    async def receive_event(self) -> dict[str, Any]:
        """The next raw ASGI event (W12): ``websocket.receive`` or, once,
        ``websocket.disconnect``; after that, ``WebSocketDisconnect``."""
        if self.state is CONNECTING:
            await self._consume_connect()
        if self._pending:
            event = self._pending.pop(0)
        elif self.state is CLOSED and self.close_code is not None and self._connect_seen \
                and self._disconnect_seen:
            raise WebSocketDisconnect(self.close_code, self.close_reason)
        else:
            event = await self._read()
        if event["type"] == "websocket.disconnect":
            self._peer_closed(event)
        return event

    def _next_event(self) -> Any:
        """The next ASGI event if it is ready, else something to await for it. On
        legato's server that is the session's future: no receive() coroutine per message
        (the per-message cost of every handler)."""
        session = self._session
        return session.next_event() if session is not None else self._receive()

    def _peer_closed(self, event: dict[str, Any]) -> None:
        """A ``websocket.disconnect`` reached the handler: the connection is over."""
        self._ended(event.get("code", 1005), event.get("reason") or "", peer=True)
        self._disconnect_seen = True

    async def _read(self) -> dict[str, Any]:
        if self._reader_busy:  # wait_closed() is reading: take what it keeps for us
            while not self._pending:
                await self._wait()
            return self._pending.pop(0)
        self._reader_busy = True
        try:
            return await self._receive()  # type: ignore[no-any-return]
        finally:
            self._reader_busy = False

    async def _message(self) -> dict[str, Any]:
        """The next ``websocket.receive`` event; ``WebSocketDisconnect`` at the end."""
        event: dict[str, Any]
        if self.state is OPEN and not self._pending and not self._reader_busy:
            ready = self._next_event()  # the common case, without a helper coroutine
            if type(ready) is dict:
                event = ready
            else:
                self._reader_busy = True
                try:
                    event = await ready
                finally:
                    self._reader_busy = False
        elif self.state is CONNECTING:
            raise RuntimeError("accept() the WebSocket before receiving (or iterate it "
                               "with `async for`, which accepts)")
        elif self.state is CLOSED and not self._pending:
            raise WebSocketDisconnect(self.close_code or 1006, self.close_reason)
        else:
            event = self._pending.pop(0) if self._pending else await self._read()
        if event["type"] != "websocket.receive":
            return self._not_a_message(event)
        if self._check_sizes:
            await self._check_size(event)
        if self.metrics is not None:
            self._count_in(event)
        return event

    def _count_in(self, event: dict[str, Any]) -> None:
        text = event.get("text")
        self.metrics.received(text if text is not None else event.get("bytes") or b"")

    def _not_a_message(self, event: dict[str, Any]) -> dict[str, Any]:
        if event["type"] == "websocket.disconnect":
            self._peer_closed(event)
            raise WebSocketDisconnect(self.close_code or 1005, self.close_reason)
        raise RuntimeError(f"unexpected ASGI event {event['type']!r}")

    async def _check_size(self, event: dict[str, Any]) -> None:
        """The limit, for servers that cannot be told it (legato's enforces it while
        reading, before buffering: this is the fallback)."""
        limit = self.max_message_size
        assert limit is not None
        data = event.get("text")
        if data is not None:
            # UTF-8 takes 1-4 bytes per character: only the unclear middle is encoded.
            size = len(data) if len(data) * 4 <= limit or len(data) > limit else \
                len(data.encode("utf-8"))
        else:
            size = len(event.get("bytes") or b"")
        if size > limit:
            # RFC 6455 §7.4.1: 1009 for a message too big to process.
            await self._close_quietly(1009, "message too big")
            raise WebSocketDisconnect(1009, "message too big")

    async def receive(self, type: Any = None) -> Any:  # noqa: A002 - reads as English
        """The next message, decoded per ``type`` or the route's ``receive_type`` (W2)."""
        event = await self._message()
        kind = type if type is not None else self.receive_type
        if kind is None:
            text = event.get("text")
            return text if text is not None else event.get("bytes") or b""
        return self._decode(event, kind)

    async def receive_text(self) -> str:
        return self._decode(await self._message(), "text")  # type: ignore[no-any-return]

    async def receive_bytes(self) -> bytes:
        return self._decode(await self._message(), "bytes")  # type: ignore[no-any-return]

    async def receive_json(self, type: Any = None) -> Any:  # noqa: A002
        return self._decode(await self._message(), type if type is not None else "json")

    def _decode(self, event: dict[str, Any], kind: Any) -> Any:
        text = event.get("text")
        if kind == "text":
            if text is None:
                raise InvalidMessage("expected a text message, got a binary one",
                                     close_code=1003)
            return text
        if kind == "bytes":
            if text is not None:
                raise InvalidMessage("expected a binary message, got a text one",
                                     close_code=1003)
            return event.get("bytes") or b""
        raw = text if text is not None else event.get("bytes") or b""
        try:
            value = jsoncodec.loads(raw)
        except ValueError as exc:
            raise InvalidMessage(f"message is not valid JSON: {exc}") from None
        if kind == "json":
            return value
        validate = _VALIDATORS.get(kind)
        if validate is None:
            validate = _VALIDATORS[kind] = validator_for(kind)
        return validate(value)

    # ----------------------------------------------------------------------- sending

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send a raw ASGI event (W12): websocket.send, websocket.close,
        websocket.accept."""
        kind = event.get("type")
        if kind == "websocket.send":
            await self._deliver(event)
        elif kind == "websocket.close":
            await self.close(int(event.get("code", 1000)), event.get("reason") or "")
        elif kind == "websocket.accept":
            await self.accept(event.get("subprotocol"), [
                (bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                for n, v in event.get("headers", ())])
        else:
            raise ValueError(f"cannot send an ASGI event of type {kind!r}")

    async def send(self, data: Any) -> None:
        """Send one message, encoded per the route's ``send_type`` (W3)."""
        kind = self.send_type
        if kind is None:
            session = self._session
            if session is not None and self.state is OPEN and \
                    (type(data) is str or type(data) is bytes) and session.write_message(data):
                # legato's server: written now, no ASGI dict, no server coroutine.
                if session.http.write_paused:
                    await session.http.drain()
                if self.metrics is not None:
                    self.metrics.sent(data)
                return
            if type(data) is str:
                event: dict[str, Any] = {"type": "websocket.send", "text": data}
            elif isinstance(data, (bytes, bytearray, memoryview)):
                event = {"type": "websocket.send", "bytes": bytes(data)}
            else:
                await self.send_json(data)
                return
            if self.state is not OPEN:
                await self._not_open()
            try:
                await self._send(event)
            except Exception as exc:  # noqa: BLE001 - see _send_failed
                await self._send_failed(exc)
            if self.metrics is not None:
                self.metrics.sent(data)
            return
        if kind == "text":
            await self.send_text(data)
        elif kind == "bytes":
            await self.send_bytes(data)
        else:
            await self.send_json(data)

    async def send_text(self, data: str) -> None:
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes a str, not {type(data).__name__}")
        await self._deliver({"type": "websocket.send", "text": data})

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"send_bytes() takes bytes, not {type(data).__name__}")
        await self._deliver({"type": "websocket.send", "bytes": bytes(data)})

    async def send_json(self, data: Any, mode: str = "text") -> None:
        """JSON-encode ``data`` (models and dataclasses included) in a text frame, or a
        binary one with ``mode="binary"``."""
        encoded = jsoncodec.dumps(dump_value(data))
        if mode == "binary":
            await self._deliver({"type": "websocket.send", "bytes": encoded})
        else:
            await self._deliver({"type": "websocket.send", "text": encoded.decode("utf-8")})

    async def _deliver(self, event: dict[str, Any]) -> None:
        if self.state is not OPEN:
            await self._not_open()
        try:
            await self._send(event)
        except Exception as exc:  # noqa: BLE001 - see _send_failed
            await self._send_failed(exc)
        if self.metrics is not None:
            data = event.get("text")
            self.metrics.sent(data if data is not None else event.get("bytes") or b"")

    async def _send_failed(self, exc: Exception) -> None:
        """W16: a send to a peer that left raises WebSocketDisconnect with its code
        (servers signal it differently: legato's ClientDisconnected, uvicorn's, ...)."""
        if isinstance(exc, (TypeError, ValueError)):
            raise exc
        code = await self._learn_close_code()
        raise WebSocketDisconnect(code, self.close_reason) from exc

    async def _not_open(self) -> None:
        if self.state is CONNECTING:
            raise RuntimeError("accept() the WebSocket before sending")
        if self.client_closed:
            raise WebSocketDisconnect(self.close_code or 1006, self.close_reason)
        raise RuntimeError(f"cannot send on a WebSocket that is {self.state.name} "
                           "(the server closed it)")

    async def _learn_close_code(self) -> int:
        """After a failed send: read the disconnect event (keeping any messages before
        it) so the exception carries the peer's code; 1006 if none comes."""
        if self.state is not CLOSED:
            try:
                await asyncio.wait_for(self._drain_to_close(), 1.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                pass
        if self.state is not CLOSED:
            self._ended(1006, "", peer=True)
        return self.close_code or 1006

    # ----------------------------------------------------------------------- closing

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code`` (RFC 6455 §7.4: 1000-1003, 1007-1014, 3000-4999, else
        ``ValueError``). Before accept this denies the handshake (403). After the peer
        closed it does nothing; closing twice is a ``RuntimeError`` (W5)."""
        check_send_code(code, reason)
        if self.state is CONNECTING:
            await self.send_denial(403)
            return
        if self.state is CLOSED:
            if self.client_closed:
                return
            raise RuntimeError("close() called on a WebSocket that is already closed")
        if self.state is CLOSING:
            raise RuntimeError("close() called twice")
        await self._close_quietly(code, reason)

    async def _close_quietly(self, code: int, reason: str) -> None:
        self.state = CLOSING
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:  # noqa: BLE001 - the peer left meanwhile: closed either way
            logger.debug("close on a connection the peer already left", exc_info=True)
        self._ended(code, reason, peer=False)

    async def ensure_closed(self, code: int = 1000, reason: str = "") -> None:
        """Close unless already closed or closing; never raises for the state (W5)."""
        if self.state is OPEN:
            await self._close_quietly(code, reason)
        elif self.state is CONNECTING:
            await self.send_denial(403)

    def _ended(self, code: int, reason: str, *, peer: bool) -> None:
        if self.state is not CLOSED:
            self.state = CLOSED
            self.close_code = code
            self.close_reason = reason
            self.client_closed = peer
        self._wake()

    async def wait_closed(self) -> int:
        """Wait until the connection ends; return its close code (W16).

        Works for handlers that never receive: the first 256 messages read meanwhile are
        kept for later ``receive()`` calls; later ones are discarded (logged once), so
        unread messages never keep the connection, or the handler, alive past the peer's
        Close.
        """
        discarded = 0
        while self.state is not CLOSED:
            if self.state is CONNECTING:
                raise RuntimeError("wait_closed() before accept()")
            if self._reader_busy:
                await self._wait()
                continue
            self._reader_busy = True
            try:
                event = await self._receive()
            finally:
                self._reader_busy = False
            if event["type"] == "websocket.receive" and len(self._pending) >= _MAX_PENDING:
                if not discarded:
                    logger.info("WebSocket %s: wait_closed() discards messages beyond the "
                                "%d unread it keeps", self.path, _MAX_PENDING)
                discarded += 1
                continue
            self._pending.append(event)
            if event["type"] == "websocket.disconnect":
                self._ended(event.get("code", 1005), event.get("reason") or "", peer=True)
            self._wake()
        return self.close_code or 1006

    async def _drain_to_close(self) -> None:
        await self.wait_closed()

    async def _wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        await future

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        if not waiters:
            return
        for future in waiters:
            if not future.done():
                future.set_result(None)

    # ------------------------------------------------------------ iteration, context

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Any:
        """W4: accepts first if needed; ends quietly on a normal closure."""
        if self.state is OPEN and self.receive_type is None and not self._pending \
                and not self._reader_busy and not self._check_sizes:
            # The common loop, inlined (it is the per-message cost of every handler).
            event = self._next_event()
            if type(event) is not dict:
                self._reader_busy = True  # while it waits, wait_closed() leaves it the read
                try:
                    event = await event
                finally:
                    self._reader_busy = False
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                data = text if text is not None else event.get("bytes") or b""
                if self.metrics is not None:
                    self.metrics.received(data)
                return data
            if kind == "websocket.disconnect":  # the end, without detours
                self._peer_closed(event)
                code = self.close_code or 1005
                if is_caught(code, self.caught_close_codes):
                    raise StopAsyncIteration
                raise WebSocketDisconnect(code, self.close_reason)
            self._pending.insert(0, event)  # anything else: the general path below
        if self.state is CONNECTING:
            await self.accept()
        try:
            return await self.receive()
        except WebSocketDisconnect as exc:
            if is_caught(exc.code, self.caught_close_codes):
                raise StopAsyncIteration from None
            raise

    async def __aenter__(self) -> WebSocket:
        if self.state is CONNECTING:
            await self.accept()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, WebSocketDisconnect):
            return is_caught(exc.code, self.caught_close_codes)
        if exc is None:
            await self.ensure_closed(1000)
        return False
