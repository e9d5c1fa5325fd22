"""Commands to a Redis Cluster, each sent to the master of its slot (issue 16).

A cluster splits the 16,384 key slots (slots.py) among its masters, and a node answers
a command for a slot it does not serve with a redirect instead of a reply (the Redis
Cluster specification, "Redirection and resharding"). The router keeps the slot → master
map, one :class:`~legato.hub.pipeline.Pipeline` per node (so a node's commands keep the
pipelining and the honest failure contract of the single-Redis backend), and turns what
a node answers into the reply a caller wants:

- ``-MOVED <slot> <host:port>``: the slot has a new master for good. The command did not
  run; the map takes the new owner at once, a refresh is scheduled, and the commands of
  the call that did not run are sent there.
- ``-ASK <slot> <host:port>``: the slot is being migrated and this key is already on the
  importing node. Sent there with ``ASKING`` just before each command (it lets the
  importing node serve the next command only); the map is left alone.
- ``-TRYAGAIN`` (a multi-key command whose keys are split by a migration), ``-LOADING``,
  ``-CLUSTERDOWN``, or :class:`HubUnavailable` from a node's pipeline (not written: the
  node is down or refusing): the topology is read again and the call retried after a short
  growing pause, until ``failover_timeout`` seconds after it began; then
  :class:`HubUnavailable`. This is what carries a call through a failover (a replica
  takes over within the cluster's node timeout).
- :class:`PublishOutcomeUnknown` (written, no reply) is raised, never retried: the
  command may have run. A refresh is scheduled.
- Any other error reply is the command's reply (a :class:`ReplyError` value).

Only the commands that did not run are sent again, in their order: a command of the
batch that got a real reply ran once, and is not run twice. (After a ``MOVED`` these are
the redirected command and every one after it: the old node serves none of the slot.)

Order: the calls that wait to be retried wait at one gate and are resumed in the order
they stopped, and a new call for a slot that has calls waiting queues behind them, so the
commands of concurrent callers of one slot reach the new master in the order they were
issued. At most :data:`MAX_REDIRECTS` redirects per call: more is a redirect loop
(a misconfigured cluster), reported as :class:`HubUnavailable`.

The topology is read with ``CLUSTER SLOTS`` (Redis >= 3; skips failed replicas), from
the node that answered last, then the masters, then the seeds: at :meth:`start`, every
``refresh_interval`` seconds, and soon after anything suggests it changed.

States (all transitions in :meth:`ClusterRouter._set_state`)::

    IDLE ──start()──▶ SEEKING ──a node described the cluster──▶ READY
                        (calls wait for a map)
    any ──close()──▶ CLOSED
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from .backend import HubUnavailable, PublishOutcomeUnknown
from .pipeline import Command, Pipeline
from .resp import Reply, ReplyError
from .slots import SLOTS

__all__ = ["ClusterRouter", "Redirect", "Shard", "State", "parse_redirect", "parse_slots",
           "slot_owners"]

logger = logging.getLogger("legato.hub")

#: Redirects one call may follow: a slot moves at most once or twice during a call
#: (a MOVED, an ASK while it migrates again); 16 is a loop between confused nodes.
MAX_REDIRECTS = 16
#: The first pause before a retry (seconds), doubled at each retry up to the longest:
#: short enough that a LOADING or TRYAGAIN of a few milliseconds costs little, long enough
#: that a failover (about a second) is not a storm of reconnections.
FIRST_PAUSE = 0.015
LONGEST_PAUSE = 0.25
#: Between two topology reads that something asked for (seconds): a burst of redirects
#: is one CLUSTER SLOTS, not one per command.
REFRESH_GAP = 0.02
#: Pauses between topology reads while no seed has answered yet (seconds).
SEEK_PAUSES = (0.05, 1.0)

#: Error replies that mean "not run, try again soon" (the prefix before a space).
_RETRY = frozenset({"TRYAGAIN", "LOADING", "CLUSTERDOWN"})


class State(enum.Enum):
    IDLE = "idle"
    SEEKING = "seeking"
    READY = "ready"
    CLOSED = "closed"


_TRANSITIONS = {
    State.IDLE: {State.SEEKING, State.CLOSED},
    State.SEEKING: {State.READY, State.CLOSED},
    State.READY: {State.CLOSED},
    State.CLOSED: set(),
}


@dataclass(frozen=True)
class Shard:
    """A master, the slot ranges it serves (inclusive) and its replicas' addresses."""

    address: str
    node_id: str
    slots: tuple[tuple[int, int], ...]
    replicas: tuple[str, ...]


