"""The hub: rooms and broadcast, in one process or across many (SPEC §6, P1-P7).

::

    await app.hub.publish("room:lobby", {"user": "ann", "text": "hi"})

    @app.websocket("/rooms/{room}")
    async def room(ws, room: str, since: str | None = None):
        async with app.hub.subscribe(ws, f"room:{room}", since=since, presence=ws.client):
            async for message in ws:
                await app.hub.publish(f"room:{room}", message)

Messages go through the backend (``memory://`` in-process, ``redis://`` across
processes and hosts), which gives each an id; every process then delivers it to its
local subscribers, encoding the frame once for all of them (outbox.py). By default a
subscriber receives an envelope, ``{"topic": ..., "id": ..., "data": ...}``, so a client
can resume with ``since=<last id>`` (P5); ``App(hub_envelope=False)`` sends the message
alone (text as text, other values as JSON). ``bytes`` messages always go as they are, in
binary frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import parse_qsl
from uuid import uuid4

from .. import jsoncodec
from ..exceptions import HistoryGap, HTTPError
from ..server.direct import send_all
from ..typed import dump_value
from .backend import (LOCAL_SEQ_BASE, Backend, Gap, HubUnavailable, LocalIds, MemoryBackend,
                      PublishOutcomeUnknown, SubscribeUnavailable, id_key)
from .outbox import BATCH_LIMIT, Batch, Delivery, Outbox, count_sent
from .settings import POLICIES, TopicSettings

if TYPE_CHECKING:
    from ..websocket import WebSocket

__all__ = ["Gap", "History", "HistoryGap", "Hub", "HubUnavailable", "PublishOutcomeUnknown",
           "Subscription", "SubscribeUnavailable", "TopicSettings", "backend_for"]

#: First character of a payload sent as it is (publish_frame); JSON never starts so.
RAW_MARK = "\x00"

#: What ``subscribe(..., on_gap=)`` does when a resume's history has a gap (P5).
ON_GAP = ("flag", "raise")

logger = logging.getLogger("legato.hub")


class History(list[dict[str, Any]]):
    """What ``Hub.history()`` returns: the messages, and ``gap`` (a :class:`Gap`, or None)
    when the kept history no longer reaches back to the ``since`` asked for (P5)."""

    gap: Gap | None = None


def backend_for(url: str) -> Backend:
    """``memory://``, ``redis://host:port/db`` (``rediss://`` for TLS) or ``nats://``.

    Redis options ride in the query string: ``?prefix=chat&presence_ttl=15``
    (``prefix`` keeps apps sharing one Redis apart; see ``RedisBackend`` for the rest:
    ``presence_ttl``, ``timeout``, ``ping_interval``, ``gap_ttl``, ``history_ttl``,
    ``gap_window``, ``max_pending``).

    ``redis+cluster://host:port[,host:port...]`` (``rediss+cluster://`` for TLS): the
    hub over Redis Cluster with sharded pub/sub (docs/hub.md), the same options plus
    ``wait_replicas``, ``replica_timeout``, ``failover_timeout``, ``refresh_interval``
    (see ``RedisClusterBackend``).

    ``nats://host:port`` (``tls://`` for TLS): the NATS hub (docs/nats.md), options
    ``prefix``, ``presence_ttl``, ``timeout``, ``ping_interval``, ``history_ttl``,
    ``max_history``, ``reconnect_wait`` (see ``NatsBackend``).
    """
    if url.startswith("memory:"):
        return MemoryBackend()
    cluster = url.startswith(("redis+cluster://", "rediss+cluster://"))
    if cluster or url.startswith(("redis://", "rediss://", "unix://")):
        base, _, query = url.partition("?")
        options: dict[str, Any] = {}
        floats = {"presence_ttl", "timeout", "ping_interval", "gap_ttl", "history_ttl"}
        ints = {"gap_window", "max_pending"}
        if cluster:
            floats |= {"replica_timeout", "failover_timeout", "refresh_interval"}
            ints |= {"wait_replicas"}
        for name, value in parse_qsl(query):
            try:
                if name == "prefix":
                    options[name] = value
                elif name in floats:
                    options[name] = float(value)
                elif name in ints:
                    options[name] = int(value)
                else:
                    raise ValueError(f"unknown hub option {name!r} in {url!r}")
            except ValueError as exc:
                if "unknown hub option" in str(exc):
                    raise
                raise ValueError(f"hub option {name}={value!r} in {url!r} is not a "
                                 f"number") from None
        if cluster:
            from .redis_cluster import RedisClusterBackend  # noqa: PLC0415 - 'redis' extra

            return RedisClusterBackend(base, **options)
        from .redis import RedisBackend  # noqa: PLC0415 - needs the 'redis' extra

        return RedisBackend(base, **options)
    if url.startswith(("nats://", "tls://")):
        from .nats import NatsBackend  # noqa: PLC0415 - needs the 'nats' extra

        base, _, query = url.partition("?")
        nats_options: dict[str, Any] = {}
        for name, value in parse_qsl(query):
            if name == "prefix":
                nats_options[name] = value
            elif name in ("presence_ttl", "timeout", "ping_interval", "history_ttl",
                          "reconnect_wait"):
                nats_options[name] = float(value)
            elif name == "max_history":
                nats_options[name] = int(value)
            else:
                raise ValueError(f"unknown hub option {name!r} in {url!r}")
        return NatsBackend(base, **nats_options)
    raise ValueError(f"unknown hub backend {url!r}: use memory://, redis://..., "
                     f"redis+cluster://host:port,... or nats://...")


class Subscription:
    """``await hub.subscribe(...)`` stays subscribed until the connection ends;
    ``async with hub.subscribe(...)`` leaves on exit.

    ``gap``: None, or once subscribed with a ``since=`` that the kept history no longer
    reaches back to, a :class:`Gap` (P5): tell the client that it missed messages.
    """

    def __init__(self, hub: Hub, ws: WebSocket, topic: str, since: str | None,
                 presence: Any, on_gap: str = "flag") -> None:
        self.hub = hub
        self.ws = ws
        self.topic = topic
        self.since = since
        self.presence = presence
        self.on_gap = on_gap
        self.gap: Gap | None = None

    def __await__(self) -> Generator[Any, None, Subscription]:
        yield from self.hub._subscribe(self).__await__()
        return self

    async def __aenter__(self) -> Subscription:
        await self.hub._subscribe(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hub.unsubscribe(self.ws, self.topic)


class Hub:
    """Topics, their local subscribers, and the backend that links processes."""

    def __init__(self, url: str = "memory://", *, envelope: bool = True,
                 history: int = 0, policy: str = "drop_oldest", buffer: int = 256,
                 close_code: int = 1013, strict: bool = True) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.url = url
        self.backend: Any = backend_for(url)
        self.envelope = envelope
        #: What publish() does when the broker cannot take a message: raise (True), or
        #: log a warning and return None (False: the App's default, so that a handler
        #: written for the memory hub keeps its client during an outage; SPEC P4).
        self.strict = strict
        self._warned_at = -1e9
        self.defaults = TopicSettings(history, policy, buffer, close_code)
        self._settings: dict[str, TopicSettings] = {}
        self._subscribers: dict[str, set[Outbox]] = {}
        self._outboxes: dict[Any, Outbox] = {}
        self._members: dict[tuple[Any, str], str] = {}
        self._started = False
        self._starting: asyncio.Lock | None = None
        # Deliveries of this loop iteration by topic, written by one _flush callback
        # (or earlier, by _write_batch, once a topic's batch is full).
        self._batches: dict[str, Batch] = {}
        self._dirty: list[Outbox] = []
        self._flush_scheduled = False
        # Set by the first outbox whose route counts messages (P7): until then, and
        # with metrics off, a broadcast does no counting per subscriber.
        self._metered = False
        self.process_id = uuid4().hex[:12]
        # P7 counters.
        self.published = 0
        self.published_locally = 0
        self.delivered_messages = 0
        self.dropped = 0
        self.outages = 0
        self.gaps = 0
        self._local_ids = LocalIds(LOCAL_SEQ_BASE)  # never an id Redis gives
        self.events: list[tuple[str, dict[str, Any]]] = []
        #: Called with each backend event (kind, details), after it is kept and counted:
        #: the channel layer tells its clients what an outage cost them.
        self.listeners: list[Any] = []

    # ----------------------------------------------------------------- settings

    def configure(self, topic: str, *, history: int | None = None,
                  policy: str | None = None, buffer: int | None = None,
                  close_code: int | None = None) -> None:
        """Settings for ``topic``, or every topic starting with a prefix ending in '*'."""
        if policy is not None and policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if close_code is not None and close_code not in (1008, 1013):
            raise ValueError("close_code is 1008 (policy violation) or 1013 (try later)")
        base = self.settings(topic)
        self._settings[topic] = TopicSettings(
            base.history if history is None else history,
            base.policy if policy is None else policy,
            base.buffer if buffer is None else buffer,
            base.close_code if close_code is None else close_code)

    def settings(self, topic: str) -> TopicSettings:
        found = self._settings.get(topic)
        if found is not None:
            return found
        best = ""
        for pattern in self._settings:
            if pattern.endswith("*") and topic.startswith(pattern[:-1]) \
                    and len(pattern) > len(best):
                best = pattern
        return self._settings[best] if best else self.defaults

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._started:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if not self._started:
                await self.backend.start(self._deliver, self._event)
                self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        for outbox in list(self._outboxes.values()):
            outbox.close()
        self._outboxes.clear()
        self._subscribers.clear()
        await self.backend.stop()
        self._started = False

    def _event(self, kind: str, details: dict[str, Any]) -> None:
        """Backend events (disconnected, reconnected...): logged, kept, counted."""
        self.events.append((kind, details))
        del self.events[:-100]
        if kind == "disconnected":
            self.outages += 1
        elif kind == "gap":
            self.gaps += 1
        # The backend logs these itself, at warning level; here they are kept and counted.
        logger.debug("hub event %s %s", kind, details)
        for listener in self.listeners:
            listener(kind, details)

    # ---------------------------------------------------------------- publishing

    @overload
    async def publish(self, topic: str, message: Any, *, key: str | None = None,
                      strict: Literal[True]) -> str: ...
    @overload
    async def publish(self, topic: str, message: Any, *, key: str | None = None,
                      strict: bool | None = None) -> str | None: ...

    async def publish(self, topic: str, message: Any, *, key: str | None = None,
                      strict: bool | None = None) -> str | None:
        """Send ``message`` to every subscriber of ``topic`` in every process; return
        its id (published once, under that id).

        When the broker cannot take it, with ``strict`` (the hub's ``strict`` unless
        given; a bare ``Hub`` is strict, the App's hub is not, ``App(hub_strict=True)``):

        - ``HubUnavailable`` (``delivered_locally=True``): the broker is unreachable and
          the message certainly reached no other process; this process's subscribers
          got it.
        - ``PublishOutcomeUnknown`` (a ``HubUnavailable``, ``delivered_locally=False``):
          the broker got it and went silent; it may still reach every process, this one
          included, once, when the broker resumes, so it is not delivered locally now.

        Not strict: the same happens, but instead of raising, publish() logs a warning
        (at most one every 10 s) and returns None: the message was not published to
        every process (yet). Either way it is counted (``published_locally``).

        Many concurrent publishes queue for the broker (bounded, then they wait for
        room): a healthy broker is never reported unavailable.

        ``key``: what the "latest" policy keeps one message of in a slow subscriber's
        buffer (say, a ticker symbol on a "prices" topic); without a key, the topic.
        """
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str or None, not {type(key).__name__}")
        if not self._started:
            await self.start()
        if isinstance(message, (bytes, bytearray, memoryview)):
            payload: str | bytes = bytes(message)
        elif isinstance(message, str) and not self.envelope:
            # A text that starts with the raw mark keeps it (one mark is taken off).
            payload = RAW_MARK + message if message[:1] == RAW_MARK else message
        else:
            payload = jsoncodec.dumps_str(dump_value(message))
        try:
            message_id: str = await self.backend.publish(
                topic, payload, history=self.settings(topic).history, key=key)
        except PublishOutcomeUnknown as exc:
            # Redis may deliver it yet: a local copy now could make two.
            if strict if strict is not None else self.strict:
                raise
            self._not_published(topic, exc)
            return None
        except HubUnavailable as exc:
            # The broker is down: this process's subscribers still get the message (local
            # delivery goes on), and the caller learns that no other process did.
            local = self._local_ids.next_id()
            reached = len(self._subscribers.get(topic, ()))
            self._deliver(topic, local, payload, key)
            self.published_locally += 1
            failure = HubUnavailable(f"{exc}; delivered to this process's {reached} "
                                     "subscriber(s) only", delivered_locally=True)
            if strict if strict is not None else self.strict:
                raise failure from exc
            self._not_published(topic, failure)
            return None
        self.published += 1
        return message_id

    def _not_published(self, topic: str, exc: HubUnavailable) -> None:
        """A publish that is not strict: a warning now and then, not an exception."""
        now = asyncio.get_running_loop().time()
        if now - self._warned_at >= 10.0:
            self._warned_at = now
            logger.warning("hub: a message on %r was not published to every process: "
                           "%s (publish(strict=True) raises instead; further ones in "
                           "the next 10 s are not logged)", topic, exc)

    async def publish_frame(self, topic: str, frame: str) -> None:
        """Send ``frame`` (JSON text) to the subscribers of ``topic`` as it is, without the
        envelope and without history: the channel layer's events (presence joined/left).
        The mark travels through every backend as the payload's first character."""
        if not self._started:
            await self.start()
        await self.backend.publish(topic, RAW_MARK + frame, history=0)

    async def epoch(self, topic: str) -> str:
        """The topic's epoch: ids only mean something within it (docs/channels.md)."""
        if not self._started:
            await self.start()
        epoch: str = await self.backend.epoch(topic)
        return epoch

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take an idempotency key for ``ttl`` s across the hub's processes: None if it
        was free, else what it was settled with ("" while its claimer works)."""
        if not self._started:
            await self.start()
        found: str | None = await self.backend.claim(key, ttl)
        return found

    async def settle(self, key: str, value: str, ttl: float) -> None:
        await self.backend.settle(key, value, ttl)

    def _data_for(self, topic: str, message_id: str, payload: str | bytes) -> str | bytes:
        if type(payload) is str and payload[:1] == RAW_MARK:
            return payload[1:]
        if self.envelope and isinstance(payload, str):
            return (f'{{"topic":{jsoncodec.dumps_str(topic)},"id":"{message_id}",'
                    f'"data":{payload}}}')
        return payload

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _mark_dirty(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        self._schedule_flush()

    def _flush(self) -> None:
        """Once per loop iteration: each subscriber gets what was published to a topic
        meanwhile in one write, the frames joined once for all of them (several
        broadcasts in flight cost one system call per subscriber, not several)."""
        self._flush_scheduled = False
        batches, self._batches = self._batches, {}
        for topic, items in batches.items():
            self._write_batch(topic, items)
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.write_pending()

    def _write_batch(self, topic: str, items: list[Delivery]) -> None:
        """One topic's batch to all its subscribers: one joined write to each that keeps
        up, the rest through their outboxes (queued under their topics' policies)."""
        outboxes = self._subscribers.get(topic)
        if not outboxes:
            return
        data = items[0].frame if len(items) == 1 else b"".join([i.frame for i in items])
        self.delivered_messages += len(items) * len(outboxes)
        targets = list(outboxes)
        # The hot loop of every broadcast (fanout.py); the rest are queued.
        slow = send_all(targets, data)
        if self._metered:
            self._count_written(targets, slow, items)
        if slow is not None:
            for outbox in slow:
                for item in items:
                    outbox.deliver(item)

    @staticmethod
    def _count_written(targets: list[Outbox], slow: list[Outbox] | None,
                       items: list[Delivery]) -> None:
        """P7: what send_all wrote counts in each subscriber's route metrics (the slow
        ones count when their outbox writes)."""
        skipped = set(slow) if slow else ()
        for outbox in targets:
            if outbox.metrics is not None and outbox not in skipped:
                count_sent(outbox.metrics, items)

    def _deliver(self, topic: str, message_id: str, payload: str | bytes,
                 key: str | None = None) -> None:
        """The backend's callback: one message for this process's subscribers, batched
        until the end of this loop iteration (see _flush)."""
        if topic not in self._subscribers:
            return
        item = Delivery(topic, message_id, self._data_for(topic, message_id, payload), key)
        batch = self._batches.get(topic)
        if batch is None:
            limit = min(BATCH_LIMIT, max(1, self.settings(topic).buffer))
            batch = self._batches[topic] = Batch(item, limit)
            self._schedule_flush()
        else:
            batch.append(item)
        if len(batch) >= batch.limit:
            # P3: a publisher that does not yield (a burst) is written in slices, so a
            # slow subscriber's transport pauses before more than one slice lands
            # beyond its high-water mark; the rest meet its topic's policy.
            self._write_batch(topic, self._batches.pop(topic))

    # ------------------------------------------------------------- subscriptions

    def subscribe(self, ws: WebSocket, topic: str, since: str | None = None, *,
                  presence: Any = None, on_gap: str = "flag") -> Subscription:
        """Subscribe ``ws`` to ``topic`` (await it, or use it with ``async with``).

        ``since``: the id of the last message the client saw; what it missed is sent
        first, in order, then live messages (P5; needs the topic's ``history``). When
        the kept history no longer reaches back to ``since``, what is kept is sent and
        ``subscription.gap`` says so (``on_gap="flag"``), or, with ``on_gap="raise"``,
        nothing is sent and :class:`HistoryGap` is raised (not subscribed). Either way
        it is counted (``stats()["gaps"]``) and kept in ``events``. A ``since`` that is
        not an id: ``HTTPError(400)`` (before accept: a 400; after: close 1008).
        ``presence``: what ``presence(topic)`` shows for this connection (P6).
        """
        if on_gap not in ON_GAP:
            raise ValueError(f"on_gap must be one of {ON_GAP}, not {on_gap!r}")
        return Subscription(self, ws, topic, since, presence, on_gap)

    def _outbox(self, ws: WebSocket, topic: str) -> Outbox:
        """The connection's outbox; each topic's own settings apply to its messages in it
        (outbox.Lane), so it does not matter which topic came first."""
        outbox = self._outboxes.get(ws)
        if outbox is None:
            outbox = self._outboxes[ws] = Outbox(ws, self)
        return outbox

    async def _subscribe(self, sub: Subscription) -> None:
        if not self._started:
            await self.start()
        ws, topic = sub.ws, sub.topic
        if sub.since is not None:
            try:
                id_key(sub.since)
            except ValueError:
                raise HTTPError(400, "since= is not a message id") from None
        if ws.state.name not in ("OPEN", "CONNECTING"):
            raise RuntimeError("cannot subscribe a closed WebSocket")
        known = self._outboxes.get(ws)
        if known is not None and topic in known.topics:
            return
        if sub.since is not None:
            # P5: hold live messages while the history is read, then send history and
            # the held messages in order, without repeats.
            await self._replay(sub)
        else:
            if ws.state.name == "CONNECTING":
                await ws.accept()
            outbox = self._outbox(ws, topic)
            first = not self._subscribers.get(topic)
            self._subscribers.setdefault(topic, set()).add(outbox)
            outbox.topics.add(topic)
            if first:
                await self.backend.listen(topic)
        if sub.presence is not None:
            member = f"{self.process_id}:{id(ws):x}"
            self._members[(ws, topic)] = member
            await self.backend.join(topic, member, sub.presence)

    async def _replay(self, sub: Subscription) -> None:
        """Read what came after ``since``, then accept (if not yet), then send it and
        what was published meanwhile. The history is read first so that a broker
        outage fails the subscribe cleanly (:class:`SubscribeUnavailable`: a 503 before
        accept) and leaves nothing behind: no subscriber set, no broker subscription."""
        assert sub.since is not None
        held: list[Delivery] = []
        topic = sub.topic

        class _Holder:
            closed = False
            fast = None  # never written to directly: _flush hands it every delivery

            def deliver(self, item: Delivery) -> None:
                held.append(item)

        holder: Any = _Holder()
        self._subscribers.setdefault(topic, set()).add(holder)
        try:
            await self.backend.listen(topic)
            missed, sub.gap = await self.backend.replay(topic, sub.since)
            if sub.ws.state.name == "CONNECTING":
                await sub.ws.accept()
        except BaseException as exc:
            self._subscribers[topic].discard(holder)
            await self._abandon(None, topic)
            if isinstance(exc, HubUnavailable):
                raise SubscribeUnavailable(f"cannot resume {topic!r} from since="
                                           f"{sub.since}: {exc}") from exc
            raise
        outbox = self._outbox(sub.ws, topic)
        self._subscribers[topic].discard(holder)
        if sub.gap is not None:
            self._resume_gap(sub.gap)
            if sub.on_gap == "raise":
                await self._abandon(outbox, topic)
                raise HistoryGap(sub.gap)
        seen: set[str] = set()
        for message_id, payload, key in missed:
            seen.add(message_id)
            outbox.deliver(Delivery(topic, message_id,
                                    self._data_for(topic, message_id, payload), key))
        self._subscribers.setdefault(topic, set()).add(outbox)
        outbox.topics.add(topic)
        for item in held:
            if item.id not in seen:
                outbox.deliver(item)
        # Written before subscribe() returns: what the handler sends next comes after.
        outbox.write_pending()
        await outbox.written()  # other ASGI servers: the sender task writes it

    def _resume_gap(self, gap: Gap, *, resume: bool = True) -> None:
        """Counted with the backend's gaps (one counter: messages someone missed);
        ``resume``: a subscribe's since= (else a ``history()`` read)."""
        logger.info("hub: a %s on %r from since=%s has a gap (%s); first kept: %s",
                    "resume" if resume else "history read", gap.topic, gap.since,
                    gap.reason, gap.first_kept)
        self._event("gap", {"topic": gap.topic, "after": gap.since, "reason": gap.reason,
                            "first_kept": gap.first_kept, "resume": resume})

    async def _abandon(self, outbox: Outbox | None, topic: str) -> None:
        """Undo a subscription that raised before it began: no outbox, no listening
        left behind for a connection that is not subscribed."""
        if not self._subscribers.get(topic):
            self._subscribers.pop(topic, None)
            await self._quietly(self.backend.unlisten(topic))
        if outbox is not None and not outbox.topics:
            outbox.close()
            self._outboxes.pop(outbox.ws, None)

    async def unsubscribe(self, ws: WebSocket, topic: str) -> None:
        outbox = self._outboxes.get(ws)
        if outbox is None or topic not in outbox.topics:
            return
        outbox.leave(topic)  # what of the topic still waits for ws is not sent
        await self._leave(outbox, topic)
        if not outbox.topics:
            outbox.close()
            self._outboxes.pop(ws, None)

    async def _leave(self, outbox: Outbox, topic: str) -> None:
        subscribers = self._subscribers.get(topic)
        if subscribers is not None:
            subscribers.discard(outbox)
            if not subscribers:
                del self._subscribers[topic]
                await self._quietly(self.backend.unlisten(topic))
        member = self._members.pop((outbox.ws, topic), None)
        if member is not None:
            await self._quietly(self.backend.leave(topic, member))

    def knows(self, ws: WebSocket) -> bool:
        """Is ``ws`` subscribed to anything (cheap: asked at every connection's end)?"""
        return ws in self._outboxes

    async def forget(self, ws: WebSocket) -> None:
        """The connection ended: leave all its topics (P1: no leak)."""
        outbox = self._outboxes.pop(ws, None)
        if outbox is None:
            return
        outbox.close()
        for topic in list(outbox.topics):
            await self._leave(outbox, topic)
        outbox.topics.clear()

    def _gone(self, outbox: Outbox) -> None:
        """A write found the connection closed: stop delivering to it now."""
        outbox.closed = True
        outbox.fast = None
        for topic in outbox.topics:
            subscribers = self._subscribers.get(topic)
            if subscribers is not None:
                subscribers.discard(outbox)

    async def _quietly(self, call: Any) -> None:
        try:
            await call
        except HubUnavailable:
            logger.info("hub: broker unreachable while leaving a topic (expires on its own)")

    # ------------------------------------------------------------- queries

    async def presence(self, topic: str) -> list[Any]:
        """Who is subscribed to ``topic`` with a presence value, in every process.
        O(room size): for a big room's size, :meth:`presence_count`."""
        if not self._started:
            await self.start()
        members = await self.backend.members(topic)
        return list(members.values())

    async def presence_count(self, topic: str) -> int:
        """How many are in ``presence(topic)``, without listing them: on Redis one
        number per process (O(processes)), whatever the room's size."""
        if not self._started:
            await self.start()
        count: int = await self.backend.count(topic)
        return count

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None, *, on_gap: str = "flag") -> History:
        """Kept messages of ``topic`` after ``since``: ``[{"id": ..., "data": ...}]``,
        with ``"key"`` too for messages published with one.

        As for a resume (P5), a ``since`` the kept history no longer reaches back to is
        never silent: the list's ``.gap`` says so (``on_gap="flag"``) or
        :class:`HistoryGap` is raised (``on_gap="raise"``); counted like a resume's gap.
        ``limit`` keeps the newest ``limit`` of them (asked for: not a gap).
        """
        if on_gap not in ON_GAP:
            raise ValueError(f"on_gap must be one of {ON_GAP}, not {on_gap!r}")
        if since is not None:
            try:
                id_key(since)
            except ValueError:
                raise ValueError(f"since= is not a message id: {since[:40]!r}") from None
        if not self._started:
            await self.start()
        out = History()
        if since is None:
            stored = await self.backend.history(topic, None, limit)
        else:
            stored, out.gap = await self.backend.replay(topic, since)
            if limit is not None:
                stored = stored[-limit:] if limit > 0 else []
            if out.gap is not None:
                self._resume_gap(out.gap, resume=False)
                if on_gap == "raise":
                    raise HistoryGap(out.gap)
        for message_id, payload, key in stored:
            data: Any = payload
            if isinstance(payload, str) and self.envelope:
                data = jsoncodec.loads(payload)
            entry = {"id": message_id, "data": data}
            if key is not None:
                entry["key"] = key
            out.append(entry)
        return out

    def depth(self, ws: WebSocket) -> int:
        """Messages waiting for ``ws`` (P3)."""
        outbox = self._outboxes.get(ws)
        return outbox.depth if outbox is not None else 0

    def queued_by_route(self) -> dict[int, int]:
        """Messages waiting, by ``id()`` of the route's metrics (P7, /metrics)."""
        waiting: dict[int, int] = {}
        for outbox in self._outboxes.values():
            if outbox.metrics is not None:
                key = id(outbox.metrics)
                waiting[key] = waiting.get(key, 0) + outbox.depth
        return waiting

    def stats(self) -> dict[str, Any]:
        """Counters and gauges for /metrics (P7)."""
        depths = [o.depth for o in self._outboxes.values()]
        return {
            "topics": len(self._subscribers),
            "subscriptions": sum(len(s) for s in self._subscribers.values()),
            "connections": len(self._outboxes),
            "published": self.published,
            "delivered": self.delivered_messages,
            "dropped": self.dropped,
            "queued": sum(depths),
            "max_queue_depth": max(depths, default=0),
            "backend_reconnects": getattr(self.backend, "reconnects", 0),
            "backend_outages": self.outages,
            "gaps": self.gaps,
            "published_locally": self.published_locally,
            # Per broker shard (Redis: the one server; Redis Cluster: each master):
            # address, up, topics, pending commands, lag (s), reconnects.
            "shards": self.backend.shard_stats() if hasattr(self.backend, "shard_stats")
            else [],
        }
