"""The NATS hub's KV buckets (hub/nats.py): presence and the once keys of claim/settle.

Presence: one value per process and topic, key ``{t(topic)}.{process_id}``, JSON
``{member: info}`` of all its members there, and beside it ``n.{t(topic)}.{process_id}``,
their number (``count()`` reads one per process); the bucket's TTL (``presence_ttl``) removes
the values of a process that died, so each process rewrites its values every third of
it. Once keys: key ``t(key)``, value ``"<deadline> <value>"``; KV's compare-and-set
(create, update at a revision) makes a claim one process's, and a deadline past makes it
free again (per key, whatever the bucket's TTL).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

try:
    import nats.errors
    import nats.js.errors
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the NATS hub needs nats-py: pip install 'legato[nats]'") from exc

from .. import jsoncodec
from .backend import HubUnavailable

__all__ = ["Claims", "NATS_ERRORS", "ONCE_BUCKET_TTL", "Presence", "topic_token"]

logger = logging.getLogger("legato.hub")

#: Errors of nats-py that mean "NATS cannot be reached or did not answer".
NATS_ERRORS = (nats.errors.Error, OSError, asyncio.TimeoutError)
#: Claims (once keys) last at most this long whatever their ttl: the bucket's TTL.
ONCE_BUCKET_TTL = 86_400.0
_CAS_TRIES = 64  # claimers racing for one key: HubUnavailable after these
_SAFE = re.compile(r"[A-Za-z0-9_-]")


def topic_token(topic: str) -> str:
    """One subject token (and KV key part) for any topic, reversibly (see above)."""
    out = [c if _SAFE.match(c) else "".join(f"={b:02X}" for b in c.encode()) for c in topic]
    return "".join(out) or "="


class Presence:
    """This process's presence values (one KV value per topic: all its members there),
    written once per loop iteration for what changed, rewritten every third of the TTL.
    ``join``/``leave`` never raise: what could not be written is rewritten later."""

    def __init__(self, bucket: str, process_id: str, ttl: float, timeout: float, *,
                 connected: Callable[[], bool],
                 spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        self._pid, self._ttl, self._timeout = process_id, ttl, timeout
        self._is_connected, self._spawn = connected, spawn
        self.kv: KeyValue | None = None  # set once connected
        self.js: JetStreamContext | None = None  # the same
        self.bucket = bucket
        self._joined: dict[str, dict[str, bytes]] = {}  # topic → member → JSON info
        self._dirty: set[str] = set()  # changed this loop iteration, or failed to write
        self._flushed: asyncio.Future[None] | None = None

    def _key(self, topic: str) -> str:
        return f"{topic_token(topic)}.{self._pid}"

    def _count_key(self, topic: str) -> str:
        """Beside the members, their number: ``count()`` reads one per process. Three
        tokens, so no ``t.*`` watch of the members matches it (a token has no dot)."""
        return f"n.{topic_token(topic)}.{self._pid}"

    async def join(self, topic: str, member: str, info: bytes) -> None:
        self._joined.setdefault(topic, {})[member] = info
        self._dirty.add(topic)
        await self._written()

    async def leave(self, topic: str, member: str) -> None:
        members = self._joined.get(topic)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._joined[topic]
        self._dirty.add(topic)
        await self._written()

    async def _written(self) -> None:
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(lambda: self._spawn(self._flush(), "legato-hub-nats-presence"))
        await asyncio.shield(self._flushed)

    async def _flush(self) -> None:
        done, self._flushed = self._flushed, None
        dirty, self._dirty = self._dirty, set()
        try:
            await self._write(dirty)
        finally:
            if done is not None:
                done.set_result(None)

    async def _write(self, topics: set[str]) -> None:
        kv = self.kv
        if kv is None or not self._is_connected():
            self._dirty |= topics
            return
        for topic in topics:
            members = self._joined.get(topic)
            try:
                if members:
                    await kv.put(self._key(topic), _members_json(members))
                    await kv.put(self._count_key(topic), b"%d" % len(members))
                else:
                    await kv.purge(self._key(topic))
                    await kv.purge(self._count_key(topic))
            except NATS_ERRORS as exc:
                logger.debug("hub nats: presence write failed (%s); retried later", exc)
                self._dirty.add(topic)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await self._write(set(self._joined) | self._dirty)
            except Exception:  # a bug: say it, keep the heartbeat alive
                logger.exception("hub nats: presence heartbeat failed")

    async def members(self, topic: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for value in await self._values(f"{topic_token(topic)}.*", f"read the presence "
                                        f"of {topic!r}"):
            found.update(jsoncodec.loads(value))
        return found

    async def count(self, topic: str) -> int:
        """The members of live processes, one number per process (not the list)."""
        values = await self._values(f"n.{topic_token(topic)}.*",
                                    f"count the presence of {topic!r}")
        return sum(int(value) for value in values)

    async def _values(self, keys: str, what: str) -> list[bytes]:
        """The current values of the keys matching ``keys``: which keys from the
        bucket's stream info, then one direct get per key, all at once. (A KV watch
        ended its first read early now and then on NATS 2.9: a member went missing.)"""
        js = self.js
        if js is None:
            raise HubUnavailable(f"cannot {what}: not connected")
        stream = f"KV_{self.bucket}"
        try:
            info = await js.stream_info(stream, subjects_filter=f"$KV.{self.bucket}.{keys}")
            subjects = list((info.state.subjects or {}) if info.state else {})
            found = await asyncio.gather(
                *(js.get_msg(stream, subject=subject) for subject in subjects),
                return_exceptions=True)
        except NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot {what}: {exc}") from None
        values = []
        for message in found:
            if isinstance(message, nats.js.errors.NotFoundError):
                continue  # expired or purged meanwhile
            if isinstance(message, BaseException):
                raise HubUnavailable(f"cannot {what}: {message}")
            if message.data and not (message.headers or {}).get("KV-Operation"):
                values.append(message.data)
        return values

    async def clear(self) -> None:
        """Remove this process's values (errors: they expire anyway)."""
        kv = self.kv
        if kv is not None:
            for topic in list(self._joined):
                with suppress(*NATS_ERRORS):
                    await kv.purge(self._key(topic))
                    await kv.purge(self._count_key(topic))
        self._joined.clear()