@dataclass(frozen=True)
class Redirect:
    """What an error reply asks of the router: ``kind`` is "MOVED", "ASK" or "RETRY"."""

    kind: str
    slot: int | None = None
    address: str | None = None


# ------------------------------------------------------------------------- pure parts


def parse_slots(reply: Reply, default_host: str) -> list[Shard]:
    """The shards a ``CLUSTER SLOTS`` reply describes, sorted by first slot.

    ``default_host`` stands for an empty endpoint (Redis sends "" for "the host you asked").
    Malformed entries and unknown endpoints ("?") are skipped, never raised: a node's
    odd answer must not stop the router; an empty list means "no usable answer".
    """
    if not isinstance(reply, list):
        return []
    ranges: dict[str, list[tuple[int, int]]] = {}
    nodes: dict[str, tuple[str, set[str]]] = {}
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3:
            continue
        start, end, master = entry[0], entry[1], entry[2]
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < SLOTS):
            continue
        address = _node_address(master, default_host)
        if address is None:
            continue
        node_id = _text(master[2]) if isinstance(master, list) and len(master) > 2 else address
        ranges.setdefault(node_id, []).append((start, end))
        replicas = nodes.setdefault(node_id, (address, set()))[1]
        replicas.update(a for a in (_node_address(n, default_host) for n in entry[3:]) if a)
    shards = [Shard(address, node_id, tuple(sorted(ranges[node_id])), tuple(sorted(replicas)))
              for node_id, (address, replicas) in nodes.items()]
    return sorted(shards, key=lambda shard: shard.slots[0])


def _node_address(node: Reply, default_host: str) -> str | None:
    if not isinstance(node, list) or len(node) < 2 or not isinstance(node[1], int):
        return None
    host = _text(node[0])
    if host == "?":
        return None
    return f"{host or default_host}:{node[1]}"


def _text(value: Reply) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def slot_owners(shards: list[Shard]) -> list[str | None]:
    """Slot → master address, one entry per slot (None: no master serves it)."""
    owners: list[str | None] = [None] * SLOTS
    for shard in shards:
        for start, end in shard.slots:
            owners[start:end + 1] = [shard.address] * (end - start + 1)
    return owners


def parse_redirect(reply: Reply, default_host: str) -> Redirect | None:
    """The redirect or retry an error reply asks for; None for a reply to keep.

    ``default_host``: the replying node's host, for a redirect with an empty host
    (``MOVED 12 :7001``, sent when the node does not know its own endpoint).
    """
    if not isinstance(reply, ReplyError):
        return None
    kind, _, rest = reply.partition(" ")
    if kind in _RETRY:
        return Redirect("RETRY")
    if kind not in ("MOVED", "ASK"):
        return None
    slot, _, address = rest.partition(" ")
    host, _, port = address.rpartition(":")
    if not slot.isdigit() or not port.isdigit():
        return None  # not a redirect we understand: the caller sees the error
    return Redirect(kind, int(slot), f"{host or default_host}:{port}")


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (the host may be an IPv6 address, bracketed or not)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# ------------------------------------------------------------------------- the router


