"""The ASGI lifespan protocol: startup before serving, shutdown after."""

from __future__ import annotations

import asyncio
from typing import Any

from .state import ASGIApp, logger

__all__ = ["Lifespan"]


class Lifespan:
    """Runs ``app({"type": "lifespan"})`` for the whole life of a server.

    mode "auto": an app that raises before answering startup does not support lifespan
    and is served anyway; "on": that is an error; "off": never called.
    """

    def __init__(self, app: ASGIApp, mode: str = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._startup = asyncio.get_running_loop().create_future()
        self._shutdown = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        self.supported = True

    async def startup(self) -> bool:
        """True when the server may start serving."""
        if self.mode == "off":
            return True
        self._task = asyncio.get_running_loop().create_task(self._run())
        await self._events.put({"type": "lifespan.startup"})
        await self._startup
        if self.failed is not None:
            logger.error("application startup failed: %s", self.failed)
            return False
        return True

    async def shutdown(self) -> None:
        if self._task is None or not self.supported or self._task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        await self._shutdown
        if self.failed is not None:
            logger.error("application shutdown failed: %s", self.failed)

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:  # noqa: BLE001
            if not self._startup.done():
                if self.mode == "auto":
                    self.supported = False
                    # Said at info level: a startup bug would otherwise pass unnoticed.
                    logger.info("ASGI lifespan unsupported by the app; serving without "
                                "it (%r)", exc)
                else:
                    self.failed = repr(exc)
                    logger.exception("exception in lifespan startup", exc_info=exc)
            else:
                self.failed = self.failed or repr(exc)
                logger.exception("exception in lifespan", exc_info=exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            for future in (self._startup, self._shutdown):
                if not future.done():
                    future.set_result(None)

    async def _receive(self) -> dict[str, Any]:
        return await self._events.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._startup.set_result(None)
        elif kind == "lifespan.startup.failed":
            self.failed = message.get("message", "") or "startup failed"
            self._startup.set_result(None)
        elif kind == "lifespan.shutdown.complete":
            self._shutdown.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            self.failed = message.get("message", "") or "shutdown failed"
            self._shutdown.set_result(None)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")
