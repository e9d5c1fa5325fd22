"""What a hub backend does, and the in-process one.

The hub (hub/__init__.py) keeps the *local* subscribers of each topic and writes to
them; a backend carries messages *between* processes and keeps what outlives one:

- ``publish(topic, payload, key=...)`` stores the message (history, if the topic keeps
  any), gives it an id, and makes every process's hub — this one included — call
  ``sink(topic, id, payload, key)`` exactly once. Ids grow within a topic, so ``since=``
  can be answered by a range query.
- ``listen(topic)`` / ``unlisten(topic)``: this process has its first / no more local
  subscribers of a topic (a broker-side subscription, for backends that need one).
- ``history(topic, since, limit)``: what was published after ``since`` (an id), oldest
  first, at most the last ``limit`` messages, as ``(id, payload, key)``.
- ``replay(topic, since)``: the same for a client that resumes, with a :class:`Gap`
  when the history cannot show that it still holds everything after ``since`` (P5).
- presence: ``join(topic, member, info)`` / ``leave(topic, member)`` / ``members(topic)``
  / ``count(topic)`` (the size without the list) across processes; entries of a process
  that died expire (``presence_ttl``).
- ``HubUnavailable`` from ``publish``/``history``/``members`` when the broker cannot be
  reached: never a silent drop. A backend that loses its connection reconnects by
  itself, with backoff, and reports the gap through ``on_event`` (``"disconnected"``,
  ``"reconnected"`` with the number of seconds without delivery).

``payload`` is the message as published, already encoded (``bytes`` for binary
messages, ``str`` for text), so it is encoded once for all processes. ``key`` (a ``str``
or None) travels with it: the "latest" policy keeps a slow subscriber's newest message
per topic and key (P3).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..exceptions import HubUnavailable, PublishOutcomeUnknown, SubscribeUnavailable

__all__ = ["Backend", "Gap", "MemoryBackend", "HubUnavailable", "PublishOutcomeUnknown",
           "SubscribeUnavailable", "Sink", "EventSink", "Stored", "id_key", "replay_gap"]

#: ``sink(topic, message_id, payload, key)``: deliver to this process's local subscribers.
Sink = Callable[[str, str, "str | bytes", "str | None"], None]
#: A message as history returns it: ``(id, payload, key)``.
Stored = tuple[str, "str | bytes", "str | None"]
#: ``on_event(kind, details)``: "disconnected", "reconnected", "gap"...
EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Gap:
    """A resume (``since=``) that the kept history cannot answer in full (P5).

    ``reason``:

    - ``"trimmed"``: messages came after ``since`` that the topic no longer keeps (it keeps
      its last N); certain loss.
    - ``"lost"``: ``since`` is older than anything the history ever held as far as it
      knows: the history was lost (Redis restarted empty, its key deleted or expired, a
      memory hub restarted) or the topic keeps none; messages may be missing.
    - ``"future"``: ``since`` is newer than the topic's newest message: an id from a
      history that no longer exists (or from elsewhere); messages may be missing.

    ``first_kept``: the id of the oldest message still kept after ``since`` (the first
    one the replay sends), None when there is none. How many were lost is not known:
    neither backend keeps a count of what it dropped.
    """

    topic: str
    since: str
    reason: str
    first_kept: str | None = None


class Backend(Protocol):
    async def start(self, sink: Sink, on_event: EventSink) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, payload: str | bytes, *, history: int = 0,
                      key: str | None = None) -> str: ...

    async def listen(self, topic: str) -> None: ...

    async def unlisten(self, topic: str) -> None: ...

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]: ...

    async def replay(self, topic: str, since: str) -> tuple[list[Stored], Gap | None]: ...

    async def join(self, topic: str, member: str, info: Any) -> None: ...

    async def leave(self, topic: str, member: str) -> None: ...

    async def members(self, topic: str) -> dict[str, Any]: ...

    async def count(self, topic: str) -> int: ...

    async def epoch(self, topic: str) -> str: ...

    async def claim(self, key: str, ttl: float) -> str | None: ...

    async def settle(self, key: str, value: str, ttl: float) -> None: ...


#: Sequence of the ids a hub gives what it delivers locally during an outage: the upper
#: half of the 64-bit range, which Redis never reaches (2^63 messages in a millisecond),
#: so such an id is never also the id of a message Redis carried.
LOCAL_SEQ_BASE = 2**63


class LocalIds:
    """Ids shaped like Redis Stream ids (``"<ms>-<seq>"``), growing in one process;
    sequences start at ``base`` in each millisecond."""

    def __init__(self, base: int = 0) -> None:
        self._base = base
        self._seq = itertools.count(base)
        self._last_ms = 0

    def next_id(self) -> str:
        ms = int(time.time() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms  # the clock stepped back or stood still: ids still grow
        else:
            self._seq = itertools.count(self._base)
        self._last_ms = ms
        return f"{ms}-{next(self._seq)}"


class MemoryBackend:
    """One process: delivery is a direct call, history a bounded deque per topic.

    Ids are ``"<milliseconds>-<sequence>"`` like Redis Stream ids, so clients see the
    same shape whichever backend runs.
    """

    def __init__(self) -> None:
        self._sink: Sink | None = None
        self._history: dict[str, deque[Stored]] = {}
        # topic → id of the newest message its history dropped (P5: where resume ends)
        self._dropped: dict[str, str] = {}
        self._members: dict[str, dict[str, Any]] = {}
        self._ids = LocalIds()
        # One epoch for every topic: this process's history lives and dies with it.
        self._epoch = uuid.uuid4().hex[:16]
        self._claims: dict[str, tuple[float, str]] = {}  # key → (expires, value)

    async def start(self, sink: Sink, on_event: EventSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None

    async def publish(self, topic: str, payload: str | bytes, *, history: int = 0,
                      key: str | None = None) -> str:
        message_id = self._ids.next_id()
        if history:
            self._keep(topic, (message_id, payload, key), history)
        if self._sink is not None:
            self._sink(topic, message_id, payload, key)
        return message_id

    def _keep(self, topic: str, message: Stored, history: int) -> None:
        """Append to the topic's last ``history`` messages, remembering the newest id
        that falls out (a resume from before it has a gap)."""
        kept = self._history.get(topic)
        if kept is None or kept.maxlen != history:
            if kept is not None and len(kept) > history:
                self._dropped[topic] = kept[-history - 1][0]
            kept = self._history[topic] = deque(kept or (), maxlen=history)
        if len(kept) == history:
            self._dropped[topic] = kept[0][0]
        kept.append(message)

    async def listen(self, topic: str) -> None:
        return None

    async def unlisten(self, topic: str) -> None:
        return None

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]:
        kept = list(self._history.get(topic, ()))
        if since is not None:
            after = id_key(since)
            kept = [m for m in kept if id_key(m[0]) > after]
        if limit is not None:
            kept = kept[-limit:] if limit > 0 else []
        return kept

    async def replay(self, topic: str, since: str) -> tuple[list[Stored], Gap | None]:
        kept = self._history.get(topic)
        missed = await self.history(topic, since)
        dropped = self._dropped.get(topic)
        gap = replay_gap(
            topic, since, missed, newest=kept[-1][0] if kept else None,
            trimmed=dropped is not None and id_key(since) < id_key(dropped),
            # Nothing dropped yet and since is older than the first message kept: since
            # is from before this process kept the topic (a restart lost that history).
            predates=(dropped is None and kept is not None and bool(missed)
                      and missed[0][0] == kept[0][0]))
        return missed, gap

    async def join(self, topic: str, member: str, info: Any) -> None:
        self._members.setdefault(topic, {})[member] = info

    async def leave(self, topic: str, member: str) -> None:
        members = self._members.get(topic)
        if members is not None:
            members.pop(member, None)
            if not members:
                del self._members[topic]

    async def members(self, topic: str) -> dict[str, Any]:
        return dict(self._members.get(topic, {}))

    async def count(self, topic: str) -> int:
        return len(self._members.get(topic, ()))

    async def epoch(self, topic: str) -> str:
        return self._epoch

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take ``key`` for ``ttl`` seconds: None when it was free (the caller goes on
        and ``settle()``s it), else the value it was settled with ("" while pending)."""
        now = time.monotonic()
        found = self._claims.get(key)
        if found is not None and found[0] > now:
            return found[1]
        if len(self._claims) > 100_000:  # bounded: drop what expired
            self._claims = {k: v for k, v in self._claims.items() if v[0] > now}
        self._claims[key] = (now + ttl, "")
        return None

    async def settle(self, key: str, value: str, ttl: float) -> None:
        self._claims[key] = (time.monotonic() + ttl, value)


