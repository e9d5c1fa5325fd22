"""The HTTP/1.1 connection: httptools parses, this enforces limits and strict framing,
runs request cycles in order, and hands WebSocket upgrades to websocket.py.

Per connection (``_phase``)::

    IDLE ──first byte──▶ HEAD ──head complete──▶ APP ──response done──▶ IDLE
      │                   ├──bad input / limit / timeout──▶ error response ─▶ CLOSED
      └──keep-alive       └──WebSocket upgrade──▶ WEBSOCKET (websocket.py takes over)
         timeout ─▶ CLOSED

Pipelined requests are parsed while an earlier one is in APP; their heads and bodies are
queued (``_pipeline``) and answered in order.

Bad input never reaches the app: it is answered with its status (400, 408, 413, 414,
431, 503) and ``Connection: close``, and nothing after it is parsed.
"""

from __future__ import annotations

import asyncio
import enum
import re
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import httptools

from ..protocol import Headers
from ..protocol.handshake import is_upgrade_request
from .cycle import RequestCycle, simple_response
from .direct import detach, writer_for
from .link import Link, _no_writer
from .state import ServerState, logger
from .websocket import WebSocketSession

__all__ = ["HttpProtocol"]

_ASGI = {"version": "3.0", "spec_version": "2.4"}
# RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [":" port]; empty is allowed.
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?")


class _Phase(enum.Enum):
    IDLE = "idle"  # between requests (keep-alive)
    HEAD = "head"  # a request head is arriving and no request is being served
    APP = "app"  # a request is being served (later ones may be arriving)
    WEBSOCKET = "websocket"
    CLOSED = "closed"  # closed, or closing after an error response


