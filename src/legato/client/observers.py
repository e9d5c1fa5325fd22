"""Callbacks and async iterators over one kind of event (state changes, topic events).

Callbacks run synchronously in the connection's reader, in order, so they see events
exactly as the client applies them; one that returns an awaitable has it scheduled as a
task. A callback that raises is logged and never breaks the reader: a bug in a handler
must not cost every other topic its connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

from .queues import BoundedQueue, QueueClosed

__all__ = ["Observers", "Callback"]

logger = logging.getLogger("legato.client")

T = TypeVar("T")
Callback = Callable[[T], Any]

#: Events an iterator may fall behind by before the oldest are dropped (see queues.py).
DEFAULT_STREAM_LIMIT = 256

_background: set[asyncio.Task[Any]] = set()  # strong references until the tasks finish


def call_safely(callback: Callable[[T], Any], value: T) -> None:
    """Run one callback; schedule what it returns if awaitable; log what it raises."""
    try:
        result = callback(value)
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            _background.add(task)
            task.add_done_callback(_finished)
    except Exception:
        logger.exception("channel client: callback %r raised", callback)


def _finished(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("channel client: callback task raised", exc_info=task.exception())


class Observers(Generic[T]):
    """Who wants events of one kind: callbacks (``add``) and iterators (``stream``)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[T], Any]] = []
        self._streams: list[BoundedQueue[T]] = []
        self._closed = False

    def add(self, callback: Callable[[T], Any]) -> Callable[[], None]:
        """Register ``callback``; the returned function unregisters it."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def emit(self, value: T) -> None:
        for callback in list(self._callbacks):
            call_safely(callback, value)
        for stream in self._streams:
            stream.put(value)

    def stream(self, limit: int = DEFAULT_STREAM_LIMIT) -> AsyncIterator[T]:
        """Every event from the moment of this call (not of the first ``anext``) until
        :meth:`close`; at most ``limit`` are buffered for a slow iterator (older ones
        are dropped)."""
        queue: BoundedQueue[T] = BoundedQueue(limit)
        if self._closed:
            queue.close()
        else:
            self._streams.append(queue)
        return _Stream(self, queue)

    def close(self) -> None:
        """End every iterator (after what they buffered); callbacks stay registered."""
        self._closed = True
        for stream in self._streams:
            stream.close()

    def _forget(self, queue: BoundedQueue[T]) -> None:
        if queue in self._streams:
            self._streams.remove(queue)


class _Stream(AsyncIterator[T]):
    """One iterator's view of an :class:`Observers`; registered when made."""

    def __init__(self, owner: Observers[T], queue: BoundedQueue[T]) -> None:
        self._owner = owner
        self._queue = queue

    async def __anext__(self) -> T:
        try:
            return await self._queue.get()
        except QueueClosed:
            self._owner._forget(self._queue)
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving events (what is buffered is dropped)."""
        self._owner._forget(self._queue)
        self._queue.close()
