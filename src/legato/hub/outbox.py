"""One connection's outgoing hub messages, and what happens when the peer is slow (P2, P3).

On legato's server the frame every subscriber shares is written by one callback per
loop iteration (Hub._flush), all of that iteration's broadcasts to a subscriber in one
write, straight to its socket by a loop in C (legato.server.direct.send_all): no task
per subscriber, and one system call per subscriber however many broadcasts are in
flight (as uWebSockets does). While a peer's transport is above its high-water mark (it
is not reading), its messages wait in a bounded queue here, flushed when the transport
drains (the server calls back). Under other ASGI servers writing takes a coroutine: a
connection with queued messages gets one short-lived sender task, which ends when its
queue is empty.

The queue is split in lanes, one per topic (:class:`Lane`): each topic's messages are
bounded by that topic's ``buffer`` and meet that topic's policy, whatever else the
connection is subscribed to, so a connection's backlog is at most the sum of its topics'
buffers. Messages leave in the order they arrived, across lanes. When a lane is full,
its topic's policy decides:

- ``"drop_oldest"`` (default): the topic's oldest queued message goes; live data stays
  fresh.
- ``"drop_newest"``: the new message is dropped; what was queued keeps its order.
- ``"latest"``: only the newest message per key is kept (dashboards, positions;
  ``publish(..., key=...)``, the topic alone without a key).
- ``"close"``: the connection is closed with the topic's ``close_code`` (1013 "try again
  later", or 1008 "policy violation"); the client reconnects and resumes with ``since=``.

What a loop iteration gathers for one write is bounded too (:data:`BATCH_LIMIT`, and
never more than the topic's ``buffer``): a publisher that publishes thousands of
messages without yielding gets them written in slices, so a subscriber's transport
reports that it is behind before more than one slice lands beyond its high-water mark,
and the rest meet the policy here.

Drops are counted per outbox and in the hub's metrics; nothing is lost silently. Every
message written is counted in the route's ``messages_out``/``bytes_out`` when the App
has metrics on (P7).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol.frames import encode_server_frame
from .settings import POLICIES, TopicSettings

if TYPE_CHECKING:
    from ..websocket import WebSocket

__all__ = ["BATCH_LIMIT", "Batch", "Delivery", "Lane", "Outbox", "OutboxOwner", "POLICIES"]

logger = logging.getLogger("legato.hub")


class OutboxOwner(Protocol):
    """What an outbox needs of the hub that owns it (``legato.hub.Hub``): typed here,
    so this module does not import the package that imports it (no cycle)."""

    dropped: int
    _metered: bool

    def settings(self, topic: str) -> TopicSettings: ...

    def _mark_dirty(self, outbox: Outbox) -> None: ...

    def _gone(self, outbox: Outbox) -> None: ...

#: Most messages of one topic joined into one write. Joining saves system calls while
#: broadcasts are in flight; beyond a few dozen frames the saving is nil, and a bigger
#: slice is memory a slow subscriber's transport holds beyond its high-water mark
#: before it can say it is behind.
BATCH_LIMIT = 64


class Delivery:
    """One message as every local subscriber receives it; the frame is encoded on first
    use and then shared (RFC 6455 §5.1: server frames are unmasked)."""

    __slots__ = ("topic", "id", "data", "key", "_frame", "size")

    def __init__(self, topic: str, message_id: str, data: str | bytes,
                 key: str | None = None) -> None:
        self.topic = topic
        self.id = message_id
        self.data = data
        self.key = key
        self._frame: bytes | None = None
        #: Payload bytes (UTF-8 for text), known once the frame is encoded (P7).
        self.size = 0

    @property
    def frame(self) -> bytes:
        frame = self._frame
        if frame is None:
            data = self.data
            if isinstance(data, str):
                payload = data.encode("utf-8")
                frame = encode_server_frame(0x81, payload)
            else:
                payload = data
                frame = encode_server_frame(0x82, payload)
            self.size = len(payload)
            self._frame = frame
        return frame


class Batch(list[Delivery]):
    """One topic's deliveries of this loop iteration, written together (Hub._flush), at
    most ``limit`` of them."""

    __slots__ = ("limit",)

    def __init__(self, item: Delivery, limit: int) -> None:
        super().__init__((item,))
        self.limit = limit


def count_sent(metrics: Any, items: list[Delivery]) -> None:
    """P7: ``items`` (their frames encoded) went out on a connection of this route."""
    metrics.messages_out += len(items)
    metrics.bytes_out += sum([item.size for item in items])


class Lane:
    """One topic's share of a connection's queue: its bound, its policy, its close code.

    Entries are ``(seq, delivery)``, ``seq`` growing per outbox, so the outbox can send
    the oldest across lanes first; each lane is in ``seq`` order ("latest" moves a key's
    new message to the end).
    """

    __slots__ = ("limit", "policy", "close_code", "items")

    def __init__(self, settings: TopicSettings) -> None:
        self.limit = max(1, settings.buffer)
        self.policy = settings.policy
        self.close_code = settings.close_code
        self.items: deque[tuple[int, Delivery]] | OrderedDict[Any, tuple[int, Delivery]] = \
            OrderedDict() if self.policy == "latest" else deque()

    def __len__(self) -> int:
        return len(self.items)

    def add(self, seq: int, item: Delivery) -> int:
        """Queue ``item``; return how many messages its policy dropped (the new one or
        queued ones), -1 when the policy is "close" and the lane is full."""
        items = self.items
        if isinstance(items, OrderedDict):
            dropped = 0
            if items.pop(item.key, None) is not None:
                dropped = 1  # superseded by a newer message of its key: counted too
            items[item.key] = (seq, item)
            if len(items) > self.limit:
                items.popitem(last=False)
                dropped += 1
            return dropped
        if len(items) < self.limit:
            items.append((seq, item))
            return 0
        if self.policy == "drop_oldest":
            items.popleft()
            items.append((seq, item))
            return 1
        return 1 if self.policy == "drop_newest" else -1

    def head(self) -> int:
        """The ``seq`` of the oldest entry (the lane is not empty)."""
        items = self.items
        if isinstance(items, OrderedDict):
            return next(iter(items.values()))[0]
        return items[0][0]

    def pop(self) -> Delivery:
        items = self.items
        if isinstance(items, OrderedDict):
            return items.popitem(last=False)[1][1]
        return items.popleft()[1]


class Outbox:
    """The hub's side of one WebSocket: its topics, its queue (lanes), its counters."""

    __slots__ = ("ws", "hub", "topics", "lanes", "queued", "seq", "dropped", "delivered",
                 "peak", "metrics", "_session", "_sender", "_waiters", "closed", "pending",
                 "fast", "http")

    def __init__(self, ws: WebSocket, hub: OutboxOwner) -> None:
        self.ws = ws
        self.hub = hub
        self.topics: set[str] = set()
        #: Queued messages by topic; a lane exists while it holds something.
        self.lanes: dict[str, Lane] = {}
        self.queued = 0
        self.seq = 0
        self.dropped = 0
        self.delivered = 0
        self.peak = 0
        #: The route's counters when the App has metrics on (P7), else None.
        self.metrics: Any = getattr(ws, "metrics", None)
        if self.metrics is not None:
            hub._metered = True
        self.closed = False
        #: Deliveries of this loop iteration, written together by Hub._flush (one write
        #: per subscriber however many broadcasts arrived meanwhile), at most
        #: BATCH_LIMIT of them.
        self.pending: list[Delivery] | None = None
        self._sender: asyncio.Task[None] | None = None
        #: written()'s waiters: (the seq they wait for, their future).
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
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
        return self.queued

    def deliver(self, item: Delivery) -> None:
        if self.closed:
            return
        if self._session is not None and not self.queued:
            pending = self.pending
            if pending is None:
                self.pending = [item]
                self.fast = None  # nothing may overtake what is pending
                self.hub._mark_dirty(self)
            else:
                pending.append(item)
                if len(pending) >= BATCH_LIMIT:
                    self.write_pending()  # a burst: written (or queued) in slices
            return
        self._enqueue(item)
        if self._session is None and self._sender is None and not self.closed:
            self._sender = asyncio.get_running_loop().create_task(self._send_queued())

    def write_pending(self) -> None:
        """Write this iteration's deliveries in one go (legato's server), or queue them
        if the peer is not keeping up."""
        pending = self.pending
        self.pending = None
        if pending is None or self.closed:
            return
        session = self._session
        if session.write_paused or self.queued:
            for item in pending:
                self._enqueue(item)
            return
        frames = pending[0].frame if len(pending) == 1 else \
            b"".join([item.frame for item in pending])
        if session.write_frame(frames):
            self.delivered += len(pending)
            if self.metrics is not None:
                count_sent(self.metrics, pending)
            self._restore_fast()
        else:
            self.hub._gone(self)

    def _stop_fast_writes(self) -> None:
        """The connection closes, or its peer is behind: deliveries go through deliver()
        (queued, flushed when the transport drains)."""
        self.fast = None

    def _restore_fast(self) -> None:
        session = self._session
        if not self.queued and self.pending is None and not self.closed \
                and session.is_open and not session.http.write_paused \
                and session.http.transport is not None:
            self.fast = session.http.writer

    def _enqueue(self, item: Delivery) -> None:
        """Into its topic's lane, under its topic's policy."""
        if self.closed:
            return  # policy "close" ended it, earlier in this burst
        self.fast = None  # order: nothing may overtake what waits here
        lane = self.lanes.get(item.topic)
        if lane is None:
            lane = self.lanes[item.topic] = Lane(self.hub.settings(item.topic))
        self.seq += 1
        dropped = lane.add(self.seq, item)
        if dropped < 0:
            self._drop(lane)
            self._close_slow(lane.close_code)
            return
        self.queued += 1 - dropped
        for _ in range(dropped):
            self._drop(lane)
        if self.queued > self.peak:
            self.peak = self.queued

    def _drop(self, lane: Lane) -> None:
        self.dropped += 1
        self.hub.dropped += 1
        if self.metrics is not None:
            self.metrics.hub_dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            logger.warning("hub: slow consumer %s: %d message(s) dropped (%s)",
                           self.ws.path, self.dropped, lane.policy)

    def _close_slow(self, code: int) -> None:
        """Policy "close": end the connection; the client may resume with since=."""
        self.closed = True
        self._clear()
        self.hub._gone(self)
        logger.warning("hub: closing slow consumer %s with %d", self.ws.path, code)
        asyncio.get_running_loop().create_task(
            self.ws.ensure_closed(code, "too slow: messages were piling up"))

    def _pop(self) -> Delivery:
        """The oldest queued message, across lanes (there is one)."""
        lanes = self.lanes
        if len(lanes) == 1:
            topic = next(iter(lanes))
        else:
            topic = min(lanes, key=lambda name: lanes[name].head())
        lane = lanes[topic]
        item = lane.pop()
        if not lane:
            del lanes[topic]  # a new backlog reads the topic's settings afresh
        self.queued -= 1
        return item

    def _clear(self) -> None:
        self.lanes.clear()
        self.queued = 0

    def leave(self, topic: str) -> None:
        """The connection unsubscribed from ``topic``: what of it still waits here is not
        sent (nor counted as a slow consumer's drop); frames already handed to the
        transport are gone and cannot be called back."""
        self.topics.discard(topic)
        lane = self.lanes.pop(topic, None)
        if lane is not None:
            self.queued -= len(lane)
        if self.pending is not None:
            self.pending = [item for item in self.pending if item.topic != topic] or None
        if self._waiters:
            self._wake_writers()
        if not self.queued and self.pending is None and self._session is not None:
            self._restore_fast()

    def flush(self) -> None:
        """The transport drained (legato's server calls this): write what waited."""
        session = self._session
        if session is None:
            return
        metrics = self.metrics
        while self.queued and not session.write_paused:
            item = self._pop()
            if not session.write_frame(item.frame):
                self.hub._gone(self)
                return
            self.delivered += 1
            if metrics is not None:
                count_sent(metrics, [item])
        self._restore_fast()

    async def written(self) -> None:
        """Wait until what is queued now has been sent (or dropped by its policy).

        A ``since=`` replay's promise, that what the handler sends after ``subscribe()``
        comes after the replay, on every server: on legato's server write_pending() has
        written it already; under other ASGI servers the sender task writes it, and
        this waits for it (not for messages queued later).
        """
        if self._sender is None or self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self.seq, waiter))
        await waiter

    def _wake_writers(self, done: bool = False) -> None:
        """Release the written() waiters whose messages have all left the queue."""
        head = 0 if done or not self.queued else \
            min(lane.head() for lane in self.lanes.values())
        waiting = []
        for seq, waiter in self._waiters:
            if head and head <= seq:
                waiting.append((seq, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._waiters = waiting

    async def _send_queued(self) -> None:
        """Other servers: one sender while there is something to send (ws.send_* counts
        what it sends in the route's metrics)."""
        from ..exceptions import WebSocketDisconnect  # noqa: PLC0415

        try:
            while self.queued and not self.closed:
                item = self._pop()
                data = item.data
                if isinstance(data, str):
                    await self.ws.send_text(data)
                else:
                    await self.ws.send_bytes(data)
                self.delivered += 1
                if self._waiters:
                    self._wake_writers()
        except (WebSocketDisconnect, RuntimeError):
            self.hub._gone(self)
        finally:
            self._sender = None
            if self._waiters:
                self._wake_writers(done=True)

    def close(self) -> None:
        self.closed = True
        self.fast = None
        self.pending = None
        self._clear()
        if self._session is not None and self._session.on_writable == self.flush:
            self._session.on_writable = None
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        if self._waiters:
            self._wake_writers(done=True)  # a sender cancelled before it ran wakes none
