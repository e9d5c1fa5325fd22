"""The fallback transport: Server-Sent Events down, HTTP POST up (docs/channels.md, SSE).

For networks that let HTTP through but not WebSocket. The frames are the WebSocket's,
one per SSE event (``data:`` the JSON frame, ``id:`` ``<conn>.<seq>``). A
:class:`SseSocket` stands in for the WebSocket, so the same :class:`ChannelConnection`
and the same hub delivery serve both transports.

- ``GET {p}/sse`` opens a connection; the first event is ``welcome`` with ``conn`` and
  ``token`` (the secret its POSTs carry).
- ``POST {p}/send?conn=<conn>`` with header ``X-Legato-Token`` and a body of one frame
  or a JSON array of frames: 202; the answers come down the stream. The POST may reach
  another process than the stream (``--workers``, several hosts): it goes through the
  hub to the process that holds the connection (internal topic ``~sse:<conn>``), so with
  several processes the hub must be Redis, as for everything else that crosses them.
- When the stream drops, the connection waits ``linger`` seconds (joins, presence and
  the frames sent since, up to 1,000, kept): a ``GET {p}/sse`` with ``Last-Event-ID:
  <conn>.<seq>`` within that time gets every frame after ``seq`` and goes on. Later, or
  in another process, it gets a new connection (``welcome``): the client joins again
  with ``since=`` as after any reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from .. import jsoncodec
from ..exceptions import HTTPError, WebSocketDisconnect
from ..scope import HTTPConnection
from .connection import OVERLOADED, ChannelConnection
from .ports import Service

__all__ = ["SseSocket", "SseTransport"]

logger = logging.getLogger("legato.channels")

#: Frames kept for a stream that comes back with Last-Event-ID.
KEPT_FRAMES = 1000
#: Frames one connection may have waiting to be read by its handler.
INBOX_LIMIT = 1000
#: How long (s) a close POST waits for its connection to end before answering anyway.
CLOSE_WAIT = 5.0
#: SSE comment lines keep proxies from closing an idle stream.
KEEPALIVE = 15.0


class _State:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


OPEN, CLOSED = _State("OPEN"), _State("CLOSED")


class SseSocket(HTTPConnection):
    """What :class:`ChannelConnection` and the hub need of a WebSocket, over SSE + POST:
    frames sent are kept and streamed, frames POSTed are read by ``async for``. As a
    connection it has what a WebSocket has (headers, query, cookies, session, client),
    those of the stream's first GET, so hooks and rpc handlers that take ``ws`` work."""

    metrics = None
    _session = None

    def __init__(self, scope: dict[str, Any], conn_id: str) -> None:
        super().__init__({**scope, "type": "websocket", "subprotocols": ["legato.v1"],
                          "extensions": {}})
        self.id = conn_id
        self.token = secrets.token_urlsafe(24)
        self.state: _State = OPEN
        self.close_code: int | None = None
        self.seq = 0
        self.sent: deque[tuple[int, str]] = deque(maxlen=KEPT_FRAMES)
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue(INBOX_LIMIT)
        self._changed = asyncio.Event()
        self.streams = 0  # readers attached now (0 or 1: a resume takes over)
        self.generation = 0  # which reader is the current one
        self.linger_handle: asyncio.TimerHandle | None = None
        #: The task serving this connection (ChannelConnection.serve, then the hub's
        #: forget): a close POST answers once it is done.
        self.serving: asyncio.Task[None] | None = None

    @property
    def subprotocols(self) -> list[str]:
        return ["legato.v1"]

    # ------------------------------------------------------------ sending (down)

    async def send(self, data: Any) -> None:
        if self.state is not OPEN:
            raise WebSocketDisconnect(self.close_code or 1006)
        if not isinstance(data, str):
            data = jsoncodec.dumps_str(data)
        self.seq += 1
        self.sent.append((self.seq, data))
        self._changed.set()

    send_text = send

    async def send_bytes(self, data: bytes) -> None:
        raise WebSocketDisconnect(1003, "binary messages cannot go over SSE")

    async def accept(self, subprotocol: str | None = None) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.state is OPEN:
            self.state, self.close_code = CLOSED, code
            self.seq += 1
            self.sent.append((self.seq, jsoncodec.dumps_str(
                {"t": "close", "code": code, "reason": reason})))
            self._changed.set()
            self.inbox.put_nowait(None) if not self.inbox.full() else None

    ensure_closed = close

    # ------------------------------------------------------------ receiving (up)

    def post(self, frame: str) -> bool:
        """A frame from a POST; False when this connection cannot take more now.
        ``{"t": "close"}`` ends the connection (an SSE client's clean close)."""
        if self.state is not OPEN:
            return False
        if frame.startswith('{"t":"close"'):
            self.state, self.close_code = CLOSED, 1000
            self.inbox.put_nowait(None) if not self.inbox.full() else None
            self._changed.set()
            return True
        try:
            self.inbox.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def __aiter__(self) -> SseSocket:
        return self

    async def __anext__(self) -> str:
        frame = await self.inbox.get()
        if frame is None:
            raise StopAsyncIteration
        return frame

    # ------------------------------------------------------------ the stream

    async def events(self, after: int, shutdown: asyncio.Event | None = None,
                     advice: Any = None) -> AsyncIterator[bytes]:
        """SSE events of every frame after ``after``, then of every new one, until the
        connection closes or the reader goes (then the server cancels this). When the
        server shuts down (``shutdown``, legato's server only) the stream ends with the
        reconnect advice and a close 1012, as a WebSocket does."""
        self.streams += 1
        self.generation += 1
        mine = self.generation
        try:
            yield b"retry: 1000\n\n"
            while mine == self.generation:  # a resumed stream takes over from this one
                batch = [(s, f) for s, f in self.sent if s > after]
                if batch:
                    after = batch[-1][0]
                    yield b"".join(b"id: %s.%d\ndata: %s\n\n" % (self.id.encode(), s,
                                                                f.encode())
                                   for s, f in batch)
                    continue
                if self.state is not OPEN:
                    return
                if shutdown is not None and shutdown.is_set():
                    await self.send(advice())
                    await self.close(1012, "server restarting")
                    continue
                self._changed.clear()
                waits = [asyncio.ensure_future(self._changed.wait())]
                if shutdown is not None:
                    waits.append(asyncio.ensure_future(shutdown.wait()))
                try:
                    done, _ = await asyncio.wait(waits, timeout=KEEPALIVE,
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
                if not done:
                    yield b": keepalive\n\n"
        finally:
            self.streams -= 1

    def kept_after(self, seq: int) -> bool:
        """Can a stream resume after ``seq`` (every later frame still kept)?"""
        if seq > self.seq:
            return False
        return not self.sent or self.sent[0][0] <= seq + 1


class SseTransport:
    """The SSE endpoints of one App's channels, and the SSE connections of this process."""

    def __init__(self, service: Service, linger: float = 30.0) -> None:
        self.service = service
        self.linger = linger
        self.sockets: dict[str, SseSocket] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def mount(self) -> None:
        app, path = self.service.app, self.service.path
        app.route(f"{path}/sse", name="legato-channels-sse")(self.stream)
        app.route(f"{path}/send", methods=["POST"], name="legato-channels-send")(self.send)

    async def stream(self, request: Any) -> Any:
        from ..responses import StreamingResponse  # noqa: PLC0415

        # The same connection as over the WebSocket, so the same gate: the App's
        # before_request(websocket=True) hooks (authentication) run for every stream.
        await self._run_websocket_hooks(request)
        sock, after = None, 0
        last = request.headers.get("last-event-id")
        if last:
            conn_id, _, seq = last.partition(".")
            found = self.sockets.get(conn_id)
            # The token (a secret of the connection's own; the id is not: presence
            # shows it) proves the resume is the client's. A stream the server still
            # thinks alive (it has not seen the drop yet) is taken over.
            token = request.headers.get("x-legato-token", "")
            if found is not None and found.state is OPEN and seq.isdigit() and \
                    hmac.compare_digest(found.token, token) and found.kept_after(int(seq)):
                sock, after = found, int(seq)
                sock.generation += 1
                sock._changed.set()  # the old reader wakes, sees it is replaced, ends
                if sock.linger_handle is not None:
                    sock.linger_handle.cancel()
                    sock.linger_handle = None
        resumed = sock is not None
        if sock is None:
            if not self.service.admit():
                return StreamingResponse(self._overloaded(), media_type="text/event-stream")
            sock = await self._open(request.scope)
        shutdown = request.scope.get("extensions", {}).get("legato.shutdown")
        return StreamingResponse(self._watched(sock, after, shutdown, resumed),
                                 media_type="text/event-stream",
                                 headers={"cache-control": "no-cache",
                                          "x-accel-buffering": "no",
                                          "x-legato-resumed": "1" if resumed else "0"})

    async def _overloaded(self) -> AsyncIterator[bytes]:
        """As over the WebSocket: the advice, then a close with 1013."""
        advice = self.service.advice("overload")
        close = jsoncodec.dumps_str({"t": "close", "code": 1013, "reason": OVERLOADED})
        yield f"data: {advice}\n\ndata: {close}\n\n".encode()

    async def _run_websocket_hooks(self, request: Any) -> None:
        from ..providers import Context, call_plan  # noqa: PLC0415

        from ..websocket import WebSocket  # noqa: PLC0415

        app = self.service.app
        if not app.websocket_hooks:
            return
        # The hooks see what they would see of a WebSocket handshake: its headers,
        # query, cookies, session, client (a WebSocket that is never opened).
        scope = {**request.scope, "type": "websocket", "subprotocols": ["legato.v1"],
                 "extensions": {}}
        ctx = Context(app.providers, scope, request=request,
                      websocket=WebSocket(scope, _never, _never))
        try:
            for hook in app.websocket_hooks:
                await call_plan(app.plans.for_callable(hook), ctx)
        finally:
            await ctx.aclose()

    async def _watched(self, sock: SseSocket, after: int, shutdown: Any, resumed: bool
                       ) -> AsyncIterator[bytes]:
        try:
            if resumed:  # said at once (no id: Last-Event-ID stays the last frame's)
                yield b"retry: 1000\n\ndata: %s\n\n" % jsoncodec.dumps(
                    {"t": "resumed", "conn": sock.id, "after": after})
            async for chunk in sock.events(after, shutdown,
                                           lambda: self.service.advice("shutdown")):
                yield chunk
        finally:
            if sock.state is OPEN and sock.streams == 0:
                loop = asyncio.get_running_loop()
                sock.linger_handle = loop.call_later(self.linger, self._expire, sock)

    def _expire(self, sock: SseSocket) -> None:
        sock.linger_handle = None
        if sock.streams == 0:
            sock.state, sock.close_code = CLOSED, 1006
            sock.inbox.put_nowait(None) if not sock.inbox.full() else None

    async def _open(self, scope: dict[str, Any]) -> SseSocket:
        conn = ChannelConnection(self.service, None)  # type: ignore[arg-type]
        sock = SseSocket(scope, conn.id)
        conn.ws = sock  # type: ignore[assignment]
        conn.welcome_extra = {"token": sock.token, "transport": "sse"}
        self.sockets[sock.id] = sock
        hub = self.service.app.hub
        inbox = _Inbox(sock)
        await hub.subscribe(inbox, f"~sse:{sock.id}")
        task = sock.serving = asyncio.create_task(self._serve(conn, sock, inbox))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.sleep(0)  # the welcome is queued before the stream starts
        return sock

    async def _serve(self, conn: ChannelConnection, sock: SseSocket, inbox: _Inbox) -> None:
        hub = self.service.app.hub
        self.service.connections.add(conn)
        try:
            await conn.serve()
        except WebSocketDisconnect:
            pass
        except Exception:
            logger.exception("SSE channel connection failed")
        finally:
            self.service.connections.discard(conn)
            self.sockets.pop(sock.id, None)
            await hub.forget(inbox)
            await hub.forget(sock)
            if sock.state is OPEN:
                await sock.close(1000)

    async def send(self, request: Any, conn: str = "") -> Any:
        from ..responses import JSONResponse  # noqa: PLC0415

        token = request.headers.get("x-legato-token", "")
        if not conn or not token:
            raise HTTPError(400, "POST needs ?conn= and the X-Legato-Token header")
        body = await request.body()
        try:
            frames = jsoncodec.loads(body)
        except ValueError:
            raise HTTPError(400, "the body is a JSON frame or an array of frames") from None
        if isinstance(frames, dict):
            frames = [frames]
        if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames) \
                or len(frames) > 100:
            raise HTTPError(400, "the body is a JSON frame or an array of 1-100 frames")
        texts = [jsoncodec.dumps_str(f) for f in frames]
        sock = self.sockets.get(conn)
        if sock is not None:
            if not hmac.compare_digest(sock.token, token):
                raise HTTPError(403, "wrong token for this connection")
            if not all(sock.post(t) for t in texts):
                raise HTTPError(429, "this connection has too many frames waiting")
            if sock.state is not OPEN and sock.serving is not None:
                # A close: answered once the connection has ended here, its topics and
                # presence left, so what the client does next sees it gone.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sock.serving), CLOSE_WAIT)
            return JSONResponse({}, status_code=202)
        if self.service.app.hub.url.startswith("memory:"):
            raise HTTPError(404, "no such connection: open a new one with GET sse")
        # Another process may hold it: the hub carries the frames there.
        envelope = jsoncodec.dumps_str({"token": token, "frames": texts})
        await self.service.app.hub.publish_frame(f"~sse:{conn}", envelope)
        return JSONResponse({}, status_code=202)


async def _never(*_: Any) -> Any:
    raise RuntimeError("the SSE transport's stand-in WebSocket is never opened")


class _Inbox:
    """Subscribed to ``~sse:<conn>`` for the connection's process: POSTs that reached
    another process arrive here through the hub and are checked, then read."""

    metrics = None
    _session = None

    def __init__(self, sock: SseSocket) -> None:
        self.sock = sock
        self.scope = {"type": "websocket", "extensions": {}, "path": sock.path}
        self.path = sock.path
        self.state = OPEN

    async def accept(self, subprotocol: str | None = None) -> None:
        return None

    async def send_text(self, data: str) -> None:
        try:
            envelope = jsoncodec.loads(data)
            token, frames = envelope["token"], envelope["frames"]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(token, str) and hmac.compare_digest(self.sock.token, token):
            for frame in frames:
                self.sock.post(frame)

    async def send_bytes(self, data: bytes) -> None:
        return None

    async def ensure_closed(self, code: int = 1000, reason: str = "") -> None:
        return None
