"""The client side of one HTTP exchange over an in-memory connection: send the request
bytes, parse the response with httptools (chunked bodies, 1xx interim responses, bodies
delimited by EOF), then let the server side settle.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

from .server import AppCall, MemoryServer

__all__ = ["RawResponse", "ResponseReader", "Exchange", "exchange"]


@dataclass
class RawResponse:
    """A response as it came off the wire (body still content-encoded)."""

    status_code: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    #: Bytes after a 101 head: the first frames of the upgraded protocol.
    rest: bytes = b""


class ResponseReader:
    """Parses one response from the bytes the server writes; ``done`` resolves with a
    :class:`RawResponse`, or with ``ConnectionError`` when the server closes before the
    response is complete or sends something that is not HTTP."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, head_only: bool = False) -> None:
        self._parser = httptools.HttpResponseParser(self)
        #: HEAD: the response has no body whatever its Content-Length says (RFC 9110 §9.3.2).
        self._head_only = head_only
        self.done: asyncio.Future[RawResponse] = loop.create_future()
        self._reason = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._head_complete = False
        self._framed = False  # Content-Length or Transfer-Encoding, else the body ends at EOF

    # ------------------------------------------------------------------ from the wire

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if self.done.done():
                self.done.result().rest = data[exc.args[0]:]
        except httptools.HttpParserError as exc:
            self._fail(f"the server sent a malformed HTTP response ({exc})")

    def eof_received(self) -> None:
        if self.done.done():
            return
        status = self._parser.get_status_code() if self._head_complete else 0
        if self._head_complete and not self._framed and status >= 200:
            self._complete()  # RFC 9112 §6.3 item 8: the body ends when the connection does
        elif self._head_complete:
            received = sum(map(len, self._body))
            self._fail(f"the server closed the connection in the middle of the response "
                       f"body (HTTP {status}, {received} bytes received)")
        else:
            self._fail("the server closed the connection without a complete response")

    # ------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []
        self._body = []
        self._head_complete = False
        self._framed = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._head_complete = True
        if self._head_only and self._parser.get_status_code() >= 200:
            self._complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200 or status == 101:
            self._complete()
        # other 1xx (100 Continue): interim, the final response follows (RFC 9110 §15.2)

    # ---------------------------------------------------------------------- results

    def _complete(self) -> None:
        if not self.done.done():
            self.done.set_result(RawResponse(
                self._parser.get_status_code(), self._reason.decode("latin-1"),
                self._headers, b"".join(self._body)))

    def _fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(message))


@dataclass
class Exchange:
    """How one request went: the response or why there is none, and the app's call."""

    response: RawResponse | None
    error: Exception | None
    call: AppCall
    #: The app call was still running ``timeout`` seconds after the response and was
    #: cancelled.
    cancelled: bool


async def exchange(server: MemoryServer, data: list[bytes], *, head_only: bool,
                   address: tuple[str, int], tls: bool, timeout: float,
                   what: str) -> Exchange:
    """Send ``data`` on a new connection and read the response, within ``timeout`` s.

    Afterwards the client hangs up, as a client that does not reuse connections does,
    and waits (within ``timeout`` s more) for the app call to return, so work an app does
    after responding is finished when the test looks.
    """
    loop = asyncio.get_running_loop()
    reader = ResponseReader(loop, head_only=head_only)
    transport, call = server.connect(reader, server=address, tls=tls)
    for chunk in data:
        transport.client_write(chunk)
    await asyncio.wait({reader.done}, timeout=timeout)
    if not reader.done.done():
        reader.done.cancel()
        transport.client_close()
        transport.abort()  # a client that gives up resets the connection
        await server.settle(transport, call, 0.0)  # the app is stuck: cancel it now
        error = TimeoutError(f"no complete response to {what} within {timeout:g} s")
        return Exchange(None, error, call, False)
    transport.client_close()
    cancelled = await server.settle(transport, call, timeout)
    try:
        return Exchange(reader.done.result(), None, call, cancelled)
    except ConnectionError as exc:
        return Exchange(None, exc, call, cancelled)