def _members_json(members: dict[str, bytes]) -> bytes:
    return b"{" + b",".join(jsoncodec.dumps(m) + b":" + i for m, i in members.items()) + b"}"


class Claims:
    """claim/settle in the once bucket (see the module docstring)."""

    def __init__(self) -> None:
        self.kv: KeyValue | None = None  # set once connected

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take ``key`` for every process: None when it was free, else the value it was
        settled with ("" while pending). A claim expires at its deadline (wall clock)."""
        once = self.kv
        if once is None:
            raise HubUnavailable("cannot check a publish's once key: not connected")
        name, fresh = topic_token(key), b"%.3f " % (time.time() + ttl)
        try:
            for _ in range(_CAS_TRIES):
                try:
                    await once.create(name, fresh)
                    return None
                except nats.js.errors.KeyWrongLastSequenceError:
                    pass
                try:
                    entry = await once.get(name)
                except nats.js.errors.KeyNotFoundError:
                    continue  # deleted meanwhile
                deadline, _, value = (entry.value or b"0 ").partition(b" ")
                if float(deadline) > time.time():
                    return value.decode()
                with suppress(nats.js.errors.KeyWrongLastSequenceError):
                    await once.update(name, fresh, last=entry.revision)
                    return None
        except NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot check a publish's once key: {exc}") from None
        raise HubUnavailable("cannot check a publish's once key: too many racing claims")

    async def settle(self, key: str, value: str, ttl: float) -> None:
        once = self.kv
        if once is None:
            raise HubUnavailable("cannot record a publish's once key: not connected")
        try:
            await once.put(topic_token(key), b"%.3f %s" % (time.time() + ttl, value.encode()))
        except NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot record a publish's once key: {exc}") from None

