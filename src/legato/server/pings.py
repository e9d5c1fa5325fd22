"""When each open WebSocket is due its keepalive ping: one loop timer per interval
value for all of a server's connections, instead of one per connection.

A connection's ping comes ``ping_interval`` after it was scheduled, so connections that
share an interval fall due in the order they were scheduled: one FIFO per interval, and
one timer for its head. An entry is a small list (deadline, session); cancelling clears
its session, and the cleared entry is dropped when it comes due. Per idle connection
this holds ~100 bytes where a ``loop.call_later`` handle held ~600 (uvloop's TimerHandle
and UVTimer; docs/design.md, "Where an idle connection's memory goes").
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

__all__ = ["PingSchedule", "Pinged"]

logger = logging.getLogger("legato.server")


class Pinged(Protocol):
    def _send_ping(self) -> None: ...


class PingSchedule:
    """Due pings by interval."""

    __slots__ = ("loop", "_due", "_timers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: dict[float, deque[list[Any]]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}

    def add(self, interval: float, session: Pinged) -> list[Any]:
        """``session._send_ping()`` in ``interval`` seconds; returns the entry to cancel."""
        entry: list[Any] = [self.loop.time() + interval, session]
        due = self._due.get(interval)
        if due is None:
            due = self._due[interval] = deque()
        due.append(entry)
        if interval not in self._timers:
            self._timers[interval] = self.loop.call_at(entry[0], self._fire, interval)
        return entry

    @staticmethod
    def cancel(entry: list[Any]) -> None:
        entry[1] = None  # the session is let go now, the entry when it comes due

    def _fire(self, interval: float) -> None:
        due = self._due[interval]
        now = self.loop.time() + 0.001  # a timer may fire a hair before its deadline
        while due and due[0][0] <= now:
            session = due.popleft()[1]
            if session is not None:
                try:
                    session._send_ping()
                except Exception:  # noqa: BLE001 - one connection's bug, not the others'
                    logger.exception("keepalive ping failed")
        while due and due[0][1] is None and due[0][0] <= now + 1.0:
            due.popleft()  # cancelled and due soon: not worth a wake-up of their own
        if due:
            self._timers[interval] = self.loop.call_at(due[0][0], self._fire, interval)
        else:
            del self._timers[interval]
            del self._due[interval]

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._due.clear()