#: Redis Stream ids are two unsigned 64-bit integers; a larger part is no id of ours.
MAX_ID_PART = 2**64 - 1


def id_key(message_id: str) -> tuple[int, int]:
    """Order of ``"<ms>-<seq>"`` ids (``"<ms>"`` alone is ``<ms>-0``); ``ValueError`` for
    anything else, so a client's ``since=`` gets a clear refusal: ASCII digits only
    (``int()`` alone would take " 12", "1_0" or "١٢"), each part within 64 bits."""
    ms, dash, seq = message_id.partition("-")
    if not (ms.isascii() and ms.isdigit() and (not dash or (seq.isascii() and seq.isdigit()))):
        raise ValueError(f"not a message id: {message_id[:40]!r}")
    key = int(ms), int(seq or 0)
    if key[0] > MAX_ID_PART or key[1] > MAX_ID_PART:
        raise ValueError(f"message id out of range: {message_id[:40]!r}")
    return key


def replay_gap(topic: str, since: str, missed: list[Stored], *, newest: str | None,
               trimmed: bool, predates: bool) -> Gap | None:
    """What a backend's ``replay`` reports, from what it found (see :class:`Gap`).

    ``newest``: the topic's newest kept id (None: nothing kept); ``trimmed``: a message
    after ``since`` is no longer kept; ``predates``: ``since`` is older than the oldest
    message this history ever held. ``since="0"`` asks for whatever is kept: no gap.
    """
    after = id_key(since)
    if after == (0, 0):
        return None
    first = missed[0][0] if missed else None
    if newest is None:
        return Gap(topic, since, "lost")
    if trimmed:
        return Gap(topic, since, "trimmed", first)
    if after > id_key(newest):
        return Gap(topic, since, "future")
    if predates:
        return Gap(topic, since, "lost", first)
    return None


