"""One HTTP request/response exchange, as the ASGI ``http`` scope sees it.

The protocol object (http.py) feeds the request body in; the app's ``send()`` writes the
response out through it. Responses go out in request order (pipelining): a cycle only
starts once the previous one finished.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..protocol.http import STATUS_PHRASES as _PHRASES
from .state import access_logger, escape_log, logger

if TYPE_CHECKING:
    from .link import Link

__all__ = ["RequestCycle", "STATUS_PHRASES", "check_header", "simple_response"]

#: The shared reason phrases, as bytes for building response heads.
STATUS_PHRASES: dict[int, bytes] = {code: phrase.encode() for code, phrase in _PHRASES.items()}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


def check_header(name: bytes, value: bytes) -> None:
    """Refuse a response header that could split the response (CR, LF, NUL) or is not a
    valid field name: data must never be able to inject headers."""
    if _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value):
        raise ValueError(f"invalid response header {name!r}")


def simple_response(status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = (),
                    *, close: bool = True, date: bytes = b"") -> bytes:
    """A complete response with a text body (errors, 503s, WebSocket refusals)."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES.get(status, b"Unknown")), date,
             b"content-type: text/plain; charset=utf-8\r\n",
             b"content-length: %d\r\n" % len(body)]
    for name, value in headers:
        lines.append(name + b": " + value + b"\r\n")
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines) + body


