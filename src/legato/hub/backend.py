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
- presence: ``join(topic, member, info)`` / ``leave(topic, member)`` / ``members(topic)``
  across processes; entries of a process that died expire (``presence_ttl``).
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
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..exceptions import LegatoError

__all__ = ["Backend", "MemoryBackend", "HubUnavailable", "Sink", "EventSink", "Stored"]

#: ``sink(topic, message_id, payload, key)``: deliver to this process's local subscribers.
Sink = Callable[[str, str, "str | bytes", "str | None"], None]
#: A message as history returns it: ``(id, payload, key)``.
Stored = tuple[str, "str | bytes", "str | None"]
#: ``on_event(kind, details)``: "disconnected", "reconnected", "gap"...
EventSink = Callable[[str, dict[str, Any]], None]


class HubUnavailable(LegatoError):
    """The hub's broker cannot be reached: the message did not reach other processes.

    ``delivered_locally`` is True when the hub still delivered it to this process's own
    subscribers (it does, from ``Hub.publish``: local delivery goes on during an outage).
    """

    def __init__(self, message: str, *, delivered_locally: bool = False) -> None:
        super().__init__(message)
        self.delivered_locally = delivered_locally


class Backend(Protocol):
    async def start(self, sink: Sink, on_event: EventSink) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, payload: str | bytes, *, history: int = 0,
                      key: str | None = None) -> str: ...

    async def listen(self, topic: str) -> None: ...

    async def unlisten(self, topic: str) -> None: ...

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]: ...

    async def join(self, topic: str, member: str, info: Any) -> None: ...

    async def leave(self, topic: str, member: str) -> None: ...

    async def members(self, topic: str) -> dict[str, Any]: ...


class LocalIds:
    """Ids shaped like Redis Stream ids (``"<ms>-<seq>"``), growing in one process."""

    def __init__(self) -> None:
        self._seq = itertools.count(0)
        self._last_ms = 0

    def next_id(self) -> str:
        ms = int(time.time() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms  # the clock stepped back or stood still: ids still grow
        else:
            self._seq = itertools.count(0)
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
        self._members: dict[str, dict[str, Any]] = {}
        self._ids = LocalIds()

    async def start(self, sink: Sink, on_event: EventSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        self._sink = None

    async def publish(self, topic: str, payload: str | bytes, *, history: int = 0,
                      key: str | None = None) -> str:
        message_id = self._ids.next_id()
        if history:
            kept = self._history.get(topic)
            if kept is None or kept.maxlen != history:
                kept = self._history[topic] = deque(kept or (), maxlen=history)
            kept.append((message_id, payload, key))
        if self._sink is not None:
            self._sink(topic, message_id, payload, key)
        return message_id

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


def id_key(message_id: str) -> tuple[int, int]:
    """Order of ``"<ms>-<seq>"`` ids; ``ValueError`` for anything else."""
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


