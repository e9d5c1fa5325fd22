"""Fixtures for server tests: a real legato server on a free loopback port, run in a
background thread with its own event loop (asyncio or uvloop), plus small ASGI apps."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ports import free_port, port_is_open  # noqa: F401 - the server tests import them here
from serving import RunningServer, run_server  # noqa: F401 - the server tests import them here


LOOPS = ["asyncio", "uvloop"]


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


async def serve_lifespan(receive: Any, send: Any) -> None:
    """Answer the ASGI lifespan protocol: startup and shutdown both succeed."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """The whole request body of an ASGI http scope."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """HTTP: echoes method, path and body. WebSocket: accepts and echoes every message."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] == "http":
        payload = f"{scope['method']} {scope['path']} ".encode() + await read_body(receive)
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


# ------------------------------------------------------------ raw WebSocket helpers
# A hand-driven client for what libraries will not do on purpose: never answer a ping,
# never answer a Close, hold a handshake open. Frames are built and parsed here from
# RFC 6455 §5.2 directly, not with legato's own protocol code.


def open_raw_websocket(port: int, path: str = "/", headers: tuple[tuple[str, str], ...] = (),
                       timeout: float = 5.0) -> tuple[socket.socket, bytes, bytes]:
    """Complete a WebSocket handshake over a plain socket (no extensions offered).

    Returns the socket, the response head, and any bytes that came after the head.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", *(f"{n}: {v}" for n, v in headers)]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return sock, head, rest


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (RFC 6455 §5.2, §5.3: clients MUST mask)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        header = bytes([first, 0x80 | size])
    elif size < 1 << 16:
        header = bytes([first, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([first, 0x80 | 127]) + size.to_bytes(8, "big")
    key = os.urandom(4)
    stream = (key * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")
    return header + key + masked


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Complete unmasked server frames in ``data`` as (opcode, fin, payload)."""
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        first, second = data[pos], data[pos + 1]
        size, pos2 = second & 0x7F, pos + 2
        if size == 126:
            size, pos2 = int.from_bytes(data[pos2:pos2 + 2], "big"), pos2 + 2
        elif size == 127:
            size, pos2 = int.from_bytes(data[pos2:pos2 + 8], "big"), pos2 + 8
        if pos2 + size > len(data):
            break
        frames.append((first & 0x0F, bool(first & 0x80), data[pos2:pos2 + size]))
        pos = pos2 + size
    return frames


def close_code_of(payload: bytes) -> int | None:
    """The status code of a Close frame payload (RFC 6455 §5.5.1), None if it has none."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


# ------------------------------------------------------- `legato run` as a subprocess


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def child_pids(pid: int) -> list[int]:
    """Live children of ``pid`` (read from /proc, so no extra dependency)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                children.append(int(entry))
    return children


@dataclass
class LegatoProcess:
    """A ``python -m legato run ...`` subprocess and where to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM to the process (by its PID), then its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@contextmanager
def legato_run(cwd: Path, target: str, *options: str, scheme: str = "http",
               ready_timeout: float = 20.0) -> Iterator[LegatoProcess]:
    """Run ``python -m legato run target --port P *options`` in ``cwd`` until it accepts
    connections; on the way out stop it and every process it started, by PID."""
    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "legato", "run", target, "--port", str(port), *options]

    with serving_process(cwd, command, scheme=scheme, ready_timeout=ready_timeout) as running:
        yield running


@contextmanager
def serving_process(cwd: Path, command: Callable[[int], list[str]], *, scheme: str = "http",
                    ready_timeout: float = 20.0) -> Iterator[LegatoProcess]:
    """Run ``command(port)`` (a server listening on 127.0.0.1:port) in ``cwd`` until it
    accepts connections; on the way out stop it and every process it started, by PID."""
    port = free_port()
    log_path = cwd / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(port), cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    running = LegatoProcess(proc, port, log_path, scheme)
    descendants: set[int] = set()
    try:
        deadline = time.monotonic() + ready_timeout
        while not port_is_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{running.output()}")
            time.sleep(0.05)
        descendants.update(child_pids(proc.pid))
        yield running
    finally:
        descendants.update(child_pids(proc.pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in descendants:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