class RequestCycle:
    """ASGI ``receive``/``send`` for one request; the body arrives through ``feed_body``."""

    __slots__ = (
        "protocol", "scope", "method", "keep_alive", "expect_100", "_body", "_more_body",
        "_waiter", "disconnected", "response_started", "response_complete", "_chunked",
        "_expected_length", "_sent_length", "_status", "_head_only", "_pending_head", "_drained",
    )

    def __init__(self, protocol: Link, scope: dict[str, Any], *, keep_alive: bool,
                 expect_100: bool) -> None:
        self.protocol = protocol
        self.scope = scope
        self.method: str = scope["method"]
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self._body: deque[bytes] = deque()
        self._more_body = True
        self._waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self._chunked = False
        self._expected_length: int | None = None
        self._sent_length = 0
        self._status = 0
        self._head_only = self.method == "HEAD"
        self._pending_head: bytes | None = None
        self._drained = False

    # ---------------------------------------------------------------- from the protocol

    def feed_body(self, chunk: bytes) -> None:
        self._body.append(chunk)
        self._wake()

    def body_complete(self) -> None:
        self._more_body = False
        self._wake()

    @property
    def request_complete(self) -> bool:
        """The whole request body has been received from the client."""
        return not self._more_body

    def buffered(self) -> int:
        return sum(map(len, self._body))

    def disconnect(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self.protocol.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # --------------------------------------------------------------------- ASGI receive

    async def receive(self) -> dict[str, Any]:
        if self.expect_100 and self._more_body:
            # RFC 9110 §10.1.1: the client waits for this before sending the body; send it
            # only when the app asks for the body, so a refusal costs no upload.
            self.expect_100 = False
            self.protocol.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._drained:
            # The whole body was handed over: the next event is the end of the exchange.
            while not self.disconnected and not self.response_complete:
                await self._wait()
            return {"type": "http.disconnect"}
        while not self._body and self._more_body and not self.disconnected:
            self.protocol.resume_reading()
            await self._wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        body = b"".join(self._body)
        self._body.clear()
        self.protocol.body_consumed()
        if not self._more_body:
            self._drained = True
        return {"type": "http.request", "body": body, "more_body": self._more_body}

    # ------------------------------------------------------------------------ ASGI send

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected:
            return  # ASGI: sends after a disconnect are dropped, the app learns by receive
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("http.response.start sent twice")
            self._start(message)
        elif kind == "http.response.body":
            if not self.response_started:
                raise RuntimeError("http.response.body before http.response.start")
            if self.response_complete:
                raise RuntimeError("http.response.body after the response completed")
            await self._body_message(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in an http scope")

    def _start(self, message: dict[str, Any]) -> None:
        status = int(message["status"])
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status}")
        self.response_started = True
        self._status = status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES.get(status, b"Unknown"))]
        has_date = False
        for name, value in message.get("headers", ()):
            name = bytes(name)
            value = bytes(value)
            check_header(name, value)
            lower = name.lower()
            if lower == b"content-length":
                self._expected_length = int(value)
            elif lower == b"transfer-encoding":
                continue  # framing is ours to choose
            elif lower == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                continue
            elif lower == b"date":
                has_date = True
            lines.append(name + b": " + value + b"\r\n")
        if not has_date:
            lines.append(self.protocol.state.date_header())
        self._pending_head = b"".join(lines)

    def _no_body_status(self) -> bool:
        return self._status < 200 or self._status in (204, 304)

    async def _body_message(self, body: bytes, more_body: bool) -> None:
        protocol = self.protocol
        head = self._pending_head
        out: list[bytes] = []
        if head is not None:
            self._pending_head = None
            if self._expected_length is None and not self._no_body_status():
                if more_body:
                    self._chunked = True
                    head += b"transfer-encoding: chunked\r\n"
                else:
                    head += b"content-length: %d\r\n" % len(body)
            if self._more_body:
                # The app answers before the whole request body arrived: the connection
                # will close after this response, so say so (RFC 9112 §9.6).
                self.keep_alive = False
            if not self.keep_alive:
                head += b"connection: close\r\n"
            out.append(head + b"\r\n")
        if body and not self._head_only and not self._no_body_status():
            self._sent_length += len(body)
            if self._expected_length is not None and self._sent_length > self._expected_length:
                raise RuntimeError("response body longer than its Content-Length")
            if self._chunked:
                out.append(b"%x\r\n" % len(body) + bytes(body) + b"\r\n")
            else:
                out.append(bytes(body))
        if not more_body:
            if self._chunked and not self._head_only:
                out.append(b"0\r\n\r\n")
            self.response_complete = True
        if out:
            protocol.write(b"".join(out))
        if not more_body:
            if (self._expected_length is not None and not self._head_only
                    and not self._no_body_status() and self._sent_length != self._expected_length):
                self.keep_alive = False  # the framing is broken: the connection cannot go on
                logger.error("response body shorter than its Content-Length")
            self._log()
            self._wake()
            protocol.response_complete(self)
        else:
            await protocol.drain()

    def _log(self) -> None:
        if not self.protocol.state.config.access_log:
            return
        scope = self.scope
        client = scope.get("client") or ("-", 0)
        target = scope.get("raw_path", b"").decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        access_logger.info('%s:%s - "%s %s HTTP/%s" %d', client[0], client[1],
                           escape_log(self.method), escape_log(target),
                           scope["http_version"], self._status)

    # ----------------------------------------------------------------------- running

    async def run(self, app: Any) -> None:
        """Call the app; answer 500 if it fails before responding, close if after."""
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:  # noqa: BLE001 - the server must survive the app
            if isinstance(exc, asyncio.CancelledError) and self.disconnected:
                return
            logger.exception("exception in ASGI application", exc_info=exc)
            if self._pending_head is not None:  # started, but nothing written yet
                self.response_started = False
            if not self.response_started and not self.disconnected:
                self._internal_error()
            elif not self.response_complete:
                self.protocol.abort_response()
            if not isinstance(exc, Exception):
                raise
            return
        if not self.response_complete and not self.disconnected:
            if not self.response_started:
                logger.error("ASGI application returned without a response")
                self._internal_error()
            else:
                logger.error("ASGI application returned before completing the response")
                self.protocol.abort_response()

    def _internal_error(self) -> None:
        self.keep_alive = False
        self.response_started = True
        self.response_complete = True
        self._status = 500
        self.protocol.write(simple_response(500, b"Internal Server Error",
                                            date=self.protocol.state.date_header()))
        self._log()
        self.protocol.response_complete(self)
