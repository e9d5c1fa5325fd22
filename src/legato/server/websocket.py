"""A WebSocket connection of the built-in server: the protocol core driven by the
transport, with keepalive, close timeout, backpressure both ways, and the ASGI
``websocket`` scope (including the ``websocket.http.response`` denial extension).

States (``phase``)::

    CONNECTING ──accept──▶ OPEN ──app or peer closes──▶ CLOSING ──▶ CLOSED
        │                   └──peer breaks the protocol──▶ (failing) ──▶ CLOSED
        └──close / denial response / error──▶ HTTP response ──▶ CLOSED

Failing (RFC 6455 §7.1.7; the engine's FAILING, the phase stays OPEN): the messages
that arrived before the bad frame are still delivered and answered; our Close with the
failure's code follows once the app is back in receive() with nothing left to answer,
or after ``ws_fail_grace`` seconds, whichever comes first.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import HandshakeRejected
from ..protocol import (
    BytesMessage,
    CloseReceived,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    Headers,
    Pong,
    State,
    TextMessage,
    UpgradeRequest,
)
from ..protocol.close import check_send_code
from .access import WebSocketAccess
from .cycle import STATUS_PHRASES, check_header, simple_response
from .pings import PingSchedule
from .state import logger

if TYPE_CHECKING:
    from .link import Link

__all__ = ["WebSocketSession", "ClientDisconnected"]


class ClientDisconnected(OSError):
    """ASGI: ``send()`` on a WebSocket the client has already left."""


class Phase(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class WebSocketSession:
    """Server side of one WebSocket, from the upgrade request to the end."""

    __slots__ = (
        "http", "loop", "config", "phase", "conn", "offer", "_rest", "_queue",
        "_waiter", "_connect_sent", "_close_code", "_close_reason", "_reading_paused",
        "_ping_timer", "_pong_timer", "_close_timer", "_ping_payload", "_denial",
        "_denial_body", "on_writable", "on_closing", "on_paused", "keepalive", "access",
        "on_shutdown",
    )

    def __init__(self, http: Link, method: str, version: str,
                 scope: dict[str, Any], headers: Headers, rest: bytes) -> None:
        self.http = http
        self.loop = http.loop
        self.config = http.config
        self.phase = Phase.CONNECTING
        #: Set by the app (the channel layer): called at server shutdown instead of the
        #: plain 1001, returns (code, reason, last text message to send or None).
        self.on_shutdown: Callable[[], tuple[int, str, str | None]] | None = None
        self.conn: Connection | None = None
        self._rest = rest
        #: Events the app has not taken yet; made when the first one must wait (an empty
        #: deque is 760 bytes, which every idle connection would hold).
        self._queue: deque[dict[str, Any]] | None = None
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._connect_sent = False
        self._close_code: int | None = None  # set once the connection has ended
        self._close_reason = ""
        self._reading_paused = False
        self._ping_timer: list[Any] | None = None  # an entry of state.pings
        self._pong_timer: asyncio.TimerHandle | None = None
        # The closing's deadline: for the peer's Close after ours, or (failing) for the
        # app's answers before our Close.
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._denial: list[bytes] | None = None
        self._denial_body: list[bytes] | None = None  # a denial response's body pieces
        #: Called when the transport's write buffer drains below its low-water mark
        #: (the hub flushes a connection's outbox then; no task per subscriber).
        self.on_writable: Any = None
        #: Called once when the connection leaves OPEN (the hub stops writing to it).
        self.on_closing: Any = None
        #: Called when the transport's buffer goes above its high-water mark.
        self.on_paused: Any = None
        #: (ping_interval, ping_timeout) of this connection when its route has its own
        #: (legato's App sets it before accept); None: the server's.
        self.keepalive: tuple[float | None, float | None] | None = None
        #: Its access log lines (--access-log), None when the log is off (access.py).
        self.access = WebSocketAccess(http, scope, method, version) \
            if self.config.access_log else None
        http.pause_reading()  # nothing to read until the app accepts
        try:
            self.offer: UpgradeRequest | None = http.state.handshake.check(
                method, version, headers)
        except HandshakeRejected as exc:
            # RFC 6455 §4.2.2: an invalid handshake gets its HTTP error; the bytes after it
            # are never parsed as a request.
            logger.info("WebSocket handshake refused: %d %s", exc.status_code, exc.reason)
            self.offer = None
            extra = [(n.encode(), v.encode()) for n, v in exc.headers]
            self._finish_http(simple_response(exc.status_code, exc.reason.encode(), extra,
                                              date=http.state.date_header()))
            return
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if http.scheme == "https" else "ws"
        scope["subprotocols"] = self.offer.subprotocols
        # "legato.websocket": accept may carry per-route settings (legato.max_message_size).
        scope["extensions"] = {"websocket.http.response": {},
                               "legato.websocket": {"session": self}}
        del scope["method"]
        # Not kept on self: the scope refers to this session (its extensions), and a
        # cycle would leave the connection for the cyclic GC to free.
        http.state.spawn(self.run(http.state.app, scope))

    # ------------------------------------------------------------------------ the app

    async def run(self, app: Any, scope: dict[str, Any]) -> None:
        try:
            direct = self.http.state.app_websocket
            if direct is not None:
                # A legato App hands over the coroutine serving this connection: one
                # frame (its __call__) less for every open connection.
                await direct(scope, self.receive, self.send)
            else:
                await app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: BLE001 - the server must survive the app
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise
            if not (isinstance(exc, (ClientDisconnected, asyncio.CancelledError))
                    and self.phase is Phase.CLOSED):
                logger.exception("exception in ASGI application", exc_info=exc)
            self._app_failed()
            return
        if self.phase is Phase.CONNECTING:
            if self._denial is None:
                logger.error("ASGI application returned without accepting the WebSocket")
            self._app_failed()
        elif self.phase is Phase.OPEN:
            self._send_close(1000, "")  # ASGI: returning closes the connection

    def _app_failed(self) -> None:
        if self.phase is Phase.CONNECTING:
            self._finish_http(simple_response(500, b"Internal Server Error",
                                              date=self.http.state.date_header()))
        elif self.phase is Phase.OPEN:
            self._send_close(1011, "")  # RFC 6455 §7.4.1: internal error

    async def receive(self) -> dict[str, Any]:
        event = self.next_event()
        return event if isinstance(event, dict) else await event

    def next_event(self) -> dict[str, Any] | asyncio.Future[dict[str, Any]]:
        """ASGI ``receive()`` without a coroutine (legato's App awaits it in its own
        frame): the next event when one is ready, else a future that gets it."""
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        queue = self._queue
        if queue:
            event = queue.popleft()
            if self._reading_paused and len(queue) <= self.config.ws_max_queue // 2:
                self._reading_paused = False
                self.http.resume_ws_reading()
            return event
        if self._close_code is not None:
            if self._failing:
                self._fail_close()  # the app answered every message before the bad frame
            return self._disconnect_event()
        # Nothing queued: _process hands the next event straight to this future.
        waiter = self._waiter = self.loop.create_future()
        return waiter

    def _disconnect_event(self) -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": self._close_code,
                "reason": self._close_reason}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            conn = self.conn
            if self.phase is not Phase.OPEN or conn is None:
                raise ClientDisconnected("the WebSocket is closed") if self.phase in (
                    Phase.CLOSING, Phase.CLOSED) else RuntimeError("WebSocket not accepted")
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
                if data is None:
                    raise ValueError("websocket.send needs 'text' or 'bytes'")
            self.write_message(data)
            if self.http.write_paused:
                await self.http.drain()
        elif kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._app_close(message)
        elif kind == "websocket.http.response.start":
            self._deny_start(message)
        elif kind == "websocket.http.response.body":
            self._deny_body(message)
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in a websocket scope")

    # --------------------------------------------- native writes (legato's App, hub)

    def write_message(self, data: str | bytes) -> bool:
        """Send one message now, without an ASGI dict or a coroutine; False when the
        connection is not open. The caller waits for :meth:`Link.drain` when
        :attr:`write_paused` is set (backpressure)."""
        conn = self.conn
        if self.phase is not Phase.OPEN or conn is None:
            return False
        http = self.http
        if conn.compresses:
            if isinstance(data, str):
                conn.send_text(data)
            else:
                conn.send_bytes(data)
            out = conn.data_to_send()
        else:
            # Hot path (echo, broadcast): the frame, encoded once per message object,
            # goes straight to the transport.
            out = conn.send_prepared(http.state.frame_for(data))
        if self._queue:
            # More messages wait for the app, which answers them next (pipelining):
            # its answers leave together, with the last one.
            http.write_soon(out)
        else:
            # Open, so the connection is not lost (its writer detaches then): no need
            # for write()'s transport check on this per-message path.
            http.writer(out)
        return True

    def write_frame(self, frame: bytes) -> bool:
        """Write an encoded server frame now, without a coroutine; False when the
        connection is no longer open. Callers check :attr:`write_paused` first and keep
        their own bounded queue while it is set (see legato.hub)."""
        conn = self.conn
        if self.phase is not Phase.OPEN or conn is None:
            return False
        self.http.write(conn.send_prepared(frame))
        return True

    @property
    def write_paused(self) -> bool:
        """The transport's buffer is above its high-water mark: the peer is slow."""
        return bool(self.http.write_paused)

    @property
    def is_open(self) -> bool:
        return self.phase is Phase.OPEN

    # -------------------------------------------------------------------- handshake

    def _accept(self, message: dict[str, Any]) -> None:
        headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                   for n, v in message.get("headers", ())]
        self._open(message.get("subprotocol"), headers,
                   message.get("legato.max_message_size", self.config.ws_max_message_size))

    def accept_now(self, subprotocol: str | None, max_message_size: int | None) -> None:
        """``websocket.accept`` without an ASGI dict or a coroutine (legato's App; the
        ``websocket.connect`` event is taken as read). ``max_message_size`` None: the
        server's limit."""
        self._connect_sent = True
        self._open(subprotocol, [], self.config.ws_max_message_size
                   if max_message_size is None else max_message_size)

    def _open(self, subprotocol: str | None, headers: list[tuple[str, str]],
              limit: int | None) -> None:
        if self.phase is not Phase.CONNECTING or self.offer is None:
            raise RuntimeError("websocket.accept sent twice or after close")
        accepted = self.http.state.handshake.accept(
            self.offer, subprotocol=subprotocol, headers=headers)
        response = accepted.response()  # raises for invalid headers: still CONNECTING
        # ws_fail_grace > 0: a peer's protocol error holds our Close (see _failed).
        self.conn = accepted.connection(max_message_size=limit,
                                        hold_fail_close=self.config.ws_fail_grace > 0)
        self.phase = Phase.OPEN
        self.offer = None  # its headers are the scope's too: not kept twice
        if self.access is not None:
            self.access.opened(subprotocol, len(response))
        self.http.write(response)
        self._schedule_ping()
        rest, self._rest = self._rest, b""
        if rest:
            self.data_received(rest)
        self.http.resume_ws_reading()

    def _app_close(self, message: dict[str, Any]) -> None:
        code = int(message.get("code", 1000))
        reason = message.get("reason") or ""
        if self.phase is Phase.CONNECTING:
            # ASGI: closing before accepting refuses the handshake with 403.
            self._finish_http(simple_response(403, b"Forbidden",
                                              date=self.http.state.date_header()))
        elif self.phase is Phase.OPEN:
            check_send_code(code, reason)
            self._send_close(code, reason)

    def _deny_start(self, message: dict[str, Any]) -> None:
        if self.phase is not Phase.CONNECTING or self._denial is not None:
            raise RuntimeError("websocket.http.response.start only before accept, once")
        status = int(message["status"])
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, STATUS_PHRASES.get(status, b"Unknown"))]
        for name, value in message.get("headers", ()):
            name, value = bytes(name), bytes(value)
            check_header(name, value)
            if name.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
                lines.append(name + b": " + value + b"\r\n")
        self._denial = lines

    def _deny_body(self, message: dict[str, Any]) -> None:
        if self._denial is None:
            raise RuntimeError("websocket.http.response.body before its start")
        pieces = self._denial_body
        if pieces is None:
            pieces = self._denial_body = []
        pieces.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            body = b"".join(pieces)
            head = b"".join(self._denial) + self.http.state.date_header() + \
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            self._finish_http(head + body)

    def _finish_http(self, response: bytes) -> None:
        """Answer the upgrade request with a plain HTTP response and close."""
        self.phase = Phase.CLOSED
        self._close_code = 1006
        if self.access is not None:
            self.access.denied(response)
        self.http.write(response)
        self.http.close_transport()
        self._wake()

    # ------------------------------------------------------------------ transport side

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            self._rest += data  # pipelined before accept: kept for the engine
            return
        conn.receive_data(data)
        self._process()

    def _process(self) -> None:
        conn = self.conn
        assert conn is not None
        queue = self._queue
        control = False
        for event in conn.events_received():
            item: dict[str, Any]
            if type(event) is TextMessage:
                item = {"type": "websocket.receive", "text": event.data}
            elif type(event) is BytesMessage:
                item = {"type": "websocket.receive", "bytes": event.data}
            else:
                control = True
                if isinstance(event, Pong):
                    if event.payload == self._ping_payload:
                        self._pong_received()
                elif isinstance(event, CloseReceived):
                    self._ended(event.code, event.reason)
                elif isinstance(event, ConnectionFailed):
                    self._failed(event.code, event.reason)
                elif isinstance(event, ConnectionLost):
                    self._ended(1006, "")
                continue
            waiter = self._waiter
            if waiter is not None:
                # The app waits in receive() (so nothing is queued): hand the event over.
                self._waiter = None
                if not waiter.done():  # not cancelled
                    waiter.set_result(item)
                    continue
            if queue is None:
                queue = self._queue = deque()
            queue.append(item)
        if control:
            # Only a control frame, a failure or the end makes the engine answer
            # (Connection.receive_data): data messages alone skip these checks.
            out = conn.data_to_send()
            if out:
                self.http.write(out)
            if conn.close_transport():
                self.http.close_transport()
        if queue and len(queue) >= self.config.ws_max_queue and not self._reading_paused:
            self._reading_paused = True  # the app is behind: TCP backpressure to the peer
            self.http.pause_reading()

    def _ended(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code = code
            self._close_reason = reason
        self.phase = Phase.CLOSED
        self._cancel_timers()
        self._closing()
        # Nothing more will be written: drop the hooks (bound methods of the hub's
        # outbox, which refers back to this session) so no cycle outlives the connection.
        self.on_writable = self.on_paused = None
        self._wake()

    def _failed(self, code: int, reason: str) -> None:
        """The peer broke the protocol (RFC 6455 §7.1.7): nothing after the bad frame is
        read. The messages before it are the app's (queued or being answered): their
        answers go out before the Close (losing them is what the Autobahn suite rates
        NON-STRICT), which waits for the app's next receive() or the deadline."""
        if not self._failing:  # ws_fail_grace = 0: the engine sent its Close already
            self._ended(code, reason)
            return
        self._close_code = code  # what receive() reports, whatever ends the connection
        self._close_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._fail_close()  # waiting in receive(): the app has nothing to answer
            return
        self._closing()  # the hub stops writing to this connection
        self._cancel_ping()
        self._close_timer = self.loop.call_later(self.config.ws_fail_grace,
                                                 self._fail_timed_out)

    @property
    def _failing(self) -> bool:
        """The peer broke the protocol and our Close waits for the app's answers."""
        conn = self.conn
        return conn is not None and conn.state is State.FAILING

    def _fail_close(self) -> None:
        """Send the Close held since the failure (after the answers written before it,
        which share the writer) and close TCP: §7.1.7 closes at once, no handshake."""
        conn = self.conn
        assert conn is not None and conn.failure is not None
        conn.send_fail_close()
        self.http.write(conn.data_to_send())
        self.http.close_transport()
        self._ended(conn.failure.close_code, conn.failure.reason)

    def _fail_timed_out(self) -> None:
        """The app did not come back for the disconnect in time: close without it (what
        it still sends is dropped; receive() still returns the messages queued first)."""
        self._close_timer = None
        if self._failing:
            self._fail_close()

    def connection_lost(self) -> None:
        # An EOF only ends the connection (messages were queued as they arrived), so the
        # engine's ConnectionLost event needs no handling beyond this.
        if self.conn is not None:
            self.conn.receive_eof()
        self._ended(1006, "")
        if self.access is not None:
            self.access.closed(self._close_code, self._close_reason)
            self.access = None

    def _wake(self) -> None:
        """The connection ended (``_ended``, ``_finish_http``): an app waiting in
        receive() gets the disconnect event (after the messages queued before it, which
        receive() returns first)."""
        waiter = self._waiter
        if waiter is not None and self._close_code is not None and not self._queue:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(self._disconnect_event())

    # ------------------------------------------------------------------ closing & pings

    def _send_close(self, code: int, reason: str) -> None:
        conn = self.conn
        if conn is None or self.phase is not Phase.OPEN:
            return
        if conn.state is State.FAILING:
            self._fail_close()  # the peer must learn why: the failure's code, not ours
            return
        conn.send_close(code, reason)
        self.phase = Phase.CLOSING
        self._closing()
        self.http.write(conn.data_to_send())
        self._cancel_ping()
        self._close_timer = self.loop.call_later(self.config.ws_close_timeout,
                                                 self._close_timed_out)

    def _closing(self) -> None:
        hook, self.on_closing = self.on_closing, None
        if hook is not None:
            hook()

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self.http.close_transport()

    def shutdown(self) -> None:
        """Server shutdown: 1001 to open connections, 503 to handshakes in flight."""
        if self.phase is Phase.CONNECTING:
            self._finish_http(simple_response(503, b"server shutting down",
                                              [(b"retry-after", b"1")],
                                              date=self.http.state.date_header()))
        elif self.on_shutdown is not None and self.phase is Phase.OPEN:
            code, reason, last = self.on_shutdown()
            if last is not None:
                self.write_message(last)
            self._send_close(code, reason)
        else:
            self._send_close(1001, "server shutting down")

    def _schedule_ping(self) -> None:
        keepalive = self.keepalive
        interval = keepalive[0] if keepalive is not None else self.config.ws_ping_interval
        if interval:
            self._ping_timer = self.http.state.pings.add(interval, self)

    def _send_ping(self) -> None:
        self._ping_timer = None
        conn = self.conn
        if conn is None or self.phase is not Phase.OPEN:
            return
        self._ping_payload = os.urandom(4)
        conn.send_ping(self._ping_payload)
        self.http.write(conn.data_to_send())
        keepalive = self.keepalive
        timeout = keepalive[1] if keepalive is not None else self.config.ws_ping_timeout
        if timeout:
            self._pong_timer = self.loop.call_later(timeout, self._pong_timed_out)

    def _pong_received(self) -> None:
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._schedule_ping()

    def _pong_timed_out(self) -> None:
        """The peer is gone or stuck: drop it (RFC 6455 §7.1.7 with 1011)."""
        self._pong_timer = None
        logger.info("WebSocket keepalive ping timed out; closing")
        if self.conn is not None and self.phase is Phase.OPEN:
            self.conn.send_close(1011, "keepalive ping timeout")
            self.http.write(self.conn.data_to_send())
        self._ended(1006, "")
        self.http.close_transport()

    def _cancel_ping(self) -> None:
        if self._ping_timer is not None:
            PingSchedule.cancel(self._ping_timer)
            self._ping_timer = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_ping()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
