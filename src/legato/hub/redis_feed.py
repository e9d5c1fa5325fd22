"""One pub/sub connection to one Redis node and the topics it carries, kept whole across
reconnections: the single Redis backend has one feed, the cluster backend one per shard.

A feed delivers each topic's messages once and in order, whatever happens to its
connection. When the connection dies (Redis stopped, restarted, unreachable, or silent
past a PING): ``"disconnected"``; reconnection with bounded exponential backoff and
jitter (processes do not stampede a restarted Redis); SUBSCRIBE again; each topic's
stream after its last delivered id is delivered before any live message, ids already
delivered skipped; ``"reconnected"`` with ``{"downtime": seconds, "refilled": count}``.
``"gap"`` ``{"topic", "after"}`` when the stream no longer holds the last delivered id
(trimmed, or Redis restarted empty): messages may be missing.

While the feed is not connected, what this process publishes and Redis acknowledges is
delivered to its own subscribers at once (:meth:`Feed.deliver_early`), then skipped when
the refill or the live copy brings it: once, under Redis's id.

*Sharded* feeds (Redis Cluster, SSUBSCRIBE) also hand topics over: a slot that moves to
another master takes its topics with it (:meth:`Feed.take` here, :meth:`Feed.adopt` on
the new master's feed, which subscribes and refills from the last delivered id, so the
move is a pause, not a loss), and a node that says a channel is no longer its own
(``sunsubscribe`` pushed when a slot migrates away, or ``-MOVED`` to an SSUBSCRIBE) is
reported to the owner (``released``).

States of the connection (all transitions in :meth:`Feed._set_state`)::

    IDLE ──start()──▶ CONNECTING ──subscribed, gap refilled──▶ CONNECTED
                        ▲    └──fails──▶ DISCONNECTED ◀──error / no PONG──┘
                        └───backoff────────────┘
    any ──stop()──▶ CLOSED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backend import HubUnavailable, id_key
from .payload import decode as decode_payload
from .pipeline import accepts
from .resp import Reply, ReplyError, text
from .slots import key_slot
from .subscriber import PubSubConnection

__all__ = ["Entry", "Feed", "FeedOwner", "Mark", "State"]

logger = logging.getLogger("legato.hub")

Entry = list[Any]  # a stream entry as RESP carries it: [id, [b"k", keep, b"d", data]]
_REFILL_PAGE = 1000  # stream entries per XRANGE while refilling a gap
#: Seconds between probes of a Redis that refused connections: a refused connect costs
#: both sides microseconds, and 0.1 s is what a quiet process waits after Redis is back.
_PROBE_EVERY = 0.1


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


_TRANSITIONS = {
    State.IDLE: {State.CONNECTING, State.CLOSED},
    State.CONNECTING: {State.CONNECTED, State.DISCONNECTED, State.CLOSED},
    State.CONNECTED: {State.DISCONNECTED, State.CLOSED},
    State.DISCONNECTED: {State.CONNECTING, State.CLOSED},
    State.CLOSED: set(),
}


class FeedOwner(Protocol):
    """What a feed needs of its backend: names, stream reads, delivery, events."""

    def channel(self, topic: str) -> bytes: ...

    async def stream_range(self, topic: str, start: str, count: int) -> list[Entry]:
        """XRANGE of the topic's stream from ``start`` (inclusive), ``count`` entries."""

    async def newest_id(self, topic: str) -> str | None:
        """The id of the newest entry of the topic's stream (HubUnavailable: unknown)."""

    def deliver(self, topic: str, message_id: str, payload: str | bytes,
                key: str | None) -> None: ...

    def emit(self, kind: str, details: dict[str, Any]) -> None: ...

    def released(self, feed: Feed, channels: list[bytes]) -> None:
        """The node no longer serves these channels (sharded feeds only)."""


