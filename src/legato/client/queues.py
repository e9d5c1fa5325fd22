"""A receive buffer that never blocks the connection's reader.

One slow consumer must not stall every other topic on the connection (nor make the
heartbeat declare a healthy connection dead), so the reader never waits for a consumer:
when a buffer is full the **oldest** item is dropped and returned to the caller, which
reports it (for a topic: a ``Lost(reason="overflow")`` event). The newest messages are
the ones a live view needs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

__all__ = ["BoundedQueue", "QueueClosed"]

T = TypeVar("T")


class QueueClosed(Exception):
    """The queue was closed without an error and is empty."""


class BoundedQueue(Generic[T]):
    """FIFO of at most ``limit`` items; ``put`` never waits, ``get`` does."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a receive queue holds at least one item")
        self.limit = limit
        self._items: deque[T] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> T | None:
        """Append ``item``; return the oldest item when it had to be dropped for room."""
        if self._closed:
            return item
        dropped = self._items.popleft() if len(self._items) >= self.limit else None
        self._items.append(item)
        self._wake()
        return dropped

    async def get(self) -> T:
        """The next item. Once closed and drained: the close's error, or ``QueueClosed``."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise QueueClosed
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return self._items.popleft()

    def close(self, error: BaseException | None = None) -> None:
        """No more items; what is buffered is still handed out first."""
        if not self._closed:
            self._closed = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
