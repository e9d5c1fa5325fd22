"""The hub over Redis Cluster with sharded pub/sub (issue 16): ``redis+cluster://``.

Everything of one topic lives on its slot's master, because every key and the channel
carry the topic's hash tag (slots.py)::

    {prefix:topic}:stream     the stream (as redis.py's {prefix}:stream:{topic})
    {prefix:topic}:epoch      the epoch
    {prefix:topic}:topic      the sharded pub/sub channel (SSUBSCRIBE / SPUBLISH)
    {prefix:topic}:presence   presence hash, {prefix:topic}:pcount its per-process counts
    {prefix:topic}:alive      process id → heartbeat deadline (ms, Redis's clock)
    {prefix}:once:{key}       idempotency keys (their own slots)

So a publish is what it is on one Redis, one Lua script (XADD + SPUBLISH) in one round
trip to one shard, and topics spread over the masters by slot. Commands go through the
cluster router (cluster_router.py: one pipeline per node, MOVED/ASK followed, retries
through a failover until ``failover_timeout``).

*Pub/sub*: one feed (redis_feed.py, sharded: SSUBSCRIBE) per master that carries topics
of this process, opened when its first topic is listened to: one pub/sub connection per
shard per process, whatever the number of topics. A topic's feed is its *home*. When a
slot moves (migration, failover), its topics are *re-homed*: taken from the old feed with
the last id delivered, adopted by the new master's feed, which subscribes and refills
from the stream before any live message, so the move is a pause, not a loss. The old
node says so itself (``sunsubscribe`` pushed, or ``-MOVED`` to an SSUBSCRIBE): the
backend reads the map again and moves the topics. A feed whose node dies reports
``"disconnected"`` (with ``"shard"``); the map is polled until a replica takes over, the
topics move, and ``"reconnected"`` follows with ``downtime``, ``refilled``, ``shard``
and ``moved_to``.

*Durability across a failover*: Redis replicates asynchronously, so a master killed
right after acknowledging a publish can lose it. With replicas, each publish is followed
by ``WAIT wait_replicas replica_timeout`` in the same round trip: it is acknowledged
once a replica has it too. A publish no replica confirmed in time is still returned
(its id is real, the master has it) and counted in ``unreplicated`` with a warning;
``wait_replicas=0`` skips the WAIT.

*Presence*: the same hashes as on one Redis, per topic; the heartbeat is per topic too
(``alive``: a key of the topic's slot, since a script may only touch keys of one slot),
refreshed every third of ``presence_ttl``.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.connection import parse_url

from .backend import HubUnavailable
from .cluster_router import ClusterRouter
from .cluster_router import State as RouterState
from .pipeline import Command, Pipeline
from .pipeline import State as PipeState
from .redis import _PUBLISH, RedisBackend
from .redis_feed import Feed, Mark, State
from .redis_presence import RedisPresence
from .resp import Reply
from .slots import key_slot, topic_tag

__all__ = ["RedisClusterBackend", "parse_cluster_url"]

logger = logging.getLogger("legato.hub")

_SPUBLISH = _PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")
assert _SPUBLISH != _PUBLISH

#: Seconds between reads of the map while a feed's node is down or a released topic's
#: new master is not known yet: a failover is over within about a second.
_POLL = 0.2
#: Slot of a tag / of a key: crc16 in Python costs microseconds, a publish does it once.
_slot = lru_cache(maxsize=1 << 16)(key_slot)
_tag = lru_cache(maxsize=1 << 16)(topic_tag)


def parse_cluster_url(url: str) -> list[dict[str, Any]]:
    """Seed nodes of ``redis+cluster://[user:password@]host:port[,host:port...]``
    (``rediss+cluster://`` for TLS), as connection options (auth and TLS for every node).
    ``ValueError`` for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError(f"not a Redis Cluster URL: {url!r} (redis+cluster://host:port,...)")
    rest = rest.partition("?")[0].partition("/")[0]
    auth, _, hosts = rest.rpartition("@")
    seeds = []
    for node in filter(None, (h.strip() for h in hosts.split(","))):
        parts = urlsplit(f"//{node}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"a cluster seed needs host:port, got {node!r} in {url!r}")
        base = scheme.partition("+")[0]
        options = dict(parse_url(f"{base}://{auth + '@' if auth else ''}{node}"))
        if auth:  # parse_url unquotes too; kept explicit for a password with ':'
            user, _, password = auth.partition(":")
            options["username"] = unquote(user) or None
            options["password"] = unquote(password) or None
        seeds.append(options)
    if not seeds:
        raise ValueError(f"a cluster URL needs at least one host:port: {url!r}")
    return seeds


class RedisClusterBackend(RedisBackend):
    """The Redis backend over a Redis Cluster (see the module docstring).

    Options are the Redis backend's, plus:

    * ``wait_replicas`` (1): replicas that must have a publish before it is acknowledged
      (WAIT), capped by the replicas its shard has; 0: do not wait.
    * ``replica_timeout`` (s, 0.1): how long a publish waits for them.
    * ``failover_timeout`` (s, 10): how long a command keeps retrying a slot without a
      master (a failover takes the cluster's node timeout plus about a second) before
      ``HubUnavailable``.
    * ``refresh_interval`` (s, 5): how often the slot map is read when nothing asks.

    Counters: ``reconnects``, ``messages_refilled`` (summed over the feeds), ``rehomed``
    (topics moved to another master), ``unreplicated`` (publishes no replica confirmed).
    """

    def __init__(self, url: str = "redis+cluster://127.0.0.1:7000", *,
                 wait_replicas: int = 1, replica_timeout: float = 0.1,
                 failover_timeout: float = 10.0, refresh_interval: float = 5.0,
                 **options: Any) -> None:
        if wait_replicas < 0 or replica_timeout <= 0:
            raise ValueError("wait_replicas must be >= 0 and replica_timeout > 0")
        if failover_timeout <= 0 or refresh_interval <= 0:
            raise ValueError("failover_timeout and refresh_interval must be > 0")
        self.wait_replicas = wait_replicas
        self.replica_timeout = replica_timeout
        self.failover_timeout = failover_timeout
        self.refresh_interval = refresh_interval
        self.rehomed = 0
        self.unreplicated = 0
        super().__init__(url, **options)
        if self.replica_timeout >= self.timeout:
            raise ValueError("replica_timeout must be shorter than timeout (a WAIT longer "
                             "than the silence limit would look like a hung node)")

    def _connect_to(self, url: str, max_pending: int) -> None:
        self._router = ClusterRouter(
            parse_cluster_url(url), client_name=self._client_name + ":cmd",
            timeout=self.timeout, failover_timeout=self.failover_timeout,
            max_pending=max_pending, refresh_interval=self.refresh_interval,
            on_topology=self._want_rehome, on_ready=self._node_answered,
            on_stall=self._node_silent)
        self._feeds: dict[str, Feed] = {}  # master address → its feed
        self._opening: dict[str, asyncio.Task[None]] = {}  # feeds connecting
        self._homes: dict[str, Feed] = {}  # topic → the feed that carries it
        self._nowhere = self._new_feed("")  # topics whose master is not known (never runs)
        self._released: dict[str, float] = {}  # topic → when its node let it go
        self._retired = [0, 0]  # reconnects, refilled of feeds stopped since
        self._rehoming: asyncio.Task[None] | None = None
        self._rehome_again = False
        self._watching: dict[str, asyncio.Task[None]] = {}  # shard down → map poller
        self._presence = ClusterPresence(self._router, self.prefix, self.process_id,
                                         self.presence_ttl)
        self._closed = False

    def _new_feed(self, address: str) -> Feed:
        options = self._router.options(address) if address else {}
        return Feed(self, options, client_name=self._client_name + ":sub",
                    timeout=self.timeout, ping_interval=self.ping_interval,
                    reconnect_backoff=self.reconnect_backoff, sharded=True, label=address)

    # ------------------------------------------------------------------ names

    def _stream(self, topic: str) -> str:
        return _tag(self.prefix, topic) + ":stream"

    def channel(self, topic: str) -> bytes:
        return (_tag(self.prefix, topic) + ":topic").encode()

    _channel = channel

    def _epoch_key(self, topic: str) -> str:
        return _tag(self.prefix, topic) + ":epoch"

    def _topic_slot(self, topic: str) -> int:
        return _slot(_tag(self.prefix, topic))

    # ------------------------------------------------------------------ state, counters

    @property
    def state(self) -> State:
        """CLOSED after stop(); CONNECTED when every feed that carries topics is (and,
        with none, once the slot map is known); else DISCONNECTED."""
        if self._closed:
            return State.CLOSED
        carrying = set(self._homes.values())
        if not carrying:
            return State.CONNECTED if self._router.state is RouterState.READY \
                else State.DISCONNECTED
        if all(f.state is State.CONNECTED for f in carrying):
            return State.CONNECTED
        return State.DISCONNECTED

    @property
    def reconnects(self) -> int:
        return self._retired[0] + sum(f.reconnects for f in self._feeds.values())

    @property
    def messages_refilled(self) -> int:
        return self._retired[1] + sum(f.messages_refilled for f in self._feeds.values())

    @property
    def router(self) -> ClusterRouter:
        """The command router (its counters: ``moved``, ``asked``, ``retries``)."""
        return self._router

    @property
    def pipeline(self) -> Pipeline:
        raise AttributeError("a cluster backend has a pipeline per node: "
                             "backend.router.pipeline(address)")

    def feed_of(self, topic: str) -> Feed | None:
        """The feed that carries ``topic`` (None: not listened to)."""
        return self._homes.get(topic)

    def shard_stats(self) -> list[dict[str, Any]]:
        """Per master: its pub/sub state, topics, commands pending, delivery lag."""
        stats = []
        addresses = [s.address for s in self._router.shards] or list(self._feeds)
        for address in dict.fromkeys([*addresses, *self._feeds]):
            feed = self._feeds.get(address)
            pipe = self._router.pipeline(address)
            stats.append({
                "shard": address,
                # Its pub/sub connection; with none, its command connection (none
                # needed yet: a master the map lists, nothing says it is down).
                "up": feed.state is State.CONNECTED if feed is not None
                else pipe is None or pipe.state is PipeState.READY,
                "topics": len(feed.topics) if feed is not None else 0,
                "pending": pipe.pending if pipe is not None else 0,
                "lag": self._lags.get(address, 0.0),
                "reconnects": feed.reconnects if feed is not None else 0,
            })
        return stats

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: Any, on_event: Any) -> None:
        """Read the slot map (an unreachable cluster is reported, not raised)."""
        self._sink, self._on_event = sink, on_event
        await self._router.start()
        if self._router.state is not RouterState.READY:
            self.emit("disconnected", {"error": "no node of the cluster answered"})
        self._tasks = [asyncio.create_task(self._presence.run(), name="legato-hub-presence")]

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in [*self._opening.values(), *self._watching.values(), self._rehoming]:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task
        for feed in [*self._feeds.values(), self._nowhere]:
            await feed.stop()
        await self._stop_tasks()
        await self._presence.clear()
        await self._router.close()

    # ------------------------------------------------------------------ commands

    async def _call(self, key: str, *args: bytes | str | int) -> Reply:
        return await self._router.call(_slot(key), *args)

    _publish_script = _SPUBLISH

    async def publish(self, topic: str, payload: str | bytes, *,
                      history: int | None = None, key: str | None = None) -> str:
        if self._closed:
            raise HubUnavailable("the hub's Redis Cluster backend is stopped")
        return await super().publish(topic, payload, history=history, key=key)

    async def _publish_call(self, key: str, *args: bytes | str | int) -> Reply:
        """The publish script, and WAIT for a replica in the same round trip."""
        slot = _slot(key)
        wanted = min(self.wait_replicas, self._replicas(slot))
        if not wanted:
            return await self._router.call(slot, *args)
        ms = max(1, int(self.replica_timeout * 1000))
        reply, acks = await self._router.call_many(slot, [args, ("WAIT", wanted, ms)])
        if isinstance(acks, int) and acks < wanted and not isinstance(reply, Exception):
            self.unreplicated += 1
            logger.warning("hub: a publish on slot %d reached %s of %d replicas within "
                           "%g s: a failover now could lose it", slot, acks, wanted,
                           self.replica_timeout)
        return reply

    def _replicas(self, slot: int) -> int:
        master = self._router.master(slot)
        for shard in self._router.shards:
            if shard.address == master:
                return len(shard.replicas)
        return 0

    # ------------------------------------------------------------------ topics

    def _feed_for(self, topic: str) -> Feed:
        return self._homes.get(topic, self._nowhere)

    async def _feed_at(self, address: str) -> Feed:
        """The feed of the master at ``address``, connected once (started on demand)."""
        feed = self._feeds.get(address)
        if feed is None:
            feed = self._feeds[address] = self._new_feed(address)
            self._opening[address] = asyncio.ensure_future(feed.start())
        opening = self._opening.get(address)
        if opening is not None:
            with suppress(Exception):
                await asyncio.shield(opening)
            if opening.done():
                self._opening.pop(address, None)
        return feed

    async def listen(self, topic: str) -> None:
        if self._closed:
            return
        home = self._homes.get(topic)
        if home is None:
            address = self._router.master(self._topic_slot(topic))
            home = self._nowhere if address is None else await self._feed_at(address)
            home = self._homes.setdefault(topic, home)
        await home.listen(topic)

    async def unlisten(self, topic: str) -> None:
        home = self._homes.pop(topic, None)
        self._released.pop(topic, None)
        if home is not None:
            home.unlisten(topic)

    # ------------------------------------------------------------------ moving topics

    def released(self, feed: Feed, channels: list[bytes]) -> None:
        """A node no longer serves these channels: their slot moved. Read the map again
        and re-home them."""
        topics = {t for t, home in self._homes.items() if home is feed}
        names = {self.channel(t): t for t in topics}
        now = asyncio.get_running_loop().time()
        for channel in channels:
            if channel in names:
                self._released.setdefault(names[channel], now)
        self._router._want_refresh()
        self._want_rehome()

    def _want_rehome(self) -> None:
        """The map changed, or topics were released: move topics to their masters."""
        if self._closed:
            return
        self._rehome_again = True
        if self._rehoming is None or self._rehoming.done():
            self._rehoming = asyncio.get_running_loop().create_task(
                self._rehome_loop(), name="legato-hub-cluster-rehome")

    async def _rehome_loop(self) -> None:
        while self._rehome_again and not self._closed:
            self._rehome_again = False
            try:
                await self._rehome()
            except Exception:  # a bug: say it, try again at the next change
                logger.exception("hub: moving topics to their new masters failed")
            if self._released and not self._rehome_again:
                # Released by a node while the map still names it: ask until it changes.
                await asyncio.sleep(_POLL / 4)
                await self._router.refresh()
                self._rehome_again = True

    async def _rehome(self) -> None:
        moves: dict[Feed, list[tuple[str, str]]] = {}
        for topic, home in list(self._homes.items()):
            address = self._router.master(self._topic_slot(topic))
            if address is None or address == home.label:
                continue  # no master known (stay), or home already
            moves.setdefault(home, []).append((topic, address))
        for old, topics in moves.items():
            down_since = old.down_since
            was_down = old.state is not State.CONNECTED and old is not self._nowhere
            refilled, moved_to = 0, set()
            for topic, address in topics:
                new = await self._feed_at(address)
                if self._homes.get(topic) is not old:
                    continue  # unlistened (or moved) while the new feed connected
                mark: Mark | None = old.take(topic)
                self._released.pop(topic, None)
                self._homes[topic] = new
                self.rehomed += 1
                moved_to.add(address)
                if mark is not None:
                    refilled += await new.adopt(topic, mark)
            if was_down and not old.topics and moved_to:
                downtime = 0.0 if down_since is None else \
                    asyncio.get_running_loop().time() - down_since
                logger.warning("hub: the topics of Redis Cluster shard %s moved to %s "
                               "after %.1f s; %d missed messages delivered from the "
                               "streams", old.label, ", ".join(sorted(moved_to)),
                               downtime, refilled)
                self.emit("reconnected", {"downtime": downtime, "refilled": refilled,
                                          "shard": old.label,
                                          "moved_to": sorted(moved_to)})
        await self._resubscribe_stale()
        await self._retire()

    async def _resubscribe_stale(self) -> None:
        """Topics released by a node that the map still names as their master, for
        longer than a failover takes: the node's word was stale (a slot that came back),
        so subscribe there again (refilled from the last id) rather than wait on."""
        now = asyncio.get_running_loop().time()
        for topic, since in list(self._released.items()):
            home = self._homes.get(topic)
            if home is None:
                del self._released[topic]
            elif now - since > self.failover_timeout:
                del self._released[topic]
                mark = home.take(topic)
                if mark is not None:
                    await home.adopt(topic, mark)

    async def _retire(self) -> None:
        """Stop the feeds of nodes that are no longer masters and carry nothing."""
        masters = {s.address for s in self._router.shards}
        for address, feed in list(self._feeds.items()):
            if feed.topics or address in masters or address in self._opening:
                continue
            del self._feeds[address]
            self._retired[0] += feed.reconnects
            self._retired[1] += feed.messages_refilled
            watcher = self._watching.pop(address, None)
            if watcher is not None:
                watcher.cancel()
            await feed.stop()

    # ------------------------------------------------------------------ faults

    def emit(self, kind: str, details: dict[str, Any]) -> None:
        shard = details.get("shard")
        if kind == "disconnected" and shard and shard not in self._watching \
                and not self._closed:
            self._watching[shard] = asyncio.get_running_loop().create_task(
                self._watch_map(shard), name="legato-hub-cluster-watch")
        super().emit(kind, details)

    async def _watch_map(self, address: str) -> None:
        """A feed's node is down: read the map until a replica takes its slots over (the
        topics then move) or the node is back."""
        try:
            while not self._closed:
                feed = self._feeds.get(address)
                if feed is None or feed.state is State.CONNECTED:
                    return
                if await self._router.refresh():
                    self._want_rehome()
                await asyncio.sleep(_POLL)
        finally:
            self._watching.pop(address, None)

    def _node_answered(self, address: str) -> None:
        feed = self._feeds.get(address)
        if feed is not None:
            feed.wake()

    def _node_silent(self, address: str) -> None:
        feed = self._feeds.get(address)
        if feed is not None:
            feed.went_silent()




# -------------------------------------------------------------------------- presence

# KEYS[1] the topic's alive hash; ARGV: process id, ttl in ms, "1" to refresh only (0
# when this process's deadline had passed: others may have deleted its entries).
_STAMP = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  local deadline = redis.call('HGET', KEYS[1], ARGV[1])
  if not deadline or tonumber(deadline) <= ms then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ms + ttl)
