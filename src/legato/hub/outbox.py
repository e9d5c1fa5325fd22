"""One connection's outgoing hub messages, and what happens when the peer is slow (P2, P3).

On legato's server the frame every subscriber shares is written by one callback per
loop iteration (Hub._flush), all of that iteration's broadcasts to a subscriber in one
write, straight to its socket by a loop in C (legato.server.direct.send_all): no task
per subscriber, and one system call per subscriber however many broadcasts are in
flight (as uWebSockets does). While a peer's
transport is above its high-water mark (it is not reading), its messages wait in a
bounded queue here, flushed when the transport drains (the server calls back). Under
other ASGI servers writing takes a coroutine: a connection with queued messages gets one
short-lived sender task, which ends when its queue is empty.

When the queue is full, the topic's policy decides:

- ``"drop_oldest"`` (default): the oldest queued message goes; live data stays fresh.
- ``"drop_newest"``: the new message is dropped; what was queued keeps its order.
- ``"latest"``: only the newest message per topic and key is kept (dashboards,
  positions; ``publish(..., key=...)``, the topic alone without a key).
- ``"close"``: the connection is closed with ``close_code`` (1013 "try again later",
  or 1008 "policy violation"); the client reconnects and resumes with ``since=``.

Drops are counted per outbox and in the hub's metrics; nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from ..protocol.frames import encode_server_frame

if TYPE_CHECKING:
    from ..websocket import WebSocket
    from . import Hub

__all__ = ["Outbox", "Delivery", "POLICIES"]

logger = logging.getLogger("legato.hub")

POLICIES = ("drop_oldest", "drop_newest", "latest", "close")


class Delivery:
    """One message as every local subscriber receives it; the frame is encoded on first
    use and then shared (RFC 6455 §5.1: server frames are unmasked)."""

    __slots__ = ("topic", "id", "data", "key", "_frame")

    def __init__(self, topic: str, message_id: str, data: str | bytes,
                 key: str | None = None) -> None:
        self.topic = topic
        self.id = message_id
        self.data = data
        self.key = key
        self._frame: bytes | None = None

    @property
    def frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            data = self.data
            if isinstance(data, str):
                frame = encode_server_frame(0x81, data.encode("utf-8"))
            else:
                frame = encode_server_frame(0x82, data)
            self._frame = frame
        return frame


class Outbox:
    """The hub's side of one WebSocket: its topics, its queue, its counters."""

    __slots__ = ("ws", "hub", "topics", "limit", "policy", "close_code", "queue", "dropped",
                 "delivered", "peak", "_session", "_sender", "closed", "pending", "fast",
                 "http")

    def __init__(self, ws: WebSocket, hub: Hub, limit: int, policy: str,
                 close_code: int) -> None:
        self.ws = ws
        self.hub = hub
        self.topics: set[str] = set()
        self.limit = limit
        self.policy = policy
        self.close_code = close_code
        self.queue: deque[Delivery] | OrderedDict[Any, Delivery] = \
            OrderedDict() if policy == "latest" else deque()
        self.dropped = 0
        self.delivered = 0
        self.peak = 0
        self.closed = False
        #: Deliveries of this loop iteration, written together by Hub._flush (one write
        #: per subscriber however many broadcasts arrived meanwhile).
        self.pending: list[Delivery] | None = None
        self._sender: asyncio.Task[None] | None = None
        session = ws.scope.get("extensions", {}).get("legato.websocket", {}).get("session")
        self._session = session
        #: The connection's writer (legato.server.direct) while frames may go straight
        #: to it (legato's server, connection open, nothing queued here); None otherwise.
        #: Hub._flush's loop reads it.
        self.fast: Any = None
        self.http: Any = None
        if session is not None:
            session.on_writable = self.flush
            session.on_paused = self._stop_fast_writes
            self.http = session.http
            if session.is_open:
                session.on_closing = self._stop_fast_writes
            self._restore_fast()

    @property
    def depth(self) -> int:
        """Messages waiting for this peer (P3: observable)."""
        return len(self.queue)

    def deliver(self, item: Delivery) -> None:
        if self.closed:
            return
        if self._session is not None and not self.queue:
            pending = self.pending
            if pending is None:
                self.pending = [item]
                self.fast = None  # nothing may overtake what is pending
                self.hub._mark_dirty(self)
            else:
                pending.append(item)
            return
        self._enqueue(item)
        if self._session is None and self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued())

    def write_pending(self) -> None:
        """Write this iteration's deliveries in one go (legato's server), or queue them
        if the peer is not keeping up."""
        pending = self.pending
        self.pending = None
        if pending is None or self.closed:
            return
        session = self._session
        if session.write_paused or self.queue:
            for item in pending:
                self._enqueue(item)
            return
        frames = pending[0].frame if len(pending) == 1 else \
            b"".join([item.frame for item in pending])
        if session.write_frame(frames):
            self.delivered += len(pending)
            self._restore_fast()
        else:
            self.hub._gone(self)


    def _stop_fast_writes(self) -> None:
        """The connection closes, or its peer is behind: deliveries go through deliver()
        (queued, flushed when the transport drains)."""
        self.fast = None

    def _restore_fast(self) -> None:
        session = self._session
        if not self.queue and self.pending is None and not self.closed \
                and session.is_open and not session.http.write_paused \
                and session.http.transport is not None:
            self.fast = session.http.writer

    def _enqueue(self, item: Delivery) -> None:
        self.fast = None  # order: nothing may overtake what waits here
        queue = self.queue
        if isinstance(queue, OrderedDict):
            slot = item.topic if item.key is None else (item.topic, item.key)
            if queue.pop(slot, None) is not None:
                self._drop()  # superseded by a newer message of its key: counted too
            queue[slot] = item
            if len(queue) > self.limit:
                queue.popitem(last=False)
                self._drop()
        elif len(queue) >= self.limit:
            policy = self.policy
            if policy == "drop_oldest":
                queue.popleft()
                queue.append(item)
                self._drop()
            elif policy == "drop_newest":
                self._drop()
            else:
                self._drop()
                self._close_slow()
                return
        else:
            queue.append(item)
        if len(queue) > self.peak:
            self.peak = len(queue)

    def _drop(self) -> None:
        self.dropped += 1
        self.hub.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            logger.warning("hub: slow consumer %s: %d message(s) dropped (%s)",
                           self.ws.path, self.dropped, self.policy)

    def _close_slow(self) -> None:
        """Policy "close": end the connection; the client may resume with since=."""
        self.closed = True
        self.queue.clear()
        self.hub._gone(self)
        logger.warning("hub: closing slow consumer %s with %d", self.ws.path, self.close_code)
        asyncio.get_running_loop().create_task(
            self.ws.ensure_closed(self.close_code, "too slow: messages were piling up"))

    def _pop(self) -> Delivery:
        queue = self.queue
        if isinstance(queue, OrderedDict):
            return queue.popitem(last=False)[1]
        return queue.popleft()

    def flush(self) -> None:
        """The transport drained (legato's server calls this): write what waited."""
        session = self._session
        if session is None:
            return
        while self.queue and not session.write_paused:
            if not session.write_frame(self._pop().frame):
                self.hub._gone(self)
                return
            self.delivered += 1
        self._restore_fast()

    async def _send_queued(self) -> None:
        """Other servers: one sender while there is something to send."""
        from ..exceptions import WebSocketDisconnect  # noqa: PLC0415

        try:
            while self.queue and not self.closed:
                item = self._pop()
                data = item.data
                if isinstance(data, str):
                    await self.ws.send_text(data)
                else:
                    await self.ws.send_bytes(data)
                self.delivered += 1
        except (WebSocketDisconnect, RuntimeError):
            self.hub._gone(self)
        finally:
            self._sender = None

    def close(self) -> None:
        self.closed = True
        self.fast = None
        self.pending = None
        self.queue.clear()
        if self._session is not None and self._session.on_writable == self.flush:
            self._session.on_writable = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
