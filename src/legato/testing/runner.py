"""One running in-memory server: a :class:`MemoryServer` on its :class:`LoopThread`.

A TestClient starts one on first use (or on entering ``with``) and stops it in
``close()``. Stopping is idempotent and bounded, so it also serves as the finaliser of
a client that was never closed.

The client is not the only user: ``TestClient(app).websocket_connect("/ws")`` drops the
client at once and keeps only the session. So every user (the client, each WebSocket
session) holds the server with :meth:`Runner.hold`, and the server stops when the last
of them releases it or is garbage-collected: no loop outlives its users, and none stops
under one.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..server.config import ServerConfig
from ..server.state import ASGIApp
from .loop import LoopThread
from .server import MemoryServer

__all__ = ["Runner", "warn_in_test"]

T = TypeVar("T")
# Seconds beyond a coroutine's own deadlines before we conclude the loop is stuck.
_GUARD_SLACK = 2.0


class Runner:
    """The server of one TestClient and the thread its event loop runs in."""

    def __init__(self, app: ASGIApp, config: ServerConfig, *, timeout: float,
                 raise_app_errors: bool) -> None:
        self.timeout = timeout
        self.thread = LoopThread()
        self.server = MemoryServer(app, config, self.thread.loop,
                                   raise_app_errors=raise_app_errors)
        self.lifespan_started = False
        self._users = 0
        self._users_lock = threading.Lock()

    def hold(self, user: object) -> weakref.finalize[Any, Any]:
        """Count ``user`` as a user of this server until the returned finaliser is
        called (release) or ``user`` is collected; the last release stops the server.
        ``detach()`` the finaliser to forget ``user`` without releasing (a forced stop)."""
        with self._users_lock:
            self._users += 1
        return weakref.finalize(user, self._release)

    def _release(self) -> None:
        with self._users_lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop. Coroutines bound their own stages by ``timeout``
        (at most two of them in a row); the guard only catches a loop that is stuck."""
        return self.thread.run(coro, 2 * self.timeout + _GUARD_SLACK)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.thread.call(fn, *args, guard=self.timeout + _GUARD_SLACK)

    def startup(self) -> None:
        """Run the app's lifespan startup; raises what made it fail."""
        if not self.lifespan_started:
            self.run(self._startup())
            self.lifespan_started = True

    async def _startup(self) -> None:
        try:
            await _within(self.server.startup(), self.timeout,
                          "the application's lifespan startup to complete")
        except BaseException:
            self.server.lifespan = None
            raise

    def stop(self) -> BaseException | None:
        """Shut the server down and stop the loop; return a lifespan shutdown failure."""
        if not self.thread.alive:
            return None
        try:
            failure = self.run(self.server.shutdown(self.timeout))
        except (TimeoutError, RuntimeError) as exc:
            failure = exc
        finally:
            self.thread.stop()
        return failure


async def _within(coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    try:
        return await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}") from None


def warn_in_test(message: str) -> None:
    """A ``RuntimeWarning`` attributed to the test's line, not to legato's frames."""
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is our caller
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("legato."):
        frame = frame.f_back
        level += 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)
