"""Real servers for the client tests, each stopped by what started it (by PID):

* :func:`serve_in_thread`: legato's server on a free port, in a thread with its own loop;
* :class:`LegatoProcess`: ``legato run channel_apps:app`` (SIGTERM sends reconnect advice);
* :class:`RedisProcess`: a throwaway redis-server, so a hub outlives a server restart;
* :class:`StallingProxy`: a TCP proxy that can stop forwarding (a half-open connection).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ports import free_port, port_is_open


from serving import run_server

HERE = Path(__file__).parent
WS_PATH = "/_legato/ws"


@contextmanager
def serve_in_thread(app: Any, **settings: Any) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1:<free port>; yield the port; shut down gracefully."""
    with run_server(app, host="127.0.0.1", **settings) as running:
        yield running.port


class LegatoProcess:
    """``legato run channel_apps:app --port N`` in tests/client."""

    def __init__(self, port: int, hub: str, log: Path) -> None:
        self.port = port
        self.hub = hub
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{WS_PATH}"

    def start(self, timeout: float = 10.0) -> None:
        env = dict(os.environ, LEGATO_TEST_HUB=self.hub)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "legato", "run", "channel_apps:app", "--host",
                 "127.0.0.1", "--port", str(self.port)],
                cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"legato run did not start:\n{self.log.read_text()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful: reconnect advice, close 1012) and wait for the exit."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class RedisProcess:
    """A redis-server of the test's own, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not port_is_open(self.port):
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()


class _Proxy:
    """A TCP proxy on 127.0.0.1:<port>: subclasses pick the upstream per connection."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Any:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        raise NotImplementedError

    def _join(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
              up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
        self._writers += [writer, up_writer]
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
        with suppress(OSError):
            dst.close()


class StallingProxy(_Proxy):
    """Forwards 127.0.0.1:<port> to a server; :meth:`stall` stops forwarding on the
    connections open now (both ways), as a dead link or half-open TCP does."""

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self.stalled = False
        self.connections = 0
        self._stalled_pipes: list[tuple[asyncio.Event, asyncio.Event]] = []

    def stall(self, upstream: bool = True) -> None:
        """Stop forwarding on every connection open now (server to client; also client
        to server when ``upstream``); new connections forward."""
        for gates in self._stalled_pipes:
            gates[1].set()
            if upstream:
                gates[0].set()

    def drop(self) -> None:
        """Abort every connection open now (both ends see a reset)."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        gates = (asyncio.Event(), asyncio.Event())  # (upstream, downstream)
        self._stalled_pipes.append(gates)
        for src, dst, gate in ((reader, up_writer, gates[0]), (up_reader, writer, gates[1])):
            task = asyncio.ensure_future(self._gated_pipe(src, dst, gate))
            self._tasks.add(task)

    @staticmethod
    async def _gated_pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                          gate: asyncio.Event) -> None:
        with suppress(OSError):
            while True:
                data = await src.read(65536)
                if gate.is_set():
                    await asyncio.Event().wait()  # swallow: nothing gets through any more
                if not data:
                    dst.close()
                    return
                dst.write(data)


class UpgradeRefusingProxy(_Proxy):
    """An HTTP proxy that answers 403 to every request asking for ``Upgrade: websocket``
    (as some corporate proxies do) and forwards the others to ``target_port``.
    ``refuse = False`` lets upgrades through (the network healed)."""

    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self.refuse = True
        self.refused = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        if self.refuse and b"upgrade: websocket" in head.lower():
            self.refused += 1
            body = b"websockets are not allowed here"
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                         % (len(body), body))
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up_writer.write(head)
        self._join(reader, writer, up_reader, up_writer)


class RoundRobinProxy(_Proxy):
    """A TCP load balancer: each connection goes to the next backend that accepts it
    (a dead one is skipped). ``routes`` lists the backend port of every connection."""

    def __init__(self, backends: list[int]) -> None:
        super().__init__()
        self.backends = backends
        self.routes: list[int] = []
        self._next = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        for _ in range(len(self.backends)):
            port = self.backends[self._next % len(self.backends)]
            self._next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.routes.append(port)
            self._join(reader, writer, up_reader, up_writer)
            return
        writer.transport.abort()