@dataclass
class Mark:
    """Where a topic stands in a feed, handed over when its slot moves: the last id
    delivered, and the ids this process delivered early (not yet seen from Redis)."""

    last: str
    early: set[str] = field(default_factory=set)


class Feed:
    """The topics of one pub/sub connection (see the module docstring).

    ``options``: the node's connection options (pipeline.py's). ``sharded``: SSUBSCRIBE
    and ``smessage`` (Redis Cluster) instead of SUBSCRIBE and ``message``. ``label``
    goes into every event's details as ``"shard"`` when given.
    """

    def __init__(self, owner: FeedOwner, options: dict[str, Any], *, client_name: str,
                 timeout: float, ping_interval: float,
                 reconnect_backoff: tuple[float, float], sharded: bool = False,
                 label: str = "") -> None:
        self.owner = owner
        self.options = options
        self.client_name = client_name
        self.timeout = timeout
        self.ping_interval = ping_interval
        self.reconnect_backoff = reconnect_backoff
        self.sharded = sharded
        self.label = label
        self._subscribe_word, self._unsubscribe_word = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE"))
        self._message_kind = b"smessage" if sharded else b"message"
        self._ack_kind = b"ssubscribe" if sharded else b"subscribe"
        self.reconnects = 0
        self.messages_refilled = 0
        self._state = State.IDLE
        self._conn: PubSubConnection | None = None  # while CONNECTED
        self._opening: PubSubConnection | None = None  # while CONNECTING
        self._holding: list[tuple[bytes, bytes]] | None = None  # live, while refilling
        self._held: dict[bytes, list[bytes]] = {}  # live, of topics being adopted
        self._channels: dict[bytes, str] = {}  # listened channel → topic
        self._last: dict[str, str] = {}  # topic → last id delivered (or seen at listen)
        self._fenced: set[str] = set()  # topics that may see ids already refilled
        self._adopted: set[str] = set()  # topics to refill on the next connection
        # topic → ids this process published and delivered itself while the
        # subscription was down: skipped when the refill or the live copy brings them.
        self._early: dict[str, set[str]] = {}
        self._acks: dict[bytes, asyncio.Future[None]] = {}  # SUBSCRIBEs awaited
        # Channel → its UNSUBSCRIBEs sent and not yet answered on this connection: their
        # answer is no news (on a sharded feed, any other sunsubscribe is the node's).
        self._unsubscribing: dict[bytes, int] = {}
        self._down_since: float | None = None
        self._wake = asyncio.Event()  # cuts a reconnection backoff short
        self._reader: asyncio.Task[None] | None = None
        self._silent = False  # the command connection found Redis hung
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def topics(self) -> list[str]:
        return list(self._channels.values())

    @property
    def down_since(self) -> float | None:
        """Loop time the connection was lost (None while it is not down)."""
        return self._down_since

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect once and start reconnecting in the background; an unreachable node
        is reported (``"disconnected"``), not raised."""
        self._set_state(State.CONNECTING)
        try:
            connected = await self._connect()
        except (OSError, asyncio.TimeoutError, HubUnavailable) as exc:
            await self._lost(exc)
        else:
            await self._connected(*connected)
        if self._state is not State.CLOSED:
            self._task = asyncio.create_task(self._run(), name="legato-hub-redis-pubsub")

    async def stop(self) -> None:
        if not self._set_state(State.CLOSED):
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self._drop()

    def _set_state(self, state: State) -> bool:
        if state not in _TRANSITIONS[self._state]:
            return False  # only CLOSED refuses (stop() raced a reconnection): stay closed
        logger.debug("hub redis feed %s: %s → %s", self.client_name, self._state.name,
                     state.name)
        self._state = state
        return True

    def wake(self) -> None:
        """Redis answers commands again: reconnect now rather than at the end of the
        backoff (issue 18 item 4)."""
        if self._state is State.DISCONNECTED:
            self._wake.set()

    def went_silent(self) -> None:
        """Redis owes the command connection replies and stays silent: hung. The
        subscription is as dead: drop it now, and report the outage."""
        if self._state is State.CONNECTED and self._reader is not None:
            self._silent = True
            self._reader.cancel()

    # ------------------------------------------------------------------ topics

    async def listen(self, topic: str) -> None:
        """Subscribe to ``topic``: once it returns, what is published is delivered
        (Redis acknowledged the SUBSCRIBE). Never raises: while the connection is down it
        returns at once and the reconnection subscribes."""
        channel = self.owner.channel(topic)
        if channel in self._channels or self._state is State.CLOSED:
            return
        self._channels[channel] = topic
        if self._state is State.CONNECTED:
            await self._acknowledged(channel)
        if topic not in self._last:  # where a later gap refill starts
            with suppress(HubUnavailable):
                newest = await self.owner.newest_id(topic)
                if channel in self._channels:  # not unlistened meanwhile
                    self._last.setdefault(topic, newest or "0-0")

    async def _acknowledged(self, channel: bytes) -> None:
        ack = self._acks[channel] = asyncio.get_running_loop().create_future()
        self._send(self._subscribe_word, channel)
        with suppress(asyncio.TimeoutError):  # _lost() resolves it at once
            await asyncio.wait_for(ack, self.timeout)
        self._acks.pop(channel, None)

    def unlisten(self, topic: str) -> None:
        self.take(topic)

    def take(self, topic: str) -> Mark | None:
        """Stop carrying ``topic`` and return where it stands (None: not carried)."""
        channel = self.owner.channel(topic)
        if self._channels.pop(channel, None) is None:
            return None
        last = self._last.pop(topic, "0-0")
        self._fenced.discard(topic)
        self._adopted.discard(topic)
        self._held.pop(channel, None)
        early = self._early.pop(topic, set())
        if self._state is State.CONNECTED and self._conn is not None:
            self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
        self._send(self._unsubscribe_word, channel)
        return Mark(last, early)

    async def adopt(self, topic: str, mark: Mark) -> int:
        """Carry ``topic`` from ``mark`` on: subscribe, then deliver what its stream holds
        after ``mark.last`` before any live message. Returns the number refilled (0
        while disconnected: the reconnection refills it)."""
        channel = self.owner.channel(topic)
        if channel in self._channels or self._state is State.CLOSED:
            return 0
        self._channels[channel] = topic
        self._last[topic] = mark.last
        if mark.early:
            self._early[topic] = set(mark.early)
        if self._state is not State.CONNECTED:
            self._adopted.add(topic)
            return 0
        self._held[channel] = []
        try:
            await self._acknowledged(channel)
            count = await self._refill_topic(topic, mark.last)
        except HubUnavailable:
            count = 0
            self._adopted.add(topic)  # refilled by the next reconnection
        finally:
            held = self._held.pop(channel, [])
        self._fenced.add(topic)
        for frame in held:
            self._deliver(channel, frame)
        return count

    def deliver_early(self, topic: str, message_id: str, payload: str | bytes,
                      key: str | None) -> None:
        """Redis has it and the subscription is down: this process's subscribers need
        not wait for the reconnection; the copy Redis brings later is skipped."""
        if self._state is not State.CONNECTED and self.owner.channel(topic) in self._channels:
            self._early.setdefault(topic, set()).add(message_id)
            self.owner.deliver(topic, message_id, payload, key)

    def _send(self, *command: str | bytes) -> None:
        """To the connection while connected (a broken one: the watch sees it; while
        connecting, ``_connected`` sends what changed)."""
        conn = self._conn
        if self._state is State.CONNECTED and conn is not None:
            conn.send(*command)

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        """Read while connected; otherwise wait (backoff) and reconnect, forever."""
        attempt, refused = 0, False
        while self._state is not State.CLOSED:
            if self._state is State.CONNECTED and self._conn is not None:
                attempt, refused = 0, False
                await self._read_until_lost(self._conn)
                continue
            await self._pause(self._backoff(attempt), refused)
            attempt += 1
            if not self._set_state(State.CONNECTING):
                return
            try:
                connected = await self._connect()
            except Exception as exc:
                logger.debug("hub redis: reconnection attempt %d failed: %s", attempt, exc)
                # Nothing listens (Redis down): its port is probed until it does.
                refused = isinstance(exc, (ConnectionRefusedError, FileNotFoundError)) \
                    or type(exc) is OSError  # "Multiple exceptions": every address refused
                self._set_state(State.DISCONNECTED)
                continue
            await self._connected(*connected)

    async def _pause(self, delay: float, refused: bool) -> None:
        """Wait up to ``delay`` before the next attempt: less when a command is
        answered again (``_wake``) or, while Redis refused connections (it is down), as
        soon as its port accepts one: probed every ~0.1 s with a bare connect (nothing
        for Redis to do), so even a process that publishes nothing is back at once."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        self._wake.clear()
        while True:
            step = end - loop.time()
            if refused:
                step = min(step, _PROBE_EVERY * (0.5 + random.random() / 2))
            if step > 0:
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), step)
            if self._wake.is_set() or loop.time() >= end:
                return
            if refused and await accepts(self.options, self.timeout):
                return

    async def _read_until_lost(self, conn: PubSubConnection) -> None:
        """Watch in a task of its own, which the command connection cancels when it
        finds Redis hung (``went_silent``): no need to wait for the PING."""
        self._reader = reader = asyncio.create_task(self._watch(conn),
                                                    name="legato-hub-redis-watch")
        try:
            await reader
        except asyncio.CancelledError:
            if not self._silent or not reader.cancelled():
                reader.cancel()
                raise  # stop(): not ours
            self._silent = False
            await self._lost(TimeoutError("Redis stopped answering commands"))
        except Exception as exc:  # the connection ended, or a PING went unanswered
            await self._lost(exc)
        finally:
            self._reader = None

    def _backoff(self, attempt: int) -> float:
        first, longest = self.reconnect_backoff
        delay = min(longest, first * 2.0 ** min(attempt, 32))
        return delay * (0.5 + random.random() / 2)  # jitter: spread a herd of processes

    async def _connect(self) -> tuple[PubSubConnection, set[bytes], int]:
        """Connect, SUBSCRIBE every listened topic, refill the gaps. Returns the
        connection, the channels subscribed and the number of messages refilled.
        Live messages that come meanwhile wait (``_holding``) until the refill is done."""
        conn = await PubSubConnection.open(self.options, self.client_name, self.timeout,
                                           self._on_replies)
        self._opening, self._holding = conn, []
        try:
            channels = set(self._channels)
            if channels:
                await self._subscribe(conn, list(channels))
            refilled = await self._refill()
            held, self._holding = self._holding, None
            for channel, frame in held:  # live messages that came with the acks
                self._deliver(channel, frame)
        except BaseException:
            conn.abort()
            raise
        finally:
            self._opening, self._holding = None, None
        return conn, channels, refilled

    async def _connected(self, conn: PubSubConnection, channels: set[bytes],
                         refilled: int) -> None:
        self._conn = conn
        if not self._set_state(State.CONNECTED):
            await self._drop()  # stop() came first
            return
        # Topics (un)listened while connecting; from now on listen() sends by itself.
        for channel in channels.symmetric_difference(self._channels):
            self._send(self._subscribe_word if channel in self._channels
                       else self._unsubscribe_word, channel)
        self._recovered(refilled)

    async def _subscribe(self, conn: PubSubConnection, channels: list[bytes]) -> None:
        """SUBSCRIBE and wait for every ack (``timeout``), so a refill cannot miss a
        message published between the two. A sharded subscription names one channel
        per command: the channels of one SSUBSCRIBE must share a slot."""
        loop = asyncio.get_running_loop()
        acks = []
        for channel in channels:
            acks.append(self._acks.setdefault(channel, loop.create_future()))
        if self.sharded:
            conn.send_many([(self._subscribe_word, channel) for channel in channels])
        else:
            conn.send(self._subscribe_word, *channels)
        try:
            await asyncio.wait_for(asyncio.gather(*acks), self.timeout)
        finally:
            for channel in channels:
                self._acks.pop(channel, None)

    async def _refill(self) -> int:
        """Deliver, per topic, what the stream holds after the last delivered id: every
        topic after an outage, the adopted ones on a first connection."""
        if self._down_since is None:
            topics = [t for t in self._adopted if t in self._last]
        else:
            topics = list(self._last)
        self._adopted.clear()
        count = 0
        for topic in topics:
            count += await self._refill_topic(topic, self._last[topic])
            self._fenced.add(topic)  # live messages up to here may come again
        return count

    async def _refill_topic(self, topic: str, last: str) -> int:
        count, start, first = 0, last, True
        channel = self.owner.channel(topic)
        while True:
            entries = await self.owner.stream_range(topic, start, _REFILL_PAGE + 1)
            if first and last != "0-0" and (not entries or text(entries[0][0]) != last):
                # The stream no longer holds the last id delivered: trimmed, or Redis
                # came back empty (or, harmlessly, a quiet topic's stream expired).
                self._emit("gap", {"topic": topic, "after": last,
                                   "reason": "stream empty" if not entries else "trimmed"})
            first = False
            early = self._early.get(topic)
            for raw_id, fields in entries:
                message_id = text(raw_id)
                if message_id != last and channel in self._channels:
                    self._last[topic] = message_id
                    if early and message_id in early:
                        early.discard(message_id)  # delivered when it was published
                        continue
                    self.owner.deliver(topic, message_id, *decode_payload(fields[3]))
                    count += 1
            if len(entries) <= _REFILL_PAGE:
                return count
            start = last = text(entries[-1][0])

    async def _watch(self, conn: PubSubConnection) -> None:
        """Until the connection ends: after ``ping_interval`` of silence a PING, and
        no answer within ``timeout`` is a dead connection (a hung Redis, a host gone
        without a RST). Messages do not pass here: ``_on_replies`` gets them."""
        loop = asyncio.get_running_loop()
        closed = conn.closed
        while True:
            silent = loop.time() - conn.heard
            if silent < self.ping_interval:
                await asyncio.wait((closed,), timeout=self.ping_interval - silent)
            else:
                sent = loop.time()
                conn.send("PING")
                await asyncio.wait((closed,), timeout=self.timeout)
                if not closed.done() and conn.heard < sent:
                    raise TimeoutError("no answer to PING on the pub/sub connection")
            if closed.done():
                raise closed.result()

    def _on_replies(self, conn: PubSubConnection, replies: list[Reply]) -> None:
        """What one read brought, in order: messages (held while refilling), the
        SUBSCRIBE acks that listen() and _subscribe wait for, and on a sharded feed
        the node's word that a channel is no longer its own; PONGs only count as
        heard."""
        if conn is not self._conn and conn is not self._opening:
            return  # a connection being dropped
        holding, held, kind_message = self._holding, self._held, self._message_kind
        for reply in replies:
            if type(reply) is not list or len(reply) < 2:
                if isinstance(reply, ReplyError) and self.sharded:
                    self._refused(reply)
                continue
            kind = reply[0]
            if kind == kind_message:
                channel: bytes = reply[1]  # type: ignore[assignment]
                if holding is not None:
                    holding.append((channel, reply[2]))  # type: ignore[arg-type]
                elif held and channel in held:
                    held[channel].append(reply[2])  # type: ignore[arg-type]
                else:
                    self._deliver(channel, reply[2])  # type: ignore[arg-type]
            elif kind == self._ack_kind and self._acks:
                ack = self._acks.pop(reply[1], None)  # type: ignore[arg-type]
                if ack is not None and not ack.done():
                    ack.set_result(None)
            elif kind == b"sunsubscribe":
                channel = reply[1]  # type: ignore[assignment]
                asked = self._unsubscribing.get(channel, 0)
                if asked:  # the answer to take()'s SUNSUBSCRIBE
                    if asked > 1:
                        self._unsubscribing[channel] = asked - 1
                    else:
                        del self._unsubscribing[channel]
                elif channel in self._channels:  # not asked for: the slot moved away
                    self.owner.released(self, [channel])

    def _refused(self, error: ReplyError) -> None:
        """``-MOVED <slot> <address>`` (or ASK, CLUSTERDOWN) to an SSUBSCRIBE: the
        channels of that slot are not served here. Their acks are released (nobody
        waits out the timeout) and the owner re-homes them."""
        words = str(error).split()
        slot = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        channels = [c for c in self._channels if slot is None or key_slot(c) == slot]
        for channel in channels:
            ack = self._acks.pop(channel, None)
            if ack is not None and not ack.done():
                ack.set_result(None)
        logger.debug("hub redis feed %s: %s", self.label, error)
        if channels:
            self.owner.released(self, channels)

    def _deliver(self, channel: bytes, frame: bytes) -> None:
        topic = self._channels.get(channel)
        if topic is None:
            return  # unlistened while the message was on its way
        try:
            space = frame.index(b" ")
            message_id = frame[:space].decode()
            payload, key = decode_payload(frame, space + 1)
            if self._fenced and topic in self._fenced:
                if id_key(message_id) <= id_key(self._last[topic]):
                    return  # already delivered by the refill
                self._fenced.discard(topic)
            if self._early:
                early = self._early.get(topic)
                if early is not None and self._skip_early(topic, early, message_id):
                    self._last[topic] = message_id
                    return
        except (ValueError, KeyError, IndexError):
            logger.warning("hub redis: ignored a malformed message on %r", channel)
            return
        self._last[topic] = message_id
        self.owner.deliver(topic, message_id, payload, key)

    def _skip_early(self, topic: str, early: set[str], message_id: str) -> bool:
        """Was this live message delivered when it was published (``_early``)? Once
        the subscription is back and a newer id arrives, the older ones never will."""
        if message_id in early:
            early.discard(message_id)
            found = True
        else:
            found = False
            if self._state is State.CONNECTED:
                newer = id_key(message_id)
                early.difference_update([i for i in early if id_key(i) < newer])
        if not early:
            del self._early[topic]
        return found

    # ------------------------------------------------------------------ faults

    async def _lost(self, exc: BaseException) -> None:
        if not self._set_state(State.DISCONNECTED):
            return
        for ack in self._acks.values():
            if not ack.done():
                ack.set_result(None)  # the reconnection will subscribe
        self._acks.clear()
        await self._drop()
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            where = f" to {self.label}" if self.label else ""
            logger.warning("hub: lost the Redis pub/sub connection%s (%s); reconnecting",
                           where, exc)
            self._emit("disconnected", {"error": str(exc)})

    def _recovered(self, refilled: int) -> None:
        if self._down_since is None:
            return
        downtime = asyncio.get_running_loop().time() - self._down_since
        self._down_since = None
        self.reconnects += 1
        self.messages_refilled += refilled
        logger.warning("hub: Redis pub/sub reconnected after %.1f s; %d missed messages "
                       "delivered from the streams", downtime, refilled)
        self._emit("reconnected", {"downtime": downtime, "refilled": refilled})

    def _emit(self, kind: str, details: dict[str, Any]) -> None:
        if self.label:
            details["shard"] = self.label
        self.owner.emit(kind, details)

    async def _drop(self) -> None:
        self._unsubscribing.clear()  # their answers die with the connection
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()
