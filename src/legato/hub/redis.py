"""The Redis backend of the hub: several processes, several hosts (SPEC §6 P4-P6).

Keys and channels (``prefix`` defaults to ``legato``)::

    {prefix}:stream:{topic}     Stream, an entry per message: k = history kept, d = data
    {prefix}:epoch:{topic}      String: the topic's epoch (expires with its history)
    {prefix}:topic:{topic}      pub/sub channel; each message is b"<id> <data>"
    {prefix}:presence:{topic}   Hash "{process_id}:{member}" → JSON info
    {prefix}:pcount:{topic}     Hash process_id → how many members it has there
    {prefix}:proc:{process_id}  String with a TTL: this process is alive
    {prefix}:once:{key}         String with a TTL: an idempotency key (claim/settle)

*Commands.* Every command (publish, history, presence, epochs) goes through one
pipelined connection (pipeline.py): what a loop iteration asks is written at once and
the replies come back in order, so 20,000 concurrent publishes are one queue, not 20,000
waits for a pooled connection, and a publisher's messages keep their order. The queue
is bounded (``max_pending``); past it a caller waits for room (backpressure).

*Data* is a type byte and the payload (``t`` + UTF-8 text, ``b`` + bytes): encoded once
for every process, and text stays text. A message published with a ``key`` has ``T`` /
``B`` instead, then ``<length of the UTF-8 key>:<key>`` before the payload.

*Ids.* ``publish`` is one Lua script, so atomic: XADD to the topic's stream and PUBLISH
of the new id with the data. Every message goes to the stream, also on topics without
history, so ids are Redis Stream ids ``"<ms>-<seq>"`` (growing within a topic) and the
last ``gap_window`` messages can refill the gap of a process that lost pub/sub; such
streams expire ``gap_ttl`` after their last message (topics used once do not pile up).
Streams of topics with history, and epochs, expire ``history_ttl`` after their last
message (a day by default; 0: never): an idle topic's history does not stay in Redis
for ever, and a client resuming after that gets a ``"lost"`` gap. ``history()`` cuts
the stream to the ``k`` of its newest entry: a topic that keeps 3 messages answers with
at most 3.

*Gaps.* One pub/sub connection, read by one task that calls ``sink`` in order and
remembers the last id delivered per topic. When it dies (Redis stopped, restarted,
unreachable, or silent past a PING): ``"disconnected"``; reconnection with bounded
exponential backoff and jitter (processes do not stampede a restarted Redis); SUBSCRIBE
again; each topic's stream after its last delivered id is delivered before any live
message, ids already delivered skipped; ``"reconnected"`` with ``{"downtime": seconds,
"refilled": count}``. ``"gap"`` ``{"topic", "after"}`` when the stream no longer holds
the last delivered id (trimmed, or Redis restarted empty): messages may be missing.
While Redis is down ``publish`` raises :class:`HubUnavailable` within ``timeout``:
nothing is dropped silently, nothing is delivered that Redis did not carry. A publish
that reached a Redis that then went silent (hung) raises :class:`PublishOutcomeUnknown`:
it may still be delivered, once, when Redis resumes. *Hung Redis*: ``timeout`` seconds
of silence with commands outstanding, or an unanswered PING on the pub/sub connection
(``ping_interval`` of silence, then ``timeout``), is an outage: ``"disconnected"``.
*Recovery*: the subscription reconnects as soon as a command connection is answered
again or Redis's port accepts a connection again (no waiting for the backoff), and
while it is not connected, what this process
publishes and Redis acknowledges is delivered to its own subscribers at once (then
skipped when the refill or the live copy brings it: once, under Redis's id).

*Presence* (redis_presence.py). ``join`` writes a hash field and keeps this process's
heartbeat key alive (TTL ``presence_ttl``, refreshed every third of it, with the TTL of
the hashes it is in: a room whose processes all died vanishes). The joins and leaves of
one loop iteration are written together (10,000 leaving at once is one write).
``members()`` keeps the fields of live processes and deletes the others (one Lua
script); ``count()`` adds up the per-process counts of live processes (O(processes),
not O(members)). ``join``/``leave`` never raise: while Redis is unreachable the
heartbeat applies them later, and rewrites this process's entries after a Redis restart.

*Start.* ``start()`` tries once and does not raise when Redis is unreachable: it
reports ``"disconnected"`` and keeps reconnecting, so an app boots while Redis restarts.

States of the pub/sub connection (all transitions in :meth:`RedisBackend._set_state`)::

    IDLE ──start()──▶ CONNECTING ──subscribed, gap refilled──▶ CONNECTED
                        ▲    └──fails──▶ DISCONNECTED ◀──error / no PONG──┘
                        └───backoff────────────┘
    any ──stop()──▶ CLOSED

Not for Redis Cluster: the scripts touch keys of several slots.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import re
import uuid
from contextlib import suppress
from typing import Any

try:  # its URL parsing only: both connections are ours (pipeline.py, subscriber.py)
    from redis.asyncio.connection import parse_url
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the Redis hub needs redis-py: pip install 'legato[redis]'") from exc

from .. import jsoncodec
from .backend import (MAX_ID_PART, EventSink, Gap, HubUnavailable, PublishOutcomeUnknown,
                      Sink, Stored, id_key, replay_gap)
from .payload import decode as decode_payload
from .payload import encode as encode_payload
from .pipeline import Pipeline, accepts
from .redis_presence import RedisPresence, text as _text
from .resp import Reply, ReplyError
from .subscriber import PubSubConnection

__all__ = ["RedisBackend", "State"]

logger = logging.getLogger("legato.hub")

# KEYS[1] stream, KEYS[2] epoch; ARGV: channel, maxlen, keep, stream ttl in ms (0:
# persist), data, epoch ttl in ms (0: persist).
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'k', ARGV[3], 'd', ARGV[5])
if ARGV[4] == '0' then redis.call('PERSIST', KEYS[1])
else redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if ARGV[6] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
redis.call('PUBLISH', ARGV[1], id .. ' ' .. ARGV[5])
return id
"""

