"""Fixtures for server tests: a real legato server on a free loopback port, run in a
background thread with its own event loop (asyncio or uvloop), plus small ASGI apps."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from legato.server import Server, ServerConfig
from legato.server.serve import new_event_loop

LOOPS = ["asyncio", "uvloop"]


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


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(loop_kind: str) -> Iterator[Callable[..., RunningServer]]:
    """``serve(app, **ServerConfig fields)`` starts a server that stops after the test."""
    stack: list[Any] = []

    def start(app: Any, **settings: Any) -> RunningServer:
        manager = run_server(app, loop_kind, **settings)
        stack.append(manager)
        return manager.__enter__()

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


# ------------------------------------------------------------------------- ASGI apps


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: echoes method, path and body. WebSocket: accepts and echoes every message."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload = f"{scope['method']} {scope['path']} ".encode() + body
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": payload})
        return
    await receive()
    subprotocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept",
                "subprotocol": subprotocols[0] if subprotocols else None})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read from a raw socket until the peer closes (or the timeout)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)
