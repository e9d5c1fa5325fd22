"""The test client's event loop, running in a daemon thread, and the calls into it.

Tests are synchronous and the server is asyncio, so the server (and the client end of
each in-memory connection) lives on a loop in its own thread; the test thread hands it
coroutines and waits for their results. Every wait is bounded: the coroutines time their
own stages out with a precise message, and :meth:`LoopThread.run` adds a guard in case
the loop itself is stuck (an app calling ``time.sleep`` or blocking I/O), so a broken
test fails and never hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a daemon thread, started at construction."""

    def __init__(self, name: str = "legato-testclient") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Whatever the shutdown left behind is cancelled, so nothing pending is
            # destroyed silently when the loop closes.
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], guard: float) -> T:
        """Run ``coro`` on the loop and return its result (or raise its exception).

        ``guard`` (seconds) bounds the wait in case the loop does not answer at all;
        ``TimeoutError`` then says so. Calling this from the loop thread would deadlock,
        so that raises ``RuntimeError``.
        """
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the TestClient cannot be used from inside the app it runs")
        if not self.alive:
            coro.close()
            raise RuntimeError("the TestClient's event loop has stopped")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(guard)
        except concurrent.futures.TimeoutError:
            if not future.done():
                future.cancel()
                raise TimeoutError(
                    f"the test client's event loop did not answer within {guard:g} s: is "
                    "the app blocking it (time.sleep, blocking I/O, a busy loop)?") from None
            raise  # a TimeoutError raised by the coroutine itself (3.11+: same class)

    def call(self, fn: Callable[..., T], *args: Any, guard: float = 5.0) -> T:
        """Run the plain function ``fn(*args)`` on the loop thread; return its result."""

        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop(), guard)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop and wait (bounded) for the thread; safe to call twice."""
        if self._thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # closed meanwhile
                return
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout)