class _Reject(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


#: What a lost connection's ``parser`` becomes: bound to no protocol, never fed.
_LOST_PARSER = httptools.HttpRequestParser(object())


class HttpProtocol(Link):
    """One client connection of the built-in server: a Link that parses HTTP/1.1."""

    __slots__ = (
        "parser", "_phase", "_timer", "_url", "_headers", "_head_size", "_head_bytes",
        "_in_head", "_head_timer", "_cycle", "_parsing", "_pending_upgrade", "_pipeline",
        "_over_limit", "_body_size",
    )

    def __init__(self, state: ServerState) -> None:
        Link.__init__(self, state)
        self.parser = httptools.HttpRequestParser(self)
        self._phase = _Phase.IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # bytes of header fields in the head being parsed
        self._head_bytes = 0  # raw bytes received while that head is incomplete
        self._in_head = False  # a request head has started and is not complete yet
        self._head_timer = False  # the running timer is a head deadline
        self._cycle: RequestCycle | None = None  # the request being served
        self._parsing: RequestCycle | None = None  # the request whose body is arriving
        self._pending_upgrade: tuple[str, str, dict[str, Any], Headers] | None = None
        # A list, not a deque: short (max_pipelined) and usually empty, and an empty
        # deque is 760 bytes that every connection, WebSocket ones too, would hold.
        self._pipeline: list[RequestCycle | _Reject] = []
        self._over_limit = False
        self._body_size = 0

    # --------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(self.config.write_high_water,
                                          self.config.write_low_water)
        self.writer = writer_for(transport)
        self.client = _address(transport.get_extra_info("peername"))
        self.server = _address(transport.get_extra_info("sockname"))
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self.state.connections.add(self)
        if len(self.state.connections) > self.config.max_connections:
            self._over_limit = True  # answered with 503 once its request head is read
        self._set_timer(self.config.head_timeout, self._head_timed_out)
        self._head_timer = True  # the first head's deadline runs from accept

    def connection_lost(self, exc: Exception | None) -> None:
        detach(self.writer)  # the transport closes the socket after this returns
        self.state.connections.discard(self)
        self._phase = _Phase.CLOSED
        self._cancel_timer()
        if self.websocket is not None:
            self.websocket.connection_lost()
        if self._cycle is not None:
            self._cycle.disconnect()
        for item in self._pipeline:
            if isinstance(item, RequestCycle):
                item.disconnect()
        self._pipeline.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # Break this connection's reference cycles (the parser's callbacks, the
        # transport, the session and the writer all refer back to this object), so that
        # reference counting frees it as soon as its app is done. Left to the cyclic GC,
        # ~50 objects per connection outlived it and a handshake benchmark spent ~4 % of
        # the server's time collecting them.
        self.transport = None
        self.writer = _no_writer
        self.websocket = None
        self.parser = _LOST_PARSER

    def data_received(self, data: bytes) -> None:
        if self.websocket is not None:
            self.websocket.data_received(data)
            return
        if self._phase is _Phase.CLOSED:
            return
        if self._phase is _Phase.IDLE:
            self._phase = _Phase.HEAD
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0]:])
            return
        except _Reject as exc:
            self._reject(exc)
            return
        except httptools.HttpParserError as exc:
            context = exc.__context__
            self._reject(context if isinstance(context, _Reject)
                         else _Reject(400, "malformed HTTP request"))
            return
        if self._in_head:
            # httptools buffers a header line until it is complete: bound what is still
            # arriving ourselves, so a head sent one byte at a time cannot grow forever.
            config = self.config
            self._head_bytes += len(data)
            line = len(self._url) + 12 + self._head_size  # complete lines so far (about)
            if self._head_bytes > config.max_head_size:
                self._reject(_Reject(431, "request head too large"))
            elif self._head_bytes - line > config.max_header_size + 64:
                self._reject(_Reject(431, "header field too large"))

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._head_bytes = 0
        self._body_size = 0
        self._in_head = True
        if not self._head_timer:  # a later request: its head deadline runs from now
            self._set_timer(self.config.head_timeout, self._head_timed_out)
            self._head_timer = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        # The limit covers the whole line: method, SP, target, SP, HTTP/x.y (not CRLF).
        if len(self._url) + len(self.parser.get_method()) + 10 > self.config.max_request_line:
            raise _Reject(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        config = self.config
        self._head_size += len(name) + len(value) + 4
        if len(self._headers) >= config.max_headers:
            raise _Reject(431, "too many header fields")
        if len(name) + len(value) > config.max_header_size:
            raise _Reject(431, "header field too large")
        if self._head_size > config.max_head_size:
            raise _Reject(431, "request head too large")
        if b"\r" in value or b"\n" in value or b"\x00" in value:
            raise _Reject(400, "control character in a header value")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._cancel_timer()
        self._in_head = False
        parser = self.parser
        method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        headers = self._headers
        self._check_framing(version, headers)
        scope = self._scope(method, version)
        if self._over_limit or self.state.shutting_down:
            raise _Reject(503, "server busy")
        upgrade = parser.should_upgrade()
        if upgrade and self.config.ws:
            fields = Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers])
            if is_upgrade_request(fields):
                self._pending_upgrade = (method, version, scope, fields)
                return
        keep_alive = parser.should_keep_alive() and not upgrade
        expect_100 = any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)
        cycle = RequestCycle(self, scope, keep_alive=keep_alive, expect_100=expect_100)
        if upgrade:
            # An upgrade we do not serve (another protocol, or WebSockets are off): served
            # as plain HTTP, then closed, since httptools stops parsing the stream here.
            cycle.body_complete()
        else:
            self._parsing = cycle
        if self._cycle is None:
            self._start_cycle(cycle)
        else:
            self._pipeline.append(cycle)
            if len(self._pipeline) >= self.config.max_pipelined:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        limit = self.config.max_body_size
        self._body_size += len(body)
        if limit is not None and self._body_size > limit:
            raise _Reject(413, "request body too large")
        cycle = self._parsing
        if cycle is not None:
            cycle.feed_body(body)
            if cycle.buffered() > self.config.write_high_water:
                self.pause_reading()  # the app is behind: stop reading until it catches up

    def on_message_complete(self) -> None:
        if self._parsing is not None:
            self._parsing.body_complete()
            self._parsing = None

    # ------------------------------------------------------------------ request checks

    def _check_framing(self, version: str, headers: list[tuple[bytes, bytes]]) -> None:
        """RFC 9112 §6.3 and §3.2: refuse ambiguous framing (request smuggling)."""
        hosts = lengths = encodings = 0
        for name, value in headers:
            value = value.strip(b" \t")  # RFC 9110 §5.5: OWS is not part of the value
            if name == b"host":
                hosts += 1
                if _HOST.fullmatch(value) is None:  # RFC 9112 §3.2: invalid Host → 400
                    raise _Reject(400, "invalid Host header")
            elif name == b"content-length":
                lengths += 1
                if not value.isdigit():
                    raise _Reject(400, "invalid Content-Length")
                limit = self.config.max_body_size
                if limit is not None and int(value) > limit:
                    raise _Reject(413, "request body too large")
            elif name == b"transfer-encoding":
                encodings += 1
                if value.lower() != b"chunked":
                    raise _Reject(400, "unsupported Transfer-Encoding")
                if version == "1.0":  # RFC 9112 §6.1: faulty framing in HTTP/1.0
                    raise _Reject(400, "Transfer-Encoding in an HTTP/1.0 request")
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise _Reject(400, "exactly one Host header is required")
        if lengths > 1 or encodings > 1 or (lengths and encodings):
            raise _Reject(400, "ambiguous message framing")

    def _scope(self, method: str, version: str) -> dict[str, Any]:
        """The ASGI ``http`` scope; an upgrade turns it into a ``websocket`` one later."""
        try:
            url = httptools.parse_url(self._url)
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, "invalid request target") from None
        raw_path = url.path or b"/"
        if self._url != b"*" and not raw_path.startswith(b"/"):
            raise _Reject(400, "invalid request target")
        scope: dict[str, Any] = {
            "type": "http", "asgi": _ASGI, "http_version": version, "method": method,
            "scheme": self.scheme,
            # ASGI: path includes root_path (as uvicorn sends it); apps strip it.
            "path": self.config.root_path + (
                unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path
            ).decode("utf-8", "replace"),
            "raw_path": self.config.root_path.encode("latin-1") + raw_path,
            "query_string": url.query or b"",
            "root_path": self.config.root_path, "headers": self._headers,
            "client": self.client, "server": self.server,
            "state": dict(self.state.lifespan_state),
            "extensions": {"legato.shutdown": self.state.shutdown_event},
        }
        return scope

    # ---------------------------------------------------------------- request cycles

    def _start_cycle(self, cycle: RequestCycle) -> None:
        self._cycle = cycle
        self._phase = _Phase.APP
        self.state.spawn(cycle.run(self.state.app))

    def response_complete(self, cycle: RequestCycle) -> None:
        """Called by the cycle once its response is written."""
        if cycle is not self._cycle or self.transport is None:
            return
        self._cycle = None
        if not cycle.keep_alive or self.state.shutting_down:
            self._close()
            return
        if not cycle.request_complete:
            # The app answered before reading the whole body: we cannot find the next
            # request in the stream without reading it, so close (as most servers do).
            self._close()
            return
        if self._pipeline:
            item = self._pipeline.pop(0)
            if isinstance(item, _Reject):
                self._reject(item)
            else:
                self._start_cycle(item)
            self.resume_reading()
            return
        self._phase = _Phase.HEAD if self._in_head else _Phase.IDLE
        if not self._in_head:
            self._set_timer(self.config.keepalive_timeout, self._close)
            self._head_timer = False
        self.resume_reading()

    def abort_response(self) -> None:
        """The response cannot be completed: the only honest signal is closing."""
        self._cycle = None
        if self.transport is not None:
            self.transport.close()
        self._phase = _Phase.CLOSED

    def body_consumed(self) -> None:
        self.resume_reading()

    # ---------------------------------------------------------------------- websocket

    def _upgrade(self, rest: bytes) -> None:
        pending = self._pending_upgrade
        if pending is None:
            self.pause_reading()  # a plain request with Upgrade: the stream after is opaque
            return
        method, version, scope, fields = pending
        self._pending_upgrade = None
        self._phase = _Phase.WEBSOCKET
        # Nothing is parsed as HTTP any more: the parser (~900 bytes with its state)
        # is let go rather than held for the connection's life.
        self.parser = _LOST_PARSER
        self.websocket = WebSocketSession(self, method, version, scope, fields, rest)

    # ---------------------------------------------------------------------- errors

    def _reject(self, exc: _Reject) -> None:
        """Answer bad input with its status and close; nothing after it is parsed."""
        if self._phase is _Phase.CLOSED or self.transport is None:
            return
        logger.info("%s: %d %s", _peer(self.client), exc.status, exc)
        self._cancel_timer()
        self.pause_reading()
        cycle = self._cycle
        if cycle is not None and cycle is self._parsing:
            # The request being served is the bad one (its body broke a rule): the app
            # learns of it as a disconnect, and the client gets the error if it can.
            self._parsing = None
            self._cycle = None
            cycle.disconnect()
            if cycle.response_started:
                self._close()
                return
        elif cycle is not None:
            self._pipeline.append(exc)  # answered in order, after the current response
            self._phase = _Phase.APP
            return
        headers = [(b"retry-after", b"1")] if exc.status == 503 else []
        self.write(simple_response(exc.status, str(exc).encode(), headers,
                                   date=self.state.date_header()))
        self._close()

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._in_head:
            self._reject(_Reject(408, "request head not received in time"))
        elif self._cycle is None and self.websocket is None:
            self._close()  # connected but silent

    # -------------------------------------------------------------------- plumbing

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None \
                and len(self._pipeline) < self.config.max_pipelined \
                and self._phase is not _Phase.CLOSED:
            self._reading_paused = False
            self.transport.resume_reading()

    def close_transport(self) -> None:
        self._close()

    def _close(self) -> None:
        self._cancel_timer()
        self._phase = _Phase.CLOSED
        if self.transport is not None:
            self.transport.close()

    def _set_timer(self, delay: float, callback: Any) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(delay, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self) -> None:
        """Server shutdown: close idle connections, let requests in flight finish."""
        if self.websocket is not None:
            self.websocket.shutdown()
        elif self._cycle is not None:
            self._cycle.keep_alive = False
        elif self._in_head:
            self._reject(_Reject(503, "server shutting down"))
        else:
            self._close()


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"
