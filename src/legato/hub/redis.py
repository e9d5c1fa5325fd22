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

*Gaps.* One pub/sub connection (redis_feed.py), read by one task that calls ``sink`` in
order and remembers the last id delivered per topic; after an outage it refills each
topic from its stream before any live message. While Redis is down ``publish`` raises
:class:`HubUnavailable` within ``timeout``: nothing is dropped silently, nothing is
delivered that Redis did not carry. A publish that reached a Redis that then went
silent (hung) raises :class:`PublishOutcomeUnknown`: it may still be delivered, once,
when Redis resumes. *Hung Redis*: ``timeout`` seconds of silence with commands
outstanding, or an unanswered PING on the pub/sub connection (``ping_interval`` of
silence, then ``timeout``), is an outage: ``"disconnected"``. *Recovery*: the
subscription reconnects as soon as a command connection is answered again or Redis's
port accepts a connection again (no waiting for the backoff), and while it is not
connected, what this process publishes and Redis acknowledges is delivered to its own
subscribers at once (then skipped when the refill or the live copy brings it: once,
under Redis's id).

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

The states of the pub/sub connection are the feed's (redis_feed.py, ``State``).

Redis Cluster: redis_cluster.py, a subclass that names a topic's keys with one hash tag,
routes each command to its slot's master and has a feed per shard.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
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
from .pipeline import Pipeline
from .redis_feed import Entry, Feed, State
from .redis_presence import RedisPresence
from .resp import Reply, ReplyError
from .resp import text as _text

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
    Implements redis_feed's ``FeedOwner`` (``channel``, ``stream_range``, ...).
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
        name = re.sub(r"[^\w.:-]", "_", f"{prefix}:{self.process_id[:12]}")
        self._client_name = name
        self._sink: Sink | None = None
        self._on_event: EventSink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lags: dict[str, float] = {}  # feed label → seconds, publish to delivery
        self._connect_to(url, max_pending)

    def _connect_to(self, url: str, max_pending: int) -> None:
        """The command connection, the feed and presence (the cluster's: per shard)."""
        options = {k: v for k, v in parse_url(url).items() if k != "prefix"}
        self._pipe = Pipeline(options, client_name=self._client_name + ":cmd",
                              timeout=self.timeout, max_pending=max_pending,
                              on_ready=self._answered_again, on_stall=self._went_silent)
        self._feed = Feed(self, options, client_name=self._client_name + ":sub",
                          timeout=self.timeout, ping_interval=self.ping_interval,
                          reconnect_backoff=self.reconnect_backoff)
        self._presence = RedisPresence(self._pipe, self.prefix, self.process_id,
                                       self.presence_ttl)

    @property
    def state(self) -> State:
        """The pub/sub connection's state."""
        return self._feed.state

    @property
    def reconnects(self) -> int:
        return self._feed.reconnects

    @property
    def messages_refilled(self) -> int:
        return self._feed.messages_refilled

    @property
    def pipeline(self) -> Pipeline:
        """The command connection (its counters: ``written``, ``connections``, ``stalls``)."""
        return self._pipe

    def _stream(self, topic: str) -> str:
        return f"{self.prefix}:stream:{topic}"

    def channel(self, topic: str) -> bytes:
        """The topic's pub/sub channel."""
        return f"{self.prefix}:topic:{topic}".encode()

    _channel = channel

    def _epoch_key(self, topic: str) -> str:
        return f"{self.prefix}:epoch:{topic}"

    def _once_key(self, key: str) -> str:
        return f"{self.prefix}:once:{key}"

    def _feed_for(self, topic: str) -> Feed:
        """The feed that carries ``topic``."""
        return self._feed

    async def _call(self, key: str, *args: bytes | str | int) -> Reply:
        """One command about ``key`` (the cluster sends it to the key's shard)."""
        return await self._pipe.call(*args)

    async def _command(self, what: str, key: str, *args: bytes | str | int) -> Any:
        """A read or a write whose outcome matters less than a publish's: any failure
        is ``HubUnavailable`` ("cannot <what>"), a refusal too. The reply is Any: its
        shape is the command's (bulk strings as bytes, arrays as lists)."""
        try:
            reply = await self._call(key, *args)
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot {what}: {exc}") from None
        if isinstance(reply, ReplyError):
            raise HubUnavailable(f"cannot {what}: Redis said {reply}")
        return reply

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: Sink, on_event: EventSink) -> None:
        """Connect once and start the tasks; an unreachable Redis is reported, not raised."""
        self._sink, self._on_event = sink, on_event
        await self._feed.start()
        self._tasks = [asyncio.create_task(self._presence.run(), name="legato-hub-presence")]

    async def stop(self) -> None:
        """Stop the tasks, remove this process's presence, close both connections."""
        if self.state is State.CLOSED:
            return
        await self._feed.stop()
        await self._stop_tasks()
        await self._presence.clear()
        await self._pipe.close()

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task

    def _answered_again(self) -> None:
        """The command connection reconnected: Redis answers, so reconnect the
        subscription now rather than at the end of its backoff (issue 18 item 4)."""
        self._feed.wake()

    def _went_silent(self) -> None:
        """Redis owes the command connection replies and stays silent: hung."""
        self._feed.went_silent()

    # ------------------------------------------------------------------ publishing

    _publish_script = _PUBLISH

    async def publish(self, topic: str, payload: str | bytes, *,
                      history: int | None = None, key: str | None = None) -> str:
        """Store and broadcast; returns the stream id. ``HubUnavailable``: not published;
        ``PublishOutcomeUnknown``: Redis went silent after it got the command."""
        keep = self.history_default if history is None else history
        if keep < 0:
            raise ValueError("history must be >= 0")
        if self.state is State.CLOSED:
            raise HubUnavailable("the hub's Redis backend is stopped")
        data = encode_payload(payload, key)
        history_ms = int(self.history_ttl * 1000)
        ttl = history_ms if keep else int(self.gap_ttl * 1000)
        stream = self._stream(topic)
        try:
            raw = await self._publish_call(
                stream, "EVAL", self._publish_script, 2, stream, self._epoch_key(topic),
                # k + 1: the newest message a topic no longer keeps stays in the stream,
                # so replay() can tell a resume from just before the kept ones (no gap).
                self.channel(topic), max(keep + 1, self.gap_window), keep, ttl, data,
                history_ms)
        except PublishOutcomeUnknown as exc:
            raise PublishOutcomeUnknown(f"publish to {topic!r}: {exc}") from None
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot publish to {topic!r}: {exc}") from None
        if isinstance(raw, ReplyError):
            raise HubUnavailable(f"cannot publish to {topic!r}: Redis said {raw}")
        message_id = _text(raw)  # type: ignore[arg-type]
        # Redis has it and the subscription is down: this process's subscribers need
        # not wait for the reconnection (issue 18 item 4).
        self._feed_for(topic).deliver_early(topic, message_id, payload, key)
        return message_id

    async def _publish_call(self, key: str, *args: bytes | str | int) -> Reply:
        return await self._call(key, *args)

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]:
        """Messages after ``since`` (exclusive), oldest first, at most the last ``limit``
        and never more than the topic keeps. ``ValueError`` for a malformed ``since``."""
        if limit is not None and limit <= 0:
            return []
        start = "-" if since is None else _after(since)
        stream = self._stream(topic)
        entries = await self._command(f"read the history of {topic!r}", stream, "EVAL",
                                      _HISTORY, 1, stream, start, limit or 0)
        assert isinstance(entries, list)
        # Raw entries: [id, [b"k", keep, b"d", data]], newest first.
        return [(_text(i), *decode_payload(fields[3])) for i, fields in reversed(entries)]

    async def replay(self, topic: str, since: str) -> tuple[list[Stored], Gap | None]:
        """History after ``since`` for a client that resumes, with a :class:`Gap` when
        the stream no longer reaches back to it: trimmed, or gone (Redis restarted
        empty, the key deleted or expired), or ``since`` is newer than its newest."""
        stream = self._stream(topic)
        reply = await self._command(f"read the history of {topic!r}", stream, "EVAL",
                                    _REPLAY, 1, stream, _after(since))
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
        await self._feed_for(topic).listen(topic)

    async def unlisten(self, topic: str) -> None:
        self._feed_for(topic).unlisten(topic)

    # ------------------------------------------------------------------ what the feed asks

    async def stream_range(self, topic: str, start: str, count: int) -> list[Entry]:
        stream = self._stream(topic)
        entries: list[Entry] = await self._command("refill a gap", stream, "XRANGE", stream,
                                                   start, "+", "COUNT", count)
        return entries

    async def newest_id(self, topic: str) -> str | None:
        stream = self._stream(topic)
        newest = await self._command("read a stream", stream, "XREVRANGE", stream, "+", "-",
                                     "COUNT", 1)
        return _text(newest[0][0]) if newest else None

    def deliver(self, topic: str, message_id: str, payload: str | bytes,
                key: str | None) -> None:
        assert self._sink is not None
        self._note_lag(topic, message_id)
        try:
            self._sink(topic, message_id, payload, key)
        except Exception:
            logger.exception("hub: delivering %s on %r failed", message_id, topic)

    def _note_lag(self, topic: str, message_id: str) -> None:
        """Seconds from publish (the id's milliseconds: Redis's clock) to delivery."""
        with suppress(ValueError):
            published = int(message_id[:message_id.index("-")]) / 1000
            self._lags[self._feed_for(topic).label] = max(0.0, time.time() - published)

    def shard_stats(self) -> list[dict[str, Any]]:
        """For /metrics: the one Redis as a shard (the cluster backend: each master)."""
        options = self._pipe.options
        address = str(options.get("path") or
                      f"{options.get('host', '127.0.0.1')}:{options.get('port', 6379)}")
        return [{"shard": address, "up": self._feed.state is State.CONNECTED,
                 "topics": len(self._feed.topics), "pending": self._pipe.pending,
                 "lag": self._lags.get("", 0.0), "reconnects": self._feed.reconnects}]

    def emit(self, kind: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, details)
            except Exception:
                logger.exception("hub: the %r event handler failed", kind)

    def released(self, feed: Feed, channels: list[bytes]) -> None:
        """Only sharded feeds are released (redis_cluster.py)."""

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
        epoch_key = self._epoch_key(topic)
        old = await self._command(f"read the epoch of {topic!r}", epoch_key, "SET",
                                  epoch_key, fresh, "NX", "GET", *ttl)
        return fresh if old is None else _text(old)

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take ``key`` in Redis for every process: None when it was free, else the
        value it was settled with ("" while its first claimer is still at work)."""
        once = self._once_key(key)
        old = await self._command("check a publish's once key", once, "SET", once, "",
                                  "NX", "PX", int(ttl * 1000), "GET")
        return None if old is None else _text(old)

    async def settle(self, key: str, value: str, ttl: float) -> None:
        once = self._once_key(key)
        await self._command("record a publish's once key", once, "SET", once, value, "PX",
                            int(ttl * 1000))


def _after(message_id: str) -> str:
    """The smallest id after ``message_id`` (XRANGE's "(" needs Redis 6.2); Redis ids
    are two 64-bit parts, so the largest sequence carries into the milliseconds."""
    ms, seq = id_key(message_id)
    if seq < MAX_ID_PART:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms < MAX_ID_PART else message_id
