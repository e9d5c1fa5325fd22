"""W15: every App and route setting holds on every entry point.

The matrix: each setting below × ``app.run()``, ``app.run(workers=2)``, ``legato run
module:app``, ``legato run --workers 2`` (real processes, real sockets), the TestClient,
and uvicorn for the settings the App enforces itself (under another ASGI server the
server owns keepalive and the frame reader: docs/server.md "Settings and entry points").

| setting                                  | legato's server (4 ways) | TestClient | uvicorn |
|------------------------------------------|--------------------------|------------|---------|
| App ping_interval / ping_timeout         | yes                      | -          | -       |
| route ping_interval=0 (off)              | yes                      | -          | -       |
| App max_message_size                     | yes                      | yes        | yes     |
| route max_message_size                   | yes                      | yes        | yes     |
| App max_body_size above the server's     | yes                      | yes        | yes     |
| App / route allowed_origins              | yes                      | yes        | yes     |
| a server flag for a setting the App left | legato run (both)        | -          | -       |
"""

from __future__ import annotations

import base64
import importlib
import os
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import serving_process

from legato import TestClient, WebSocketDenied

APP_MODULE = '''
import sys

from legato import App, Request

MiB = 1 << 20
app = App(ping_interval=0.4, ping_timeout=0.4, max_message_size=1000,
          max_body_size=2 * MiB, allowed_origins=["https://app.example"])


async def echo(ws):
    async for message in ws:
        await ws.send(message)


app.websocket("/ws")(echo)
app.websocket("/quiet", ping_interval=0)(echo)
app.websocket("/small", max_message_size=100)(echo)
app.websocket("/partner", allowed_origins=["https://partner.example"])(echo)


@app.post("/upload")
async def upload(request: Request):
    return {"size": len(await request.body())}


#: An App that leaves keepalive at its defaults: a server flag sets it.
plain = App()
plain.websocket("/ws")(echo)

if __name__ == "__main__":
    app.run(port=int(sys.argv[1]), workers=int(sys.argv[2]) if len(sys.argv) > 2 else 1)
'''

ENTRY_POINTS = ["app.run", "app.run-workers", "legato-run", "legato-run-workers"]
ASGI_ENTRY_POINTS = [*ENTRY_POINTS, "testclient", "uvicorn"]


def command(entry: str) -> Callable[[int], list[str]]:
    python = sys.executable
    commands: dict[str, Callable[[int], list[str]]] = {
        "app.run": lambda port: [python, "settingsapp.py", str(port)],
        "app.run-workers": lambda port: [python, "settingsapp.py", str(port), "2"],
        "legato-run": lambda port: [python, "-m", "legato", "run", "settingsapp:app",
                                    "--port", str(port)],
        "legato-run-workers": lambda port: [python, "-m", "legato", "run", "settingsapp:app",
                                            "--port", str(port), "--workers", "2"],
        "uvicorn": lambda port: [python, "-m", "uvicorn", "settingsapp:app", "--port",
                                 str(port), "--log-level", "warning"],
    }
    return commands[entry]


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("settings")
    (directory / "settingsapp.py").write_text(textwrap.dedent(APP_MODULE))
    return directory


