"""A legato server run in a thread of the test process (its own event loop, asyncio or
uvloop) on a free loopback port, for any test folder: tests/server's fixtures and
tests/client's live servers are both this one."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from legato.server import Server, ServerConfig
from legato.server.serve import new_event_loop

__all__ = ["RunningServer", "run_server"]


@dataclass
class RunningServer:
    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A raw TCP connection to the server."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock

    def call(self, fn: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def stop(self, timeout: float = 30.0) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_exit)
            self.thread.join(timeout)


@contextmanager
def run_server(app: Any, loop_kind: str = "asyncio", **settings: Any) -> Iterator[RunningServer]:
    """Serve ``app`` on 127.0.0.1:<free port> until the block ends (graceful shutdown)."""
    config = ServerConfig(port=0, **settings)
    server = Server(app, config)
    loop = new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        started.set()
        await serving

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            failure.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    started.wait(10)
    if failure:
        raise failure[0]
    running = RunningServer(server, loop, thread)
    try:
        yield running
    finally:
        running.stop()