class ClusterRouter:
    """Calls to a Redis Cluster, routed by slot (see the module docstring).

    ``seeds``: connection options of some nodes, as ``redis.asyncio.connection.parse_url``
    returns them (their auth and TLS options serve every node). ``timeout``: each node's
    pipeline silence limit (seconds). ``failover_timeout``: how long a call keeps retrying
    a slot without a reachable master (seconds; a failover takes about the cluster's node
    timeout plus a second). ``max_pending``: per node. ``on_topology()``: the slot →
    master map changed; ``on_ready(address)`` / ``on_stall(address)``: a node's pipeline
    connected / found the node hung.
    """

    def __init__(self, seeds: list[dict[str, Any]], *, client_name: str,
                 timeout: float = 1.0, failover_timeout: float = 10.0,
                 max_pending: int = 10_000, refresh_interval: float = 5.0,
                 on_topology: Callable[[], None] | None = None,
                 on_ready: Callable[[str], None] | None = None,
                 on_stall: Callable[[str], None] | None = None) -> None:
        if not seeds:
            raise ValueError("a cluster router needs at least one seed node")
        if failover_timeout <= 0 or refresh_interval <= 0:
            raise ValueError("failover_timeout and refresh_interval must be > 0")
        self._base = {k: v for k, v in seeds[0].items() if k not in ("host", "port", "db",
                                                                     "path")}
        self._seeds = [f"{s.get('host', '127.0.0.1')}:{int(s.get('port', 6379))}"
                       for s in seeds]
        self.client_name = client_name
        self.timeout = timeout
        self.failover_timeout = failover_timeout
        self.max_pending = max_pending
        self.refresh_interval = refresh_interval
        self.on_topology = on_topology
        self.on_ready = on_ready
        self.on_stall = on_stall
        self.state = State.IDLE
        self._owners: list[str | None] = [None] * SLOTS
        self._shards: list[Shard] = []
        self._pipes: dict[str, Pipeline] = {}
        self._source: str | None = None  # the node that described the cluster last
        self._wanted = asyncio.Event()  # a refresh is asked for
        self._refresher: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[bool] | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()  # calls paused, in order
        self._gate: asyncio.TimerHandle | None = None  # resumes the paused calls
        self._held: dict[int, int] = {}  # slot → calls of it paused
        #: Counters: redirects followed, retries (pauses), topology reads answered.
        self.moved = 0
        self.asked = 0
        self.retries = 0
        self.refreshes = 0

    # --------------------------------------------------------------------- the map

    def master(self, slot: int) -> str | None:
        """The address of ``slot``'s master, as the map has it (None: none known)."""
        return self._owners[slot]

    @property
    def shards(self) -> list[Shard]:
        """The map as last read (a MOVED updates :meth:`master` at once, this at the
        refresh it schedules), sorted by first slot."""
        return list(self._shards)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def options(self, address: str) -> dict[str, Any]:
        """Connection options for the node at ``address``: the seeds' auth and TLS."""
        host, port = split_address(address)
        return {**self._base, "host": host, "port": port}

    def pipeline(self, address: str) -> Pipeline | None:
        """The command pipeline of a node, if one was made (its counters, its state)."""
        return self._pipes.get(address)

    def _pipe(self, address: str) -> Pipeline:
        pipe = self._pipes.get(address)
        if pipe is None:
            pipe = self._pipes[address] = Pipeline(
                self.options(address), client_name=self.client_name, timeout=self.timeout,
                max_pending=self.max_pending, on_ready=lambda: self._ready(address),
                on_stall=lambda: self._stalled(address))
        return pipe

    def _ready(self, address: str) -> None:
        if self.on_ready is not None:
            self.on_ready(address)

    def _stalled(self, address: str) -> None:
        self._want_refresh()
        if self.on_stall is not None:
            self.on_stall(address)

    # --------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read the topology once, then keep it fresh in the background. Never raises
        for an unreachable cluster: calls wait for a map (up to ``failover_timeout``)."""
        if not self._set_state(State.SEEKING):
            return
        await self.refresh()
        self._refresher = asyncio.get_running_loop().create_task(
            self._keep_fresh(), name="legato-hub-cluster-topology")

    async def close(self) -> None:
        """Stop: paused calls fail with HubUnavailable, each node's pipeline closes
        (queued commands fail as unsent, written ones as unknown)."""
        if not self._set_state(State.CLOSED):
            return
        for task in (self._refresher, self._refreshing):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._resume(HubUnavailable("the cluster router was closed while the call "
                                    "waited for a master"))
        for pipe in list(self._pipes.values()):
            await pipe.close()

    def _set_state(self, state: State) -> bool:
        if state not in _TRANSITIONS[self.state]:
            return False
        logger.debug("hub cluster router %s: %s → %s", self.client_name, self.state.name,
                     state.name)
        self.state = state
        return True

    # --------------------------------------------------------------------- topology

    async def refresh(self) -> bool:
        """Read the topology now (joining a read under way); True if the slot → master
        map changed. Never raises: no answer leaves the map as it is."""
        if self.state is State.CLOSED:
            return False
        task = self._refreshing
        if task is None:
            task = self._refreshing = asyncio.get_running_loop().create_task(
                self._read_topology(), name="legato-hub-cluster-refresh")
            task.add_done_callback(self._refreshed)
        return await asyncio.shield(task)

    def _refreshed(self, task: asyncio.Task[bool]) -> None:
        if self._refreshing is task:
            self._refreshing = None

    def _want_refresh(self) -> None:
        self._wanted.set()

    async def _keep_fresh(self) -> None:
        seek = SEEK_PAUSES[0]
        while True:
            wait = self.refresh_interval if self.state is State.READY else seek
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), wait)
            self._wanted.clear()
            await self.refresh()
            seek = min(seek * 2, SEEK_PAUSES[1])
            await asyncio.sleep(REFRESH_GAP)

    def _candidates(self) -> list[str]:
        """Who to ask: the last node that answered, the masters, their replicas, seeds."""
        found = [self._source] if self._source else []
        found += [shard.address for shard in self._shards]
        found += [r for shard in self._shards for r in shard.replicas]
        found += self._seeds
        return list(dict.fromkeys(found))

    async def _read_topology(self) -> bool:
        last: object = "no node to ask"
        for address in self._candidates():
            try:
                reply = await self._pipe(address).call("CLUSTER", "SLOTS")
            except HubUnavailable as exc:  # PublishOutcomeUnknown too: a read, harmless
                last = exc
                continue
            shards = parse_slots(reply, split_address(address)[0])
            if shards:
                self._source = address
                return self._apply(shards)
            last = reply
        logger.debug("hub cluster router: no node described the cluster (%s)", last)
        return False

    def _apply(self, shards: list[Shard]) -> bool:
        owners = slot_owners(shards)
        changed = owners != self._owners
        self._owners, self._shards = owners, shards
        self.refreshes += 1
        self._set_state(State.READY)
        if changed:
            logger.debug("hub cluster router: new map %s",
                         [(s.address, s.slots) for s in shards])
            self._map_changed()
        return changed

    def _map_changed(self) -> None:
        self._resume(None)  # a master appeared: paused calls try it now
        if self.on_topology is not None:
            self.on_topology()

    def _moved(self, slot: int, address: str) -> None:
        self.moved += 1
        self._want_refresh()
        if self._owners[slot] != address:
            self._owners[slot] = address
            self._map_changed()

    # --------------------------------------------------------------------- calling

    async def call(self, slot: int, *args: bytes | str | int) -> Reply:
        """Run one command on ``slot``'s master; see the module docstring for errors."""
        return (await self.call_many(slot, [args]))[0]

    async def call_many(self, slot: int, commands: list[Command]) -> list[Reply]:
        """Run commands on ``slot``'s master, back to back there, replies in order.

        Raises :class:`HubUnavailable` when no master of the slot answered within
        ``failover_timeout`` (or after :data:`MAX_REDIRECTS` redirects, or on close),
        :class:`PublishOutcomeUnknown` when a node got the commands and went silent.
        """
        if self.state is State.CLOSED:
            raise HubUnavailable("the cluster router is closed")
        address = self._owners[slot]
        if address is None or slot in self._held:
            return await _Call(self, slot, commands).run()
        try:  # the usual case: one send
            replies = await self._send(address, commands, asking=False)
        except PublishOutcomeUnknown:
            self._want_refresh()
            raise
        except HubUnavailable as exc:
            if self.closed:  # (a property: the state may have changed while sending)
                raise
            call = _Call(self, slot, commands)
            call.last, call.wait = f"{address}: {exc}", True
            return await call.run()
        if not any(type(reply) is ReplyError for reply in replies):
            return replies
        return await _Call(self, slot, commands).resume(address, replies)

    async def _send(self, address: str, commands: list[Command], *, asking: bool
                    ) -> list[Reply]:
        if self.state is State.CLOSED:
            raise HubUnavailable("the cluster router is closed")
        if not asking:
            return await self._pipe(address).call_many(commands)
        sent: list[Command] = []
        for command in commands:
            sent += [("ASKING",), command]
        return (await self._pipe(address).call_many(sent))[1::2]  # ASKING's +OK dropped

    async def _pause(self, slot: int, attempt: int, deadline: float) -> None:
        """Wait at the gate (a refresh is asked for), resumed in arrival order."""
        loop = asyncio.get_running_loop()
        self._want_refresh()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._gate is None:
            delay = min(FIRST_PAUSE * 2 ** min(attempt, 10), LONGEST_PAUSE,
                        max(deadline - loop.time(), 0.0))
            self._gate = loop.call_later(delay, self._resume, None)
        self._held[slot] = self._held.get(slot, 0) + 1
        try:
            await waiter
        finally:
            left = self._held[slot] - 1
            if left:
                self._held[slot] = left
            else:
                del self._held[slot]

    def _resume(self, exc: HubUnavailable | None) -> None:
        """Open the gate: every paused call goes on (or fails with ``exc``), in order."""
        if self._gate is not None:
            self._gate.cancel()
            self._gate = None
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if waiter.done():
                continue
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


