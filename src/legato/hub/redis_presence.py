"""Presence on Redis: this process's members of each topic, and the heartbeat that keeps
them alive (the key layout is in redis.py's docstring).

Per topic a hash ``{prefix}:presence:{topic}`` holds ``"{process_id}:{member}"`` → JSON
info, and ``{prefix}:pcount:{topic}`` holds, per process, how many members it has there,
so a room's size is read without its list. A process's entries count only while its
heartbeat key ``{prefix}:proc:{process_id}`` lives; readers delete those of dead
processes.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from .. import jsoncodec
from .backend import HubUnavailable
from .pipeline import Command, Pipeline
from .resp import Reply, ReplyError, text

__all__ = ["RedisPresence"]

logger = logging.getLogger("legato.hub")

# KEYS[1] presence hash; ARGV: heartbeat key prefix, this process's id.
# Returns the live fields and values, flat; deletes the fields of dead processes.
_MEMBERS = """
local flat = redis.call('HGETALL', KEYS[1])
local out, alive = {}, {}
for i = 1, #flat, 2 do
  local pid = string.match(flat[i], '^([^:]*):') or ''
  local ok = alive[pid]
  if ok == nil then
    ok = pid == ARGV[2] or redis.call('EXISTS', ARGV[1] .. pid) == 1
    alive[pid] = ok
  end
  if ok then out[#out + 1] = flat[i]; out[#out + 1] = flat[i + 1]
  else redis.call('HDEL', KEYS[1], flat[i]) end
end
return out
"""

# KEYS[1] presence count hash; ARGV: heartbeat key prefix, this process's id.
# The members of live processes; deletes the counts of dead ones.
_COUNT = """
local flat = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #flat, 2 do
  if flat[i] == ARGV[2] or redis.call('EXISTS', ARGV[1] .. flat[i]) == 1 then
    total = total + tonumber(flat[i + 1])
  else redis.call('HDEL', KEYS[1], flat[i]) end
end
return total
"""


class RedisPresence:
    """This process's presence entries, and the heartbeat that keeps them alive.

    The joins and leaves of one loop iteration are written in one go (``_flush``): a
    room that 10,000 connections leave at once costs one write, not 10,000 waits for a
    connection (issue 18 item 8). Per topic this process also writes how many members
    it has there (``pcount``), so ``count()`` reads one number per process.
    """

    #: The Lua scripts ``members()`` and ``count()`` run (the cluster's differ).
    _members_script = _MEMBERS
    _count_script = _COUNT

    def __init__(self, pipe: Pipeline | None, prefix: str, process_id: str,
                 ttl: float) -> None:
        """``pipe``: where the commands go (None for a subclass that routes them)."""
        self._pipe = pipe
        self._prefix = prefix
        self._pid = process_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._proc = f"{prefix}:proc:{process_id}"
        self._joined: dict[str, dict[str, bytes]] = {}  # topic → member → JSON info
        self._leaving: set[tuple[str, str]] = set()  # left while Redis was unreachable
        self._lost: set[str] = set()  # topics whose write failed: the heartbeat rewrites
        # Changes of this loop iteration: topic → (members added, members removed).
        self._dirty: dict[str, tuple[dict[str, bytes], set[str]]] = {}
        self._flushed: asyncio.Future[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def _hash(self, topic: str) -> str:
        return f"{self._prefix}:presence:{topic}"

    def _counts(self, topic: str) -> str:
        return f"{self._prefix}:pcount:{topic}"

    def _field(self, member: str) -> str:
        return f"{self._pid}:{member}"

    async def join(self, topic: str, member: str, info: bytes) -> None:
        self._joined.setdefault(topic, {})[member] = info
        self._leaving.discard((topic, member))
        added, removed = self._dirty.setdefault(topic, ({}, set()))
        added[member] = info
        removed.discard(member)
        await self._written()

    async def leave(self, topic: str, member: str) -> None:
        members = self._joined.get(topic)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._joined[topic]
        added, removed = self._dirty.setdefault(topic, ({}, set()))
        added.pop(member, None)
        removed.add(member)
        await self._written()

    async def _written(self) -> None:
        """Wait for the write of this loop iteration's changes (never raises: what
        could not be written is the heartbeat's to write)."""
        if self._flushed is None:
            self._flushed = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._start_flush)
        await asyncio.shield(self._flushed)

    def _start_flush(self) -> None:
        done, self._flushed = self._flushed, None
        dirty, self._dirty = self._dirty, {}
        assert done is not None
        task = asyncio.get_running_loop().create_task(self._flush(dirty, done))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, dirty: dict[str, tuple[dict[str, bytes], set[str]]],
                     done: asyncio.Future[None]) -> None:
        commands = self._stamp()  # first: no member without a live process
        for topic, (added, removed) in dirty.items():
            commands += self._stamp_topic(topic)
            if removed:
                commands.append(("HDEL", self._hash(topic),
                                 *(self._field(m) for m in removed)))
            if added:
                flat: list[bytes | str] = []
                for member, info in added.items():
                    flat += (self._field(member), info)
                commands += [("HSET", self._hash(topic), *flat),
                             ("PEXPIRE", self._hash(topic), self._ttl_ms)]
            commands += self._count_commands(topic)
        try:
            replies = await self._send(commands)
            if any(isinstance(r, ReplyError) for r in replies):
                raise HubUnavailable(f"Redis refused a presence write: {replies}")
        except HubUnavailable as exc:
            logger.debug("hub redis: presence write failed (%s); the heartbeat retries", exc)
            for topic, (_, removed) in dirty.items():
                self._leaving.update((topic, m) for m in removed)
                self._lost.add(topic)
        finally:
            done.set_result(None)

    def _unstamp(self) -> list[Command]:
        """What a clean stop ends with: the heartbeat goes."""
        return [("DEL", self._proc)]

    def _count_commands(self, topic: str) -> list[Command]:
        count = len(self._joined.get(topic, ()))
        if not count:
            return [("HDEL", self._counts(topic), self._pid)]
        return [("HSET", self._counts(topic), self._pid, count),
                ("PEXPIRE", self._counts(topic), self._ttl_ms)]

    def _stamp(self) -> list[Command]:
        """What a write of members starts with: this process's heartbeat."""
        return [("SET", self._proc, b"1", "PX", self._ttl_ms)]

    def _stamp_topic(self, topic: str) -> list[Command]:
        """What a write of a topic's members needs besides (a cluster: its own stamp)."""
        return []

    async def _send(self, commands: list[Command]) -> list[Reply]:
        assert self._pipe is not None
        return await self._pipe.call_many(commands)

    async def _read(self, topic: str, script: str, key: str) -> Reply:
        """Run a members/count script over ``key`` (errors: HubUnavailable)."""
        assert self._pipe is not None
        return await self._pipe.call("EVAL", script, 1, key, f"{self._prefix}:proc:",
                                     self._pid)

    async def members(self, topic: str) -> dict[str, Any]:
        try:
            flat = await self._read(topic, self._members_script, self._hash(topic))
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot read the presence of {topic!r}: {exc}") from None
        if not isinstance(flat, list):
            raise HubUnavailable(f"cannot read the presence of {topic!r}: {flat!r}")
        return {text(flat[i]).partition(":")[2]: jsoncodec.loads(flat[i + 1])  # type: ignore[arg-type]
                for i in range(0, len(flat), 2)}

    async def count(self, topic: str) -> int:
        try:
            total = await self._read(topic, self._count_script, self._counts(topic))
        except HubUnavailable as exc:
            raise HubUnavailable(f"cannot count the presence of {topic!r}: {exc}") from None
        if not isinstance(total, int):
            raise HubUnavailable(f"cannot count the presence of {topic!r}: {total!r}")
        return total

    def _write_commands(self, topics: list[str]) -> list[Command]:
        """Heartbeat first, then the fields and counts: nobody sees them without a live
        process."""
        commands = self._stamp()
        for topic in topics:
            commands += self._stamp_topic(topic)
            members = self._joined.get(topic)
            if members:
                flat: list[bytes | str] = []
                for member, info in members.items():
                    flat += (self._field(member), info)
                commands += [("HSET", self._hash(topic), *flat),
                             ("PEXPIRE", self._hash(topic), self._ttl_ms)]
            commands += self._count_commands(topic)
        return commands

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self.beat()
            except HubUnavailable as exc:
                logger.debug("hub redis: presence heartbeat failed: %s", exc)
            except Exception:  # a bug: say it, keep the heartbeat alive
                logger.exception("hub redis: presence heartbeat failed")

    async def beat(self) -> None:
        """Refresh the heartbeat and the hashes' TTLs; rewrite what Redis lost."""
        if not self._joined and not self._leaving and not self._lost:
            return
        leaving, topics, failed = list(self._leaving), list(self._joined), set(self._lost)
        commands: list[Command] = [
            ("HDEL", self._hash(topic), self._field(member)) for topic, member in leaving]
        header = self._refresh()
        commands += header
        per_topic = [self._refresh_topic(topic) for topic in topics]
        for refresh in per_topic:
            commands += refresh
        results = await self._send(commands)
        self._leaving.difference_update(leaving)
        self._lost.difference_update(failed)
        at = len(leaving) + len(header)
        # No heartbeat: we stalled past the TTL and others may have deleted our fields,
        # or Redis restarted. No hash: Redis restarted or it expired.
        lost = set(topics) if not all(results[len(leaving):at]) else set()
        for topic, refresh in zip(topics, per_topic, strict=True):
            if not all(results[at:at + len(refresh)]):
                lost.add(topic)
            at += len(refresh)
        lost |= failed
        if lost:
            await self._send(self._write_commands(sorted(lost)))

    def _refresh(self) -> list[Command]:
        """The heartbeat's refresh, answered None when the heartbeat had expired."""
        return [("SET", self._proc, b"1", "PX", self._ttl_ms, "XX")]

    def _refresh_topic(self, topic: str) -> list[Command]:
        """A topic's refresh: every reply 0 or None means Redis lost what we wrote."""
        return [("PEXPIRE", self._hash(topic), self._ttl_ms),
                ("PEXPIRE", self._counts(topic), self._ttl_ms)]

    async def clear(self) -> None:
        """Remove this process's entries and heartbeat (errors: they expire anyway)."""
        commands: list[Command] = []
        for topic, members in self._joined.items():
            if members:
                commands.append(("HDEL", self._hash(topic),
                                 *(self._field(m) for m in members)))
            commands.append(("HDEL", self._counts(topic), self._pid))
        for topic, member in self._leaving:
            commands.append(("HDEL", self._hash(topic), self._field(member)))
        commands += self._unstamp()
        with suppress(HubUnavailable):
            await self._send(commands)
        self._joined.clear()
        self._leaving.clear()