if redis.call('PTTL', KEYS[1]) < 2 * ttl then redis.call('PEXPIRE', KEYS[1], 3 * ttl) end
return 1
"""

# The liveness test both readers share: a process is alive while its deadline in
# KEYS[2] is ahead of Redis's clock (this process always is); dead ones are deleted.
_ALIVE = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local alive = {}
local function live(pid)
  local ok = alive[pid]
  if ok == nil then
    local deadline = redis.call('HGET', KEYS[2], pid)
    ok = pid == ARGV[1] or (deadline and tonumber(deadline) > ms) or false
    if not ok then redis.call('HDEL', KEYS[2], pid) end
    alive[pid] = ok
  end
  return ok
end
local flat = redis.call('HGETALL', KEYS[1])
"""

# KEYS[1] presence hash, KEYS[2] alive hash; ARGV[1] this process's id.
_MEMBERS = _ALIVE + """
local out = {}
for i = 1, #flat, 2 do
  if live(string.match(flat[i], '^([^:]*):') or '') then
    out[#out + 1] = flat[i]; out[#out + 1] = flat[i + 1]
  else redis.call('HDEL', KEYS[1], flat[i]) end
end
return out
"""

# KEYS[1] count hash, KEYS[2] alive hash; ARGV[1] this process's id.
_COUNT = _ALIVE + """
local total = 0
for i = 1, #flat, 2 do
  if live(flat[i]) then total = total + tonumber(flat[i + 1])
  else redis.call('HDEL', KEYS[1], flat[i]) end
end
return total
"""


