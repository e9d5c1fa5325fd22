"""One HTTP/1.1 client connection on asyncio streams, for the SSE transport.

httptools parses the responses (status line, fields, chunked or Content-Length bodies,
keep-alive); this module moves bytes and enforces the limits. Requests go one after the
other: the SSE stream holds one connection for its long GET, the POSTs share another
(kept alive between them, see :class:`HttpConnection.reusable`).

Failures are ``HttpFailure`` (an ``OSError``: the connection broke, or the peer sent
something that is not HTTP/1.1); the caller decides what it means for the channel.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import httptools

__all__ = ["HttpConnection", "HttpFailure", "Response", "MAX_HEAD"]

#: 64 KiB: a response head from our server is a few hundred bytes; proxies add a few
#: fields. Past it the peer is not one we want to talk to.
MAX_HEAD = 64 * 1024
#: Idle seconds after which a kept-alive connection is not reused: legato's server closes
#: idle connections after 5 s (``keepalive_timeout``), and a request sent just as the
#: server closes would be lost without knowing whether it arrived.
REUSE_WITHIN = 3.0
_READ_SIZE = 64 * 1024


class HttpFailure(OSError):
    """The connection broke, or the peer's bytes are not an HTTP/1.1 response.
    ``answered`` is False when no byte of the response arrived (the request may not
    have reached the server at all)."""

    def __init__(self, message: str, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


@dataclass(slots=True)
class Response:
    status: int
    #: Field names lower-cased; repeated fields joined with ", " (RFC 9110 §5.3).
    headers: dict[str, str]


class _Parsing:
    """httptools' callbacks for one response."""

    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.done = False
        self.body: deque[bytes] = deque()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        self.done = True


class HttpConnection:
    """Requests one at a time: :meth:`request` sends one and returns its response head,
    then :meth:`chunk` (streamed) or :meth:`read_body` gives the body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host_header: str) -> None:
        self._reader, self._writer = reader, writer
        self.host_header = host_header
        self._loop = asyncio.get_running_loop()
        self._parsing: _Parsing | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._keep_alive = False
        self._eof_ends_body = False
        self.requests = 0
        #: loop.time() when the last response ended (for :attr:`reusable`).
        self.idle_since = 0.0
        #: loop.time() when bytes last arrived.
        self.last_received = self._loop.time()

    @classmethod
    async def open(cls, host: str, port: int, host_header: str,
                   ssl: _ssl.SSLContext | None) -> HttpConnection:
        """TCP (TLS when ``ssl``); ``OSError`` when the host cannot be reached."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=host if ssl is not None else None)
        return cls(reader, writer, host_header)

    @property
    def reusable(self) -> bool:
        """The last response is complete, the server keeps the connection, and it was
        idle for less than :data:`REUSE_WITHIN` s."""
        return (self._parsing is not None and self._parsing.done and self._keep_alive
                and not self._writer.is_closing() and not self._reader.at_eof()
                and self._loop.time() - self.idle_since < REUSE_WITHIN)

    async def request(self, method: str, target: str, headers: Sequence[tuple[str, str]],
                      body: bytes | None = None) -> Response:
        """Send one request and read its response head."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._parsing = parsing = _Parsing()
        self._parser = parser = httptools.HttpResponseParser(parsing)
        self.requests += 1
        self._writer.write(head + body if body else head)
        size = 0
        while not parsing.head_done:
            data = await self._read(answered=size > 0)
            if not data:
                raise HttpFailure("the connection closed before the response head",
                                  answered=size > 0)
            size += len(data)
            if size > MAX_HEAD and not parsing.head_done:
                raise HttpFailure(f"a response head longer than {MAX_HEAD} bytes")
        fields: dict[str, str] = {}
        for name, value in parsing.fields:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            fields[key] = f"{fields[key]}, {text}" if key in fields else text
        self._keep_alive = parser.should_keep_alive()
        self._eof_ends_body = ("content-length" not in fields
                               and "chunked" not in fields.get("transfer-encoding", ""))
        return Response(parser.get_status_code(), fields)

    async def _read(self, answered: bool = True) -> bytes:
        assert self._parser is not None
        try:
            data = await self._reader.read(_READ_SIZE)
        except OSError as exc:
            raise HttpFailure(f"the connection broke: {exc!r}", answered=answered) from exc
        self.last_received = self._loop.time()
        if data:
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise HttpFailure(f"the server's answer is not HTTP/1.1: {exc}") from None
        return data

    async def chunk(self) -> bytes | None:
        """The next piece of the body as it arrives; None once the body is complete.
        ``HttpFailure`` when the connection ends in the middle of it."""
        parsing = self._parsing
        assert parsing is not None
        while not parsing.body:
            if parsing.done:
                self.idle_since = self._loop.time()
                return None
            if not await self._read():
                if self._eof_ends_body:
                    parsing.done = True
                    self._keep_alive = False
                    return None
                raise HttpFailure("the connection closed in the middle of the body")
        return parsing.body.popleft()

    async def read_body(self, limit: int) -> bytes:
        """The whole body (its first ``limit`` bytes; the connection is not reused when
        it is longer)."""
        pieces: list[bytes] = []
        size = 0
        while (piece := await self.chunk()) is not None:
            size += len(piece)
            if size > limit:
                self._keep_alive = False
                break
            pieces.append(piece)
        return b"".join(pieces)[:limit]

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.transport.abort()
