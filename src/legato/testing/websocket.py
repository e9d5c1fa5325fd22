"""WebSockets in the test client: the protocol core's client role driven over an
in-memory connection (:class:`WebSocketClient`, on the loop thread) and the synchronous
session a test holds (:class:`WebSocketTestSession`).

The opening handshake is :class:`~legato.protocol.ClientHandshake` (``request()`` and
``check_response()``), framing is :class:`~legato.protocol.Connection` in the client
role, masking and permessage-deflate included: the same sans-I/O core the server runs,
on the other side of the wire. Complete messages cross to the test thread through a
thread-safe queue, so a receive waits on that queue with its timeout and nothing else.

Client phases (``WebSocketClient.phase``)::

    CONNECTING ──101──▶ OPEN ──close()──▶ CLOSING ──server's Close / EOF──▶ CLOSED
        │                 └──server's Close, failure or EOF───────────────▶ CLOSED
        └──any other answer, or an invalid 101──────────────────────────────▶ CLOSED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import queue
from types import TracebackType
from typing import Any, Literal
from urllib.parse import SplitResult

from .. import jsoncodec
from ..exceptions import InvalidResponse, WebSocketDenied, WebSocketDisconnect
from ..protocol import (
    BytesMessage,
    ClientHandshake,
    CloseReceived,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    Headers,
    State,
    TextMessage,
)
from ..protocol.close import check_send_code
from .cookies import CookieJar
from .http import RawResponse, ResponseReader
from .runner import Runner, warn_in_test
from .server import AppCall, MemoryServer
from .transport import MemoryTransport

__all__ = ["WebSocketClient", "WebSocketTestSession", "Phase"]

logger = logging.getLogger("legato.testclient")


class Phase(enum.Enum):
    CONNECTING = "connecting"  # upgrade request sent, no answer yet
    OPEN = "open"
    CLOSING = "closing"  # our Close is sent, the server's has not arrived
    CLOSED = "closed"  # no more messages: closed, failed, denied or dropped


class WebSocketClient:
    """The client end of one WebSocket connection; every method runs on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handshake: ClientHandshake,
                 events: queue.SimpleQueue[dict[str, Any]]) -> None:
        self.handshake = handshake
        self.events = events
        self.phase = Phase.CONNECTING
        self.reader = ResponseReader(loop)
        self.conn: Connection | None = None
        self.subprotocol: str | None = None
        self.transport: MemoryTransport | None = None
        self.call: AppCall | None = None
        #: The 101 the server sent is not a valid upgrade (a server bug).
        self.failure: InvalidResponse | None = None
        #: (code, reason) once the connection has ended.
        self.end: tuple[int, str] | None = None
        self.closed_by_client = False  # close() or drop() ended the connection

    def _set_phase(self, phase: Phase) -> None:
        if phase is not self.phase:
            logger.debug("test client WebSocket %s -> %s", self.phase.value, phase.value)
            self.phase = phase

    # ------------------------------------------------------- the connection (ClientEnd)

    def data_received(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.receive_data(data)
            self._process()
        elif not self.reader.done.done():
            self.reader.data_received(data)
            if self.reader.done.done():
                self._answered()

    def eof_received(self) -> None:
        if self.conn is not None:
            self.conn.receive_eof()
            self._process()
        else:
            self.reader.eof_received()
        self._set_phase(Phase.CLOSED)

    def _answered(self) -> None:
        """The server answered the upgrade request: open the engine on a valid 101."""
        if self.reader.done.exception() is not None:
            return
        raw = self.reader.done.result()
        if raw.status_code != 101:
            self._set_phase(Phase.CLOSED)  # denied: the answer is all there is
            return
        try:
            result = self.handshake.check_response(101, Headers(raw.headers))
        except InvalidResponse as exc:
            self.failure = exc
            self._set_phase(Phase.CLOSED)
            self._transport().client_close()  # RFC 6455 §4.1: fail the connection
            return
        self.conn = result.connection
        self.subprotocol = result.subprotocol
        self._set_phase(Phase.OPEN)
        if raw.rest:  # frames the server sent right behind its 101
            self.data_received(raw.rest)

    def _process(self) -> None:
        conn = self.conn
        assert conn is not None
        for event in conn.events_received():
            if type(event) is TextMessage:
                self.events.put({"type": "websocket.send", "text": event.data})
            elif type(event) is BytesMessage:
                self.events.put({"type": "websocket.send", "bytes": event.data})
            elif isinstance(event, (CloseReceived, ConnectionFailed)):
                self._ended(event.code, event.reason)
            elif isinstance(event, ConnectionLost):
                self._ended(1006, "")  # RFC 6455 §7.1.5: closed without a Close frame
        self._flush()  # pongs and the echo of the server's Close, written by the engine

    def _ended(self, code: int, reason: str) -> None:
        if self.end is None:
            self.end = (code, reason)
            self.events.put({"type": "websocket.close", "code": code, "reason": reason})
        self._set_phase(Phase.CLOSED)

    def _flush(self) -> None:
        conn = self.conn
        assert conn is not None
        transport = self._transport()
        out = conn.data_to_send()
        if out:
            transport.client_write(out)
        if conn.close_transport():
            transport.client_close()

    def _transport(self) -> MemoryTransport:
        assert self.transport is not None
        return self.transport

    # ---------------------------------------------------------------- from the test

    def send(self, data: str | bytes) -> None:
        conn = self.conn
        if conn is None or conn.state is not State.OPEN:
            if self.closed_by_client:
                raise RuntimeError("cannot send on a WebSocket after close() or drop()")
            raise WebSocketDisconnect(*(self.end or (1006, "")))
        if isinstance(data, str):
            conn.send_text(data)
        else:
            conn.send_bytes(data)
        self._flush()

    def start_close(self, code: int, reason: str) -> None:
        """Send our Close (RFC 6455 §7.1.2) unless the connection is past that."""
        conn = self.conn
        if conn is not None and conn.state is State.OPEN:
            conn.send_close(code, reason)  # ValueError for a code not allowed on the wire
            self.closed_by_client = True
            self._set_phase(Phase.CLOSING)
            self._flush()

    async def open(self, server: MemoryServer, *, address: tuple[str, int], tls: bool,
                   timeout: float, what: str) -> tuple[RawResponse, bool]:
        """Connect and send the upgrade request; return the server's answer and whether
        the app had to be cancelled. On anything but a 101 the connection is closed and
        the app call has settled when this returns."""
        self.transport, self.call = server.connect(self, server=address, tls=tls)
        self.transport.client_write(self.handshake.request())
        await asyncio.wait({self.reader.done}, timeout=timeout)
        if not self.reader.done.done():
            self.reader.done.cancel()
            await self._give_up(server, 0.0)
            raise TimeoutError(f"no answer to the WebSocket handshake for {what} within "
                               f"{timeout:g} s: does the app accept or deny it?")
        try:
            raw = self.reader.done.result()
        except ConnectionError:
            await self._give_up(server, timeout)
            raise
        if self.failure is not None:
            await self._give_up(server, timeout)
            raise self.failure
        cancelled = False
        if raw.status_code != 101:
            cancelled = await self._give_up(server, timeout)
        return raw, cancelled

    async def _give_up(self, server: MemoryServer, timeout: float) -> bool:
        self._set_phase(Phase.CLOSED)
        transport, call = self._transport(), self.call
        assert call is not None
        transport.client_close()
        if timeout == 0.0:
            transport.abort()
        return await server.settle(transport, call, timeout)

    async def finish(self, server: MemoryServer, code: int | None, reason: str,
                     timeout: float) -> bool:
        """Close with ``code`` if still open (None: end TCP without a Close frame), then
        wait (within ``timeout`` s) for the server to drop the connection and the app
        call to return. True when the app had to be cancelled."""
        if self.transport is None or self.call is None:
            return False
        if code is None:
            self.closed_by_client = True
            if self.conn is not None and self.conn.state is not State.CLOSED:
                self._ended(1006, "")  # RFC 6455 §7.1.5: no Close frame, "abnormal"
            self.transport.client_close()
        else:
            self.start_close(code, reason)
        return await server.settle(self.transport, self.call, timeout)


class WebSocketTestSession:
    """A WebSocket connection opened by ``TestClient.websocket_connect()``.

    Use it as a context manager: entering performs the handshake (``WebSocketDenied``
    when the server answers anything but 101), leaving closes with 1000 if still open
    and waits for the server side to finish. Every receive waits at most ``timeout``
    seconds (``TimeoutError``). With ``raise_server_exceptions`` an exception that
    escaped the app is raised from the next receive or send, or on leaving the block.

    The session holds the client's server until it ends (or is collected), so
    ``with TestClient(app).websocket_connect("/ws") as ws:`` works although nothing
    keeps the client itself.
    """

    __test__ = False  # pytest: not a test class

    def __init__(self, runner: Runner, handshake: ClientHandshake, *, url: SplitResult,
                 address: tuple[str, int], jar: CookieJar, timeout: float,
                 raise_server_exceptions: bool) -> None:
        self._runner = runner
        self._release = runner.hold(self)
        self._handshake = handshake
        self._url = url
        self._address = address
        self._jar = jar
        self._timeout = timeout
        self._raise = raise_server_exceptions
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._client: WebSocketClient | None = None
        self._end: dict[str, Any] | None = None
        self._finished = False
        self._error_raised = False
        #: The subprotocol the server chose (``Sec-WebSocket-Protocol`` of the 101).
        self.accepted_subprotocol: str | None = None
        #: Every header of the 101 response.
        self.extra_headers = Headers()

    @property
    def _what(self) -> str:
        return self._url.path + ("?" + self._url.query if self._url.query else "")

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> WebSocketTestSession:
        if self._client is not None:
            raise RuntimeError("this WebSocket session was already opened")
        runner = self._runner
        client = self._client = WebSocketClient(runner.thread.loop, self._handshake,
                                                self._events)
        try:
            raw, cancelled = runner.run(client.open(
                runner.server, address=self._address, tls=self._url.scheme == "wss",
                timeout=self._timeout, what=self._what))
        except (TimeoutError, ConnectionError, InvalidResponse):
            self._finished = True
            self._release()
            self._raise_app_error()
            raise
        self._jar.extract(Headers(raw.headers).get_all("set-cookie"), self._url)
        if raw.status_code != 101:
            self._finished = True
            self._release()
            self._warn_if(cancelled)
            self._raise_app_error()
            raise WebSocketDenied(raw.status_code, raw.body, raw.headers)
        self.accepted_subprotocol = client.subprotocol
        self.extra_headers = Headers(raw.headers)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._finish(1000, "")
        except Exception:
            if exc_type is None:
                raise
            # The block is already failing: its exception says more than ours would.
        self._raise_app_error()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close (RFC 6455 §7.1.2) and wait, within ``timeout``, for the closing handshake
        and for the app to return. ``code=1005`` sends a Close frame without a status
        code, as a browser's ``ws.close()`` does (the app sees 1005, RFC 6455 §7.1.5).
        ``ValueError`` for a code that may not be sent."""
        if code == 1005:
            if reason:
                raise ValueError("a Close frame without a status code has no reason")
        else:
            check_send_code(code, reason)  # before anything changes: bad codes close nothing
        self._finish(code, reason)
        self._raise_app_error()

    def drop(self) -> None:
        """End the connection without a Close frame, as a client that vanishes does (a
        lost network, a killed tab): the app sees 1006 (RFC 6455 §7.1.5). Then wait,
        within ``timeout``, for the app to return."""
        self._finish(None, "")
        self._raise_app_error()

    def _finish(self, code: int | None, reason: str) -> None:
        if self._finished:
            return
        client = self._opened()
        self._finished = True
        runner = self._runner
        try:
            if not runner.thread.alive:
                return  # the TestClient was closed first: its shutdown ended this connection
            cancelled = runner.run(client.finish(runner.server, code, reason, self._timeout))
        finally:
            self._release()  # the last user gone: the server stops
        self._warn_if(cancelled)

    def _warn_if(self, cancelled: bool) -> None:
        if cancelled:
            warn_in_test(f"the app's call for WebSocket {self._what} did not return within "
                         f"{self._timeout:g} s after the connection closed; it was cancelled")

    def _opened(self) -> WebSocketClient:
        if self._client is None:
            raise RuntimeError("use the session in a with block: "
                               "`with client.websocket_connect(...) as ws:`")
        return self._client

    def _raise_app_error(self) -> None:
        client = self._client
        if not self._raise or self._error_raised or client is None or client.call is None:
            return
        error = client.call.error
        if error is not None:
            self._error_raised = True
            raise error

    # ---------------------------------------------------------------------- sending

    def send(self, message: dict[str, Any]) -> None:
        """Send an ASGI-style event: ``{"type": "websocket.send", "text"|"bytes": ...}``
        (``websocket.receive``, what the app receives, is accepted too), or
        ``{"type": "websocket.close", "code": ..., "reason": ...}``."""
        kind = message.get("type")
        if kind in ("websocket.send", "websocket.receive"):
            text = message.get("text")
            self._send(text if text is not None else message["bytes"])
        elif kind in ("websocket.close", "websocket.disconnect"):
            self.close(int(message.get("code", 1000)), message.get("reason") or "")
        else:
            raise ValueError(f"cannot send an event of type {kind!r}")

    def send_text(self, data: str) -> None:
        if not isinstance(data, str):
            raise TypeError(f"send_text() takes str, not {type(data).__name__}")
        self._send(data)

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, str):
            raise TypeError("send_bytes() takes bytes, not str (use send_text())")
        self._send(bytes(data))

    def send_json(self, data: Any, mode: Literal["text", "binary"] = "text") -> None:
        """Send ``data`` as JSON in a text message (or a binary one with mode="binary")."""
        if mode == "text":
            self._send(jsoncodec.dumps_str(data))
        elif mode == "binary":
            self._send(jsoncodec.dumps(data))
        else:
            raise ValueError(f'mode must be "text" or "binary", not {mode!r}')

    def _send(self, data: str | bytes) -> None:
        client = self._opened()
        self._raise_app_error()
        try:
            self._runner.call(client.send, data)
        except WebSocketDisconnect:
            self._raise_app_error()
            raise

    # -------------------------------------------------------------------- receiving

    def receive(self) -> dict[str, Any]:
        """The next event: ``{"type": "websocket.send", "text"|"bytes": ...}`` for a
        message, then ``{"type": "websocket.close", "code": ..., "reason": ...}`` for
        the end (again on every later call). ``TimeoutError`` after ``timeout`` s."""
        self._opened()
        if self._end is not None:
            self._raise_app_error()
            return dict(self._end)
        try:
            event = self._events.get(timeout=self._timeout)
        except queue.Empty:
            self._raise_app_error()
            raise TimeoutError(f"no message from the server on WebSocket {self._what} within "
                               f"{self._timeout:g} s") from None
        if event["type"] == "websocket.close":
            self._end = event
            self._raise_app_error()
        return event

    def _receive_message(self, expected: Literal["text", "bytes"]) -> str | bytes:
        event = self.receive()
        if event["type"] == "websocket.close":
            raise WebSocketDisconnect(event["code"], event["reason"])
        if expected not in event:
            if expected == "text":
                raise TypeError(f"expected a text message, received a binary one "
                                f"({len(event['bytes'])} bytes); use receive_bytes()")
            raise TypeError(f"expected a binary message, received a text one "
                            f"({len(event['text'])} characters); use receive_text()")
        value: str | bytes = event[expected]
        return value

    def receive_text(self) -> str:
        """The next message, which must be text (``TypeError`` for binary);
        ``WebSocketDisconnect`` when the connection ended instead."""
        text = self._receive_message("text")
        assert isinstance(text, str)
        return text

    def receive_bytes(self) -> bytes:
        """The next message, which must be binary (``TypeError`` for text);
        ``WebSocketDisconnect`` when the connection ended instead."""
        data = self._receive_message("bytes")
        assert isinstance(data, bytes)
        return data

    def receive_json(self, mode: Literal["text", "binary"] = "text") -> Any:
        """The next message parsed as JSON; a text message, or binary with mode="binary"."""
        if mode == "text":
            return jsoncodec.loads(self.receive_text())
        if mode == "binary":
            return jsoncodec.loads(self.receive_bytes())
        raise ValueError(f'mode must be "text" or "binary", not {mode!r}')
