"""Requests that wait for an answer, and what happens to them when a connection drops
(docs/channels.md, Reconnecting).

A request is encoded once (:mod:`.frames`); it gets a ``ref`` each time it is sent.
While the client is not ready (no connection, or topics still rejoining) publishes,
calls and presence queries wait in a bounded FIFO (``queue_limit``, default 100: past
it ``queue_full`` at once, so an app offline for an hour does not pile up an hour of
clicks). When a connection drops, what was in flight is sorted by what it may safely do:

===========  ==========================================================================
``pub``      resent after the rejoin with the same ``once``: the server drops a repeat
``presence`` resent (a read)
``call``     fails with ``disconnected``: it may or may not have run
``leave``    done: the server forgot the connection, and with it the membership
``join``     the topic rejoins (see :class:`~legato.client.topic.Topic`)
===========  ==========================================================================
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import DISCONNECTED, QUEUE_FULL, ChannelError

if TYPE_CHECKING:
    from .topic import Topic

__all__ = ["Kind", "Request", "Pending"]


class Kind(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"
    PUB = "pub"
    CALL = "call"
    PRESENCE = "presence"


_RESENT = frozenset({Kind.PUB, Kind.PRESENCE})


@dataclass(eq=False)
class Request:
    """One request: its encoded body (no ``ref``), who waits, and where it is."""

    kind: Kind
    body: str
    future: asyncio.Future[Any]
    topic: Topic | None = None
    #: loop.time() past which a call is abandoned (None: no deadline)
    deadline: float | None = None
    #: what the error messages call it ("call 'rooms.count'", "publish on 'room:a'")
    what: str = ""
    ref: int | None = field(default=None)

    @property
    def waiting(self) -> bool:
        """False once answered, failed, timed out or cancelled: never send it then."""
        return not self.future.done()

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Pending:
    """Requests in flight on the current connection, and those waiting for one."""

    def __init__(self, queue_limit: int) -> None:
        if queue_limit < 0:
            raise ValueError("queue_limit must be >= 0")
        self.queue_limit = queue_limit
        self.in_flight: dict[int, Request] = {}
        self._queued: deque[Request] = deque()  # made while not ready, in order
        self._resend: list[Request] = []  # in flight when a connection dropped, by ref

    def enqueue(self, request: Request) -> None:
        """Hold ``request`` until the client is ready; ``queue_full`` beyond the limit."""
        self._queued = deque(r for r in self._queued if r.waiting)
        if len(self._queued) >= self.queue_limit:
            raise ChannelError(QUEUE_FULL, f"{request.what}: {len(self._queued)} requests "
                               f"already wait for a connection (queue_limit)")
        self._queued.append(request)

    def sent(self, ref: int, request: Request) -> None:
        request.ref = ref
        self.in_flight[ref] = request

    def answered(self, ref: int) -> Request | None:
        return self.in_flight.pop(ref, None)

    def connection_lost(self) -> None:
        """Sort what was in flight (see the module docstring)."""
        for ref in sorted(self.in_flight):
            request = self.in_flight[ref]
            if request.kind in _RESENT:
                self._resend.append(request)
            elif request.kind is Kind.CALL:
                request.reject(ChannelError(
                    DISCONNECTED, f"the connection dropped while {request.what} was in "
                    "flight: it may or may not have run"))
            elif request.kind is Kind.LEAVE:
                request.resolve({})
        self.in_flight.clear()

    def to_send(self) -> Iterator[Request]:
        """What waits for the ready connection, oldest first: what was in flight when a
        connection dropped (it was made first), then what was queued. Taken out as it
        is iterated, so a drop in the middle leaves the rest for the next connection."""
        while self._resend or self._queued:
            request = self._resend.pop(0) if self._resend else self._queued.popleft()
            if request.waiting:
                yield request

    def fail_topic(self, topic: Topic, error: ChannelError) -> None:
        """``topic`` was left or refused: what waits to be (re)sent for it fails now
        instead of drawing ``not_joined`` from the server later."""
        for request in [*self._resend, *self._queued]:
            if request.topic is topic:
                request.reject(error)

    def fail_all(self, error: ChannelError) -> None:
        for request in [*self.in_flight.values(), *self._resend, *self._queued]:
            request.reject(error)
        self.in_flight.clear()
        self._resend.clear()
        self._queued.clear()