class SocketClient:
    """The checks' client over real sockets: httpx and the `websockets` library."""

    def __init__(self, port: int) -> None:
        self.port = port

    def post(self, path: str, body: bytes) -> int:
        return httpx.post(f"http://127.0.0.1:{self.port}{path}", content=body, timeout=10,
                          trust_env=False).status_code

    @contextmanager
    def websocket(self, path: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
        try:
            with ws_sync.connect(f"ws://127.0.0.1:{self.port}{path}", open_timeout=10,
                                 close_timeout=2, additional_headers=headers) as conn:
                yield SocketWebSocket(conn)
        except InvalidStatus as exc:
            raise WebSocketDenied(exc.response.status_code) from None


class SocketWebSocket:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def echo(self, text: str) -> str | int:
        """The echo of ``text``, or the close code when the server closed instead."""
        self.conn.send(text)
        try:
            return str(self.conn.recv(10))
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            return exc.rcvd.code


class InProcessClient:
    """The same checks through the TestClient, as Starlette's docs use it."""

    def __init__(self, app: Any) -> None:
        self.client = TestClient(app)

    def post(self, path: str, body: bytes) -> int:
        return self.client.post(path, content=body).status_code

    @contextmanager
    def websocket(self, path: str, headers: dict[str, str] | None = None) -> Iterator[Any]:
        with self.client.websocket_connect(path, headers=headers) as session:
            yield InProcessWebSocket(session)


class InProcessWebSocket:
    def __init__(self, session: Any) -> None:
        self.session = session

    def echo(self, text: str) -> str | int:
        from legato import WebSocketDisconnect

        self.session.send_text(text)
        try:
            return str(self.session.receive_text())
        except WebSocketDisconnect as exc:
            return exc.code


@pytest.fixture(scope="module", params=ASGI_ENTRY_POINTS)
def served(request: pytest.FixtureRequest, app_dir: Path) -> Iterator[tuple[str, Any]]:
    """The settings app on one entry point, shared by this module's checks."""
    entry = str(request.param)
    if entry == "testclient":
        sys.path.insert(0, str(app_dir))
        try:
            module = importlib.import_module("settingsapp")
        finally:
            sys.path.remove(str(app_dir))
        client = InProcessClient(module.app)
        with client.client:
            yield entry, client
        sys.modules.pop("settingsapp", None)
        return
    with serving_process(app_dir, command(entry)) as process:
        yield entry, SocketClient(process.port)


#: Keepalive is the transport owner's: only legato's server (docs/server.md).
on_legato_server = pytest.mark.parametrize("served", ENTRY_POINTS, indirect=True)


# ----------------------------------------------------------------- raw keepalive peer


@contextmanager
def silent_peer(port: int, path: str) -> Iterator[socket.socket]:
    """A WebSocket client that completes the handshake and then never answers."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock


def frames_until_closed(sock: socket.socket, within: float) -> tuple[list[int], bool]:
    """Opcodes of the server frames read for ``within`` s, and whether TCP was closed."""
    opcodes: list[int] = []
    data = b""
    deadline = time.monotonic() + within
    closed = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):  # small frames only
            opcodes.append(data[0] & 0x0F)
            data = data[2 + (data[1] & 0x7F):]
    return opcodes, closed


# ------------------------------------------------------------------------- the matrix


@on_legato_server
def test_W15_the_apps_keepalive_pings_and_drops_a_silent_peer(served: tuple[str, Any]) -> None:
    _, client = served
    with silent_peer(client.port, "/ws") as sock:
        # ping_interval 0.4 s + ping_timeout 0.4 s: a Ping (0x9), then the end (the
        # server's default 20 s + 20 s would show nothing in this time).
        opcodes, closed = frames_until_closed(sock, within=6.0)
    assert opcodes[:1] == [0x9], opcodes
    assert closed


@on_legato_server
def test_W15_a_routes_own_keepalive_beats_the_apps(served: tuple[str, Any]) -> None:
    _, client = served
    with silent_peer(client.port, "/quiet") as sock:  # ping_interval=0: no keepalive
        opcodes, closed = frames_until_closed(sock, within=1.5)
    assert (opcodes, closed) == ([], False)


def test_W15_the_apps_max_message_size_closes_1009_above_it(
        served: tuple[str, Any]) -> None:
    _, client = served
    with client.websocket("/ws") as ws:
        assert ws.echo("a" * 1000) == "a" * 1000
        assert ws.echo("a" * 1001) == 1009


def test_W15_a_routes_max_message_size_beats_the_apps(served: tuple[str, Any]) -> None:
    _, client = served
    with client.websocket("/small") as ws:
        assert ws.echo("a" * 100) == "a" * 100
        assert ws.echo("a" * 101) == 1009


def test_W15_the_apps_max_body_size_holds_above_the_servers_default(
        served: tuple[str, Any]) -> None:
    _, client = served
    assert client.post("/upload", b"x" * (3 << 19)) == 200  # 1.5 MiB: over the server's 1
    assert client.post("/upload", b"x" * ((2 << 20) + 1)) == 413


def test_W15_allowed_origins_of_the_app_and_the_route_hold(served: tuple[str, Any]) -> None:
    _, client = served
    with client.websocket("/ws", {"Origin": "https://app.example"}) as ws:
        assert ws.echo("hi") == "hi"
    with client.websocket("/partner", {"Origin": "https://partner.example"}) as ws:
        assert ws.echo("hi") == "hi"
    for path, origin in (("/ws", "https://evil.example"), ("/partner", "https://app.example")):
        with pytest.raises(WebSocketDenied) as info:
            with client.websocket(path, {"Origin": origin}):
                pass
        assert info.value.status_code == 403


@pytest.mark.parametrize("workers", ["1", "2"])
def test_W15_a_server_flag_sets_what_the_app_leaves_at_its_default(
        app_dir: Path, workers: str) -> None:
    def legato_run_plain(port: int) -> list[str]:
        return [sys.executable, "-m", "legato", "run", "settingsapp:plain", "--port",
                str(port), "--workers", workers, "--ws-ping-interval", "0.3",
                "--ws-ping-timeout", "0.3"]

    with serving_process(app_dir, legato_run_plain) as process:
        with silent_peer(process.port, "/ws") as sock:
            opcodes, closed = frames_until_closed(sock, within=6.0)
    assert opcodes[:1] == [0x9], opcodes
    assert closed


def test_W15_a_server_flag_that_the_app_overrides_is_logged(app_dir: Path) -> None:
    def legato_run_app(port: int) -> list[str]:
        return [sys.executable, "-m", "legato", "run", "settingsapp:app", "--port",
                str(port), "--ws-ping-interval", "5"]

    with serving_process(app_dir, legato_run_app) as process:
        with silent_peer(process.port, "/ws") as sock:  # the App's 0.4 s holds
            opcodes, _ = frames_until_closed(sock, within=3.0)
        assert opcodes[:1] == [0x9]
        assert "App(ping_interval=0.4) overrides the server's ws_ping_interval=5.0" in \
            process.output()


def test_W15_under_another_asgi_server_app_keepalive_is_said_to_be_the_servers(
        app_dir: Path) -> None:
    with serving_process(app_dir, command("uvicorn")) as process:
        assert SocketClient(process.port).post("/upload", b"x") == 200
        assert "ping_interval/ping_timeout are enforced by legato's server" in \
            process.output()