# KEYS[1] stream; ARGV: first id, limit (0: none). The newest entry's k says how many
# messages the topic keeps, so a topic without history transfers nothing.
_HISTORY = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest == 0 then return {} end
local count = tonumber(newest[1][2][2])
local limit = tonumber(ARGV[2])
if limit > 0 and limit < count then count = limit end
if count == 0 then return {} end
return redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', count)
"""

# KEYS[1] stream; ARGV: first id after since. Returns the newest id (false: no stream),
# the oldest id the stream holds, and the entries after since, newest first: at most the
# k the topic keeps plus one, so that one more than k means a kept-no-longer message came
# after since (publish trims to at least k + 1: the extra one is there when it existed).
_REPLAY = """
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #newest == 0 then return {false, false, {}} end
local count = tonumber(newest[1][2][2])
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
return {newest[1][1], oldest[1][1],
        redis.call('XREVRANGE', KEYS[1], '+', ARGV[1], 'COUNT', count + 1)}
"""

_Entry = list[Any]  # a stream entry as RESP carries it: [id, [b"k", keep, b"d", data]]
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


class RedisBackend:
    """Carries hub messages between processes through Redis (pub/sub + Streams).

    * ``url``: ``redis://``, ``rediss://`` or ``unix://`` as redis-py reads it.
    * ``prefix``: of every key and channel, so apps can share a Redis.
    * ``presence_ttl`` (s, 15): a dead process's members vanish at most this long after
      it died; its heartbeat costs one round trip per third of it.
    * ``reconnect_backoff`` (s, (0.05, 1.0)): first and longest wait between attempts
      to reconnect the subscription. A command answered again cuts the wait short, and
      while Redis refuses connections (down) its port is probed every ~0.1 s, so a
      process is back within about 0.1 s of Redis listening again. The backoff spaces
      attempts that reach a Redis that cannot serve yet (hung, loading, refusing us).
    * ``history_default`` (messages, 0): kept per topic when ``publish`` does not say.
    * ``history_ttl`` (s, 86,400): a topic's history (and epoch) expires this long after
      its last message; 0 keeps it for ever. A day covers a client away overnight.
    * ``gap_window`` (messages, 100) and ``gap_ttl`` (s, 60): what a topic without
      history still keeps for refilling the gap of a process that lost pub/sub.
    * ``timeout`` (s, 1.0): to connect, and the longest silence of Redis while it owes
      replies, so ``publish`` fails fast and a hung Redis is an outage within it.
    * ``ping_interval`` (s, 1.0): silence on the pub/sub connection before a PING; no
      answer within ``timeout`` means a dead connection (a hung Redis, a host gone
      without a RST): a hung Redis is reported within ``ping_interval + timeout``.
    * ``max_pending`` (commands, 10,000): queued or awaiting a reply on the command
      connection; a caller beyond it waits for room (see pipeline.py). 10,000 is
      about 2 MB of small publishes and a fraction of a second of Redis's work.

    Counters: ``reconnects``, ``messages_refilled``. One ``start()``/``stop()`` cycle.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "legato",
        presence_ttl: float = 15.0,
        reconnect_backoff: tuple[float, float] = (0.05, 1.0),
        history_default: int = 0,
        history_ttl: float = 86_400.0,
        gap_window: int = 100,
        gap_ttl: float = 60.0,
        timeout: float = 1.0,
        ping_interval: float = 1.0,
        max_pending: int = 10_000,
    ) -> None:
        first, longest = reconnect_backoff
        if not 0 < first <= longest:
            raise ValueError("reconnect_backoff must be (first, longest) with 0 < first <= longest")
        if presence_ttl <= 0 or timeout <= 0 or ping_interval <= 0 or gap_ttl <= 0:
            raise ValueError("presence_ttl, timeout, ping_interval and gap_ttl must be > 0")
        if history_default < 0 or gap_window < 0 or max_pending < 1 or history_ttl < 0:
            raise ValueError("history_default, gap_window, history_ttl must be >= 0, "
                             "max_pending >= 1")
        self.prefix = prefix
        self.process_id = uuid.uuid4().hex
        self.presence_ttl = presence_ttl
        self.reconnect_backoff = (first, longest)
        self.history_default = history_default
        self.history_ttl = history_ttl
        self.gap_window = gap_window
        self.gap_ttl = gap_ttl
        self.ping_interval = ping_interval
        self.timeout = timeout
        self.reconnects = 0
        self.messages_refilled = 0
        name = re.sub(r"[^\w.:-]", "_", f"{prefix}:{self.process_id[:12]}")
        options = {k: v for k, v in parse_url(url).items() if k != "prefix"}
        self._pipe = Pipeline(options, client_name=name + ":cmd", timeout=timeout,
                              max_pending=max_pending, on_ready=self._answered_again,
                              on_stall=self._went_silent)
        self._options, self._sub_name = options, name + ":sub"
        self._presence = RedisPresence(self._pipe, prefix, self.process_id, presence_ttl)
        self._state = State.IDLE
        self._sink: Sink | None = None
        self._on_event: EventSink | None = None
        self._conn: PubSubConnection | None = None  # while CONNECTED
        self._opening: PubSubConnection | None = None  # while CONNECTING
        self._holding: list[tuple[bytes, bytes]] | None = None  # live, while refilling
        self._channels: dict[bytes, str] = {}  # listened channel → topic
        self._last: dict[str, str] = {}  # topic → last id delivered (or seen at listen)
        self._fenced: set[str] = set()  # topics that may see ids already refilled
        # topic → ids this process published and delivered itself while its
        # subscription was down: skipped when the refill or the live copy brings them.
        self._early: dict[str, set[str]] = {}
        self._acks: dict[bytes, asyncio.Future[None]] = {}  # SUBSCRIBEs listen() awaits
        self._down_since: float | None = None
        self._wake = asyncio.Event()  # cuts a reconnection backoff short
        self._reader: asyncio.Task[None] | None = None
        self._silent = False  # the command connection found Redis hung
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def state(self) -> State:
        return self._state

    @property
    def pipeline(self) -> Pipeline:
        """The command connection (its counters: ``written``, ``connections``, ``stalls``)."""
        return self._pipe

    def _stream(self, topic: str) -> str:
        return f"{self.prefix}:stream:{topic}"

    def _channel(self, topic: str) -> bytes:
        return f"{self.prefix}:topic:{topic}".encode()

    def _epoch_key(self, topic: str) -> str:
        return f"{self.prefix}:epoch:{topic}"

    async def _command(self, what: str, *args: bytes | str | int) -> Any:
        """A read or a write whose outcome matters less than a publish's: any failure
        is ``HubUnavailable`` ("cannot <what>"), a refusal too. The reply is Any: its
        shape is the command's (bulk strings as bytes, arrays as lists)."""
        try:
            reply = await self._pipe.call(*args)
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot {what}: {exc}") from None
        if isinstance(reply, ReplyError):
            raise HubUnavailable(f"cannot {what}: Redis said {reply}")
        return reply

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: Sink, on_event: EventSink) -> None:
        """Connect once and start the tasks; an unreachable Redis is reported, not raised."""
        self._sink, self._on_event = sink, on_event
        self._set_state(State.CONNECTING)
        try:
            connected = await self._connect()
        except (OSError, asyncio.TimeoutError, HubUnavailable) as exc:
            await self._lost(exc)
        else:
            await self._connected(*connected)
        self._tasks = [asyncio.create_task(self._run(), name="legato-hub-redis-pubsub"),
                       asyncio.create_task(self._presence.run(), name="legato-hub-presence")]

    async def stop(self) -> None:
        """Stop the tasks, remove this process's presence, close both connections."""
        if self._state is State.CLOSED:
            return
        self._set_state(State.CLOSED)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self._presence.clear()
        await self._drop()
        await self._pipe.close()

    def _set_state(self, state: State) -> bool:
        if state not in _TRANSITIONS[self._state]:
            return False  # only CLOSED refuses (stop() raced a reconnection): stay closed
        logger.debug("hub redis %s: %s → %s", self.process_id[:8], self._state.name, state.name)
        self._state = state
        return True

    def _answered_again(self) -> None:
        """The command connection reconnected: Redis answers, so reconnect the
        subscription now rather than at the end of its backoff (issue 18 item 4)."""
        if self._state is State.DISCONNECTED:
            self._wake.set()

    def _went_silent(self) -> None:
        """Redis owes the command connection replies and stays silent: hung. The
        subscription is as dead: drop it now, and report the outage."""
        if self._state is State.CONNECTED and self._reader is not None:
            self._silent = True
            self._reader.cancel()

    # ------------------------------------------------------------------ publishing

    async def publish(self, topic: str, payload: str | bytes, *,
                      history: int | None = None, key: str | None = None) -> str:
        """Store and broadcast; returns the stream id. ``HubUnavailable``: not published;
        ``PublishOutcomeUnknown``: Redis went silent after it got the command."""
        keep = self.history_default if history is None else history
        if keep < 0:
            raise ValueError("history must be >= 0")
        if self._state is State.CLOSED:
            raise HubUnavailable("the hub's Redis backend is stopped")
        data = encode_payload(payload, key)
        history_ms = int(self.history_ttl * 1000)
        ttl = history_ms if keep else int(self.gap_ttl * 1000)
        try:
            raw = await self._pipe.call(
                "EVAL", _PUBLISH, 2, self._stream(topic), self._epoch_key(topic),
                # k + 1: the newest message a topic no longer keeps stays in the stream,
                # so replay() can tell a resume from just before the kept ones (no gap).
                self._channel(topic), max(keep + 1, self.gap_window), keep, ttl, data,
                history_ms)
        except PublishOutcomeUnknown as exc:
            raise PublishOutcomeUnknown(f"publish to {topic!r}: {exc}") from None
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot publish to {topic!r}: {exc}") from None
        if isinstance(raw, ReplyError):
            raise HubUnavailable(f"cannot publish to {topic!r}: Redis said {raw}")
        message_id = _text(raw)  # type: ignore[arg-type]
        if self._state is not State.CONNECTED:
            self._deliver_early(topic, message_id, payload, key)
        return message_id

    def _deliver_early(self, topic: str, message_id: str, payload: str | bytes,
                       key: str | None) -> None:
        """Redis has it, the subscription is down: this process's subscribers need not
        wait for the reconnection (issue 18 item 4); the copy Redis brings later is
        skipped, so it is delivered once, under Redis's id."""
        if self._channel(topic) in self._channels:
            self._early.setdefault(topic, set()).add(message_id)
            self._call_sink(topic, message_id, payload, key)

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]:
        """Messages after ``since`` (exclusive), oldest first, at most the last ``limit``
        and never more than the topic keeps. ``ValueError`` for a malformed ``since``."""
        if limit is not None and limit <= 0:
            return []
        start = "-" if since is None else _after(since)
        entries = await self._command(f"read the history of {topic!r}", "EVAL", _HISTORY, 1,
                                      self._stream(topic), start, limit or 0)
        assert isinstance(entries, list)
        # Raw entries: [id, [b"k", keep, b"d", data]], newest first.
        return [(_text(i), *decode_payload(fields[3])) for i, fields in reversed(entries)]

    async def replay(self, topic: str, since: str) -> tuple[list[Stored], Gap | None]:
        """History after ``since`` for a client that resumes, with a :class:`Gap` when
        the stream no longer reaches back to it: trimmed, or gone (Redis restarted
        empty, the key deleted or expired), or ``since`` is newer than its newest."""
        reply = await self._command(f"read the history of {topic!r}", "EVAL", _REPLAY, 1,
                                    self._stream(topic), _after(since))
        assert isinstance(reply, list)
        newest, oldest, entries = reply
        keep = int(entries[0][1][1]) if entries else 0
        trimmed = len(entries) > keep
        if trimmed:
            entries = entries[:keep]
        missed: list[Stored] = [(_text(i), *decode_payload(f[3])) for i, f in reversed(entries)]
        gap = replay_gap(topic, since, missed, newest=None if newest is None else _text(newest),
                         trimmed=trimmed,
                         # since is older than anything the stream holds, and it was
                         # never trimmed (it would hold k + 1): a stream since restarted.
                         predates=bool(missed) and missed[0][0] == _text(oldest))
        return missed, gap

    # ------------------------------------------------------------------ subscriptions

    async def listen(self, topic: str) -> None:
        """Subscribe this process to ``topic``: once it returns, what is published is
        delivered (Redis acknowledged the SUBSCRIBE). Never raises: while the pub/sub
        connection is down it returns at once and the reconnection subscribes."""
        channel = self._channel(topic)
        if channel in self._channels or self._state is State.CLOSED:
            return
        self._channels[channel] = topic
        if self._state is State.CONNECTED:
            ack = self._acks[channel] = asyncio.get_running_loop().create_future()
            self._send("SUBSCRIBE", channel)
            with suppress(asyncio.TimeoutError):  # _lost() resolves it at once
                await asyncio.wait_for(ack, self.timeout)
            self._acks.pop(channel, None)
        if topic not in self._last:  # where a later gap refill starts
            with suppress(HubUnavailable):
                newest = await self._command("read a stream", "XREVRANGE",
                                             self._stream(topic), "+", "-", "COUNT", 1)
                if channel in self._channels:  # not unlistened meanwhile
                    self._last.setdefault(topic, _text(newest[0][0]) if newest else "0-0")

    async def unlisten(self, topic: str) -> None:
        channel = self._channel(topic)
        if self._channels.pop(channel, None) is None:
            return
        self._last.pop(topic, None)
        self._fenced.discard(topic)
        self._early.pop(topic, None)
        self._send("UNSUBSCRIBE", channel)

    def _send(self, *command: str | bytes) -> None:
        """To the pub/sub connection while connected (a broken one: the watch sees it;
        while connecting, ``_connected`` sends what changed)."""
        conn = self._conn
        if self._state is State.CONNECTED and conn is not None:
            conn.send(*command)

    # ------------------------------------------------------------------ presence

    async def join(self, topic: str, member: str, info: Any) -> None:
        """``info`` must be JSON-serializable (``TypeError`` otherwise)."""
        await self._presence.join(topic, member, jsoncodec.dumps(info))

    async def leave(self, topic: str, member: str) -> None:
        await self._presence.leave(topic, member)

    async def members(self, topic: str) -> dict[str, Any]:
        return await self._presence.members(topic)

    async def count(self, topic: str) -> int:
        """How many members ``topic`` has in live processes, without listing them."""
        return await self._presence.count(topic)

    # ------------------------------------------------------------------ epochs, claims

    async def epoch(self, topic: str) -> str:
        """The topic's epoch, kept in Redis beside its stream: when Redis loses its data
        (restarted without persistence, flushed, or the topic idle past ``history_ttl``)
        the epoch goes with the history, and a new one tells resuming clients that
        their ids belong to a history that is gone."""
        fresh = uuid.uuid4().hex[:16]
        # SET NX GET (Redis 7): the epoch there, or ours once we set it.
        ttl = ("PX", int(self.history_ttl * 1000)) if self.history_ttl else ()
        old = await self._command(f"read the epoch of {topic!r}", "SET",
                                  self._epoch_key(topic), fresh, "NX", "GET", *ttl)
        return fresh if old is None else _text(old)

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take ``key`` in Redis for every process: None when it was free, else the
        value it was settled with ("" while its first claimer is still at work)."""
        old = await self._command("check a publish's once key", "SET",
                                  f"{self.prefix}:once:{key}", "", "NX", "PX",
                                  int(ttl * 1000), "GET")
        return None if old is None else _text(old)

    async def settle(self, key: str, value: str, ttl: float) -> None:
        await self._command("record a publish's once key", "SET", f"{self.prefix}:once:{key}",
                            value, "PX", int(ttl * 1000))

    # ------------------------------------------------------------------ pub/sub connection

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
            if refused and await accepts(self._options, self.timeout):
                return

    async def _read_until_lost(self, conn: PubSubConnection) -> None:
        """Watch in a task of its own, which the command connection cancels when it
        finds Redis hung (``_went_silent``): no need to wait for the PING."""
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
        conn = await PubSubConnection.open(self._options, self._sub_name, self.timeout,
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
            self._send("SUBSCRIBE" if channel in self._channels else "UNSUBSCRIBE", channel)
        self._recovered(refilled)

    async def _subscribe(self, conn: PubSubConnection, channels: list[bytes]) -> None:
        """SUBSCRIBE and wait for every ack (``timeout``), so a refill cannot miss a
        message published between the two."""
        loop = asyncio.get_running_loop()
        acks = []
        for channel in channels:
            acks.append(self._acks.setdefault(channel, loop.create_future()))
        conn.send("SUBSCRIBE", *channels)
        try:
            await asyncio.wait_for(asyncio.gather(*acks), self.timeout)
        finally:
            for channel in channels:
                self._acks.pop(channel, None)

    async def _refill(self) -> int:
        """Deliver, per topic, what the stream holds after the last delivered id."""
        if self._down_since is None:
            return 0  # first connection: nothing was missed
        count = 0
        for topic, last in list(self._last.items()):
            count += await self._refill_topic(topic, last)
            self._fenced.add(topic)  # live messages up to here may come again
        return count

    async def _refill_topic(self, topic: str, last: str) -> int:
        count, start, first = 0, last, True
        while True:
            entries: list[_Entry] = await self._command(
                "refill a gap", "XRANGE", self._stream(topic), start, "+", "COUNT",
                _REFILL_PAGE + 1)
            if first and last != "0-0" and (not entries or _text(entries[0][0]) != last):
                # The stream no longer holds the last id delivered: trimmed, or Redis
                # came back empty (or, harmlessly, a quiet topic's stream expired).
                self._emit("gap", {"topic": topic, "after": last,
                                   "reason": "stream empty" if not entries else "trimmed"})
            first = False
            early = self._early.get(topic)
            for raw_id, fields in entries:
                message_id = _text(raw_id)
                if message_id != last and self._channel(topic) in self._channels:
                    self._last[topic] = message_id
                    if early and message_id in early:
                        early.discard(message_id)  # delivered when it was published
                        continue
                    self._call_sink(topic, message_id, *decode_payload(fields[3]))
                    count += 1
            if len(entries) <= _REFILL_PAGE:
                return count
            start = last = _text(entries[-1][0])

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
        SUBSCRIBE acks that listen() and _subscribe wait for; PONGs only count as
        heard."""
        if conn is not self._conn and conn is not self._opening:
            return  # a connection being dropped
        holding, deliver = self._holding, self._deliver
        for reply in replies:
            if type(reply) is not list or len(reply) < 2:
                continue
            kind = reply[0]
            if kind == b"message":
                if holding is not None:
                    holding.append((reply[1], reply[2]))  # type: ignore[arg-type]
                else:
                    deliver(reply[1], reply[2])  # type: ignore[arg-type]
            elif kind == b"subscribe" and self._acks:
                ack = self._acks.pop(reply[1], None)  # type: ignore[arg-type]
                if ack is not None and not ack.done():
                    ack.set_result(None)

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
        self._call_sink(topic, message_id, payload, key)

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

    def _call_sink(self, topic: str, message_id: str, payload: str | bytes,
                   key: str | None) -> None:
        assert self._sink is not None
        try:
            self._sink(topic, message_id, payload, key)
        except Exception:
            logger.exception("hub: delivering %s on %r failed", message_id, topic)

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
            logger.warning("hub: lost the Redis pub/sub connection (%s); reconnecting", exc)
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
        if self._on_event is not None:
            try:
                self._on_event(kind, details)
            except Exception:
                logger.exception("hub: the %r event handler failed", kind)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()



def _after(message_id: str) -> str:
    """The smallest id after ``message_id`` (XRANGE's "(" needs Redis 6.2); Redis ids
    are two 64-bit parts, so the largest sequence carries into the milliseconds."""
    ms, seq = id_key(message_id)
    if seq < MAX_ID_PART:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms < MAX_ID_PART else message_id