class ClusterPresence(RedisPresence):
    """Presence with a heartbeat per topic (a script may only touch one slot's keys, so
    the liveness a reader checks must live in the topic's slot), its commands grouped
    by slot: one round trip per shard, concurrently."""

    _members_script = _MEMBERS
    _count_script = _COUNT

    def __init__(self, router: ClusterRouter, prefix: str, process_id: str,
                 ttl: float) -> None:
        super().__init__(None, prefix, process_id, ttl)
        self._router = router

    def _hash(self, topic: str) -> str:
        return _tag(self._prefix, topic) + ":presence"

    def _counts(self, topic: str) -> str:
        return _tag(self._prefix, topic) + ":pcount"

    def _alive(self, topic: str) -> str:
        return _tag(self._prefix, topic) + ":alive"

    def _stamp(self) -> list[Command]:
        return []

    def _stamp_topic(self, topic: str) -> list[Command]:
        return [("EVAL", _STAMP, 1, self._alive(topic), self._pid, self._ttl_ms, "0")]

    def _refresh(self) -> list[Command]:
        return []

    def _refresh_topic(self, topic: str) -> list[Command]:
        return [("EVAL", _STAMP, 1, self._alive(topic), self._pid, self._ttl_ms, "1"),
                *super()._refresh_topic(topic)]

    def _unstamp(self) -> list[Command]:
        return [("HDEL", self._alive(topic), self._pid) for topic in self._joined]

    async def _read(self, topic: str, script: str, key: str) -> Reply:
        return await self._router.call(_slot(key), "EVAL", script, 2, key,
                                       self._alive(topic), self._pid)

    async def _send(self, commands: list[Command]) -> list[Reply]:
        """Each command to its key's shard (EVAL: its first key), replies in order."""
        by_slot: dict[int, list[int]] = {}
        for index, command in enumerate(commands):
            key = command[3] if command[0] == "EVAL" else command[1]
            by_slot.setdefault(_slot(key), []).append(index)
        replies: list[Reply] = [None] * len(commands)
        groups = list(by_slot.items())
        answers = await asyncio.gather(
            *(self._router.call_many(slot, [commands[i] for i in indices])
              for slot, indices in groups), return_exceptions=True)
        for (_, indices), answer in zip(groups, answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer if isinstance(answer, HubUnavailable) else \
                    HubUnavailable(f"a presence write failed: {answer!r}")
            for index, reply in zip(indices, answer, strict=True):
                replies[index] = reply
        return replies