class _Call:
    """One call's way through redirects and retries: which commands are still to run,
    where they go next, and how long it may keep trying."""

    def __init__(self, router: ClusterRouter, slot: int, commands: list[Command]) -> None:
        self.router = router
        self.slot = slot
        self.commands = commands
        self.replies: list[Reply] = [None] * len(commands)
        self.todo = list(range(len(commands)))  # indices not run yet
        self.target: str | None = None  # where a redirect said to go
        self.asking = False
        self.redirects = 0
        self.attempts = 0
        self.last: object = "no map of the cluster yet (no seed answered)"
        self.wait = False  # the last replies asked for a pause before the next try
        self.deadline = asyncio.get_running_loop().time() + router.failover_timeout

    async def run(self) -> list[Reply]:
        if self.slot in self.router._held:  # calls of this slot wait: queue behind them
            await self.router._pause(self.slot, 0, self.deadline)
        while True:
            if self.wait:
                self.wait = False
                await self._retry()
            address = self.target or self.router.master(self.slot)
            if address is None:
                self.wait = True
                continue
            try:
                got = await self.router._send(
                    address, [self.commands[i] for i in self.todo], asking=self.asking)
            except PublishOutcomeUnknown:
                self.router._want_refresh()
                raise
            except HubUnavailable as exc:
                if self.router.state is State.CLOSED:
                    raise
                self.target, self.asking, self.last = None, False, f"{address}: {exc}"
                self.wait = True
                continue
            if self._take(address, got):
                return self.replies

    async def resume(self, address: str, got: list[Reply]) -> list[Reply]:
        """The first send's replies held an error: go on from them."""
        if self._take(address, got):
            return self.replies
        return await self.run()

    def _take(self, address: str, got: list[Reply]) -> bool:
        """Keep the real replies, decide where the rest go; True when all are in."""
        host = split_address(address)[0]
        todo, first, said = [], None, None
        for index, reply in zip(self.todo, got, strict=True):
            redirect = parse_redirect(reply, host)
            if redirect is None:
                self.replies[index] = reply
            else:
                todo.append(index)
                if first is None:
                    first, said = redirect, reply
        self.todo = todo
        if first is None:
            return True
        if first.kind == "RETRY":
            self.target, self.asking, self.last = None, False, f"{address}: {said!s}"
            self.wait = True
            return False
        self.redirects += 1
        if self.redirects > MAX_REDIRECTS:
            raise HubUnavailable(f"slot {self.slot}: redirect loop ({MAX_REDIRECTS} "
                                 f"redirects, the last to {first.address} from {address})")
        assert first.address is not None and first.slot is not None
        if first.kind == "MOVED":
            self.router._moved(first.slot, first.address)
            self.target, self.asking = first.address, False
        else:
            self.router.asked += 1
            self.target, self.asking = first.address, True
        return False

    async def _retry(self) -> None:
        """Pause at the router's gate before the next try, or give up past the deadline."""
        if asyncio.get_running_loop().time() >= self.deadline:
            raise HubUnavailable(f"slot {self.slot}: no master answered within "
                                 f"{self.router.failover_timeout:g}s (last: {self.last})")
        self.attempts += 1
        self.router.retries += 1
        await self.router._pause(self.slot, self.attempts, self.deadline)
