"""Graceful shutdown (docs/server.md "Shutdown", SPEC S4) and the ``legato run`` command
(SPEC S1), the latter as a real subprocess: signals, workers, reload, TLS.

Subprocesses are stopped by their PID in ``legato_run``'s ``finally`` (conftest), and
every process they started is looked up in /proc and stopped by PID too.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from legato.server.config import ServerConfig
from legato.server.serve import CannotServe, Server

from conftest import (
    RunningServer,
    child_pids,
    is_running,
    legato_run,
    port_is_open,
    read_response,
)

# ------------------------------------------------------------- shutdown, in process


class ShutdownApp:
    """Records what it sees in ``seen``: lifespan events, requests starting, disconnects."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def wait_for(self, name: str, timeout: float = 3.0) -> tuple[Any, ...]:
        while True:
            event = self.seen.get(timeout=timeout)
            if event[0] == name:
                return event

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                self.seen.put((kind,))
                await send({"type": kind + ".complete"})
                if kind == "lifespan.shutdown":
                    return
        path = scope["path"]
        self.seen.put((path + " started",))
        if scope["type"] == "http":
            await asyncio.sleep({"/slow": 0.4, "/forever": 30}.get(path, 0))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"finished " + path.encode()})
            return
        await receive()
        if path == "/hold":
            await asyncio.sleep(30)  # never accepts
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        self.seen.put(("disconnect", message["code"]))


def stop_in_background(server: RunningServer) -> None:
    """Ask for shutdown without waiting for it (the test watches what clients see)."""
    server.call(server.server.request_exit)


def test_shutdown_closes_open_websockets_with_1001(
        serve: Callable[..., RunningServer]) -> None:
    """SPEC S4: every WebSocket gets Close 1001 "going away" (RFC 6455 §7.4.1)."""
    app = ShutdownApp()
    server = serve(app)

    async def main() -> int:
        async with connect(server.ws_url + "/ws", proxy=None) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            stop_in_background(server)
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 3)
            assert info.value.rcvd is not None
            return info.value.rcvd.code

    assert asyncio.run(main()) == 1001
    server.thread.join(3)
    assert not server.thread.is_alive()  # the client answered: no need to wait it out
    assert app.wait_for("disconnect") == ("disconnect", 1001)
    app.wait_for("lifespan.shutdown")


def test_shutdown_answers_a_handshake_in_flight_with_503(
        serve: Callable[..., RunningServer]) -> None:
    app = ShutdownApp()
    server = serve(app)

    async def main() -> int:
        opening = asyncio.ensure_future(connect(server.ws_url + "/hold", proxy=None))
        await asyncio.to_thread(app.wait_for, "/hold started")
        stop_in_background(server)
        with pytest.raises(InvalidStatus) as info:
            await asyncio.wait_for(opening, 3)
        return info.value.response.status_code

    assert asyncio.run(main()) == 503
    server.thread.join(3)
    assert not server.thread.is_alive()


def test_shutdown_lets_a_request_in_flight_finish_and_stops_accepting(
        serve: Callable[..., RunningServer]) -> None:
    app = ShutdownApp()
    server = serve(app, shutdown_timeout=3)
    port = server.port
    with server.connect() as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        app.wait_for("/slow started")
        stop_in_background(server)
        time.sleep(0.1)
        assert not port_is_open(port)  # step 1: stop accepting
        response = read_response(sock, timeout=3)
    assert response.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in response.lower()  # step 3: then its connection closes
    assert response.endswith(b"finished /slow")
    server.thread.join(3)
    assert not server.thread.is_alive()
    app.wait_for("lifespan.shutdown")  # step 5: after the request finished


def test_shutdown_aborts_a_request_that_outlives_shutdown_timeout(
        serve: Callable[..., RunningServer]) -> None:
    app = ShutdownApp()
    server = serve(app, shutdown_timeout=0.3)
    with server.connect() as sock:
        sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        app.wait_for("/forever started")
        started = time.monotonic()
        stop_in_background(server)
        assert read_response(sock, timeout=3) == b""  # cut, no half response
        assert time.monotonic() - started < 2.0
    server.thread.join(3)
    assert not server.thread.is_alive()
    app.wait_for("lifespan.shutdown")  # runs even after an abort


def test_shutdown_closes_idle_keepalive_connections_at_once(
        serve: Callable[..., RunningServer]) -> None:
    app = ShutdownApp()
    server = serve(app)
    with server.connect() as sock:
        sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(3)
        assert sock.recv(65536).endswith(b"finished /quick")
        started = time.monotonic()
        stop_in_background(server)
        assert read_response(sock, timeout=3) == b""
        assert time.monotonic() - started < 1.0
    server.thread.join(3)
    assert not server.thread.is_alive()


# --------------------------------------------------------------- the command line

APP_MODULE = '''
import os
import time

VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            else:
                open(f"shutdown-{{os.getpid()}}", "w").close()
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    if scope["type"] == "http":
        if scope["path"] == "/busy":
            time.sleep(0.05)  # blocks this worker, so another one accepts the next
        body = f"version={{VERSION}} pid={{os.getpid()}} scheme={{scope['scheme']}}"
        await send({{"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]}})
        await send({{"type": "http.response.body", "body": body.encode()}})
        return
    await receive()
    await send({{"type": "websocket.accept"}})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({{"type": "websocket.send",
                    "text": f"{{message.get('text')}} echoed"}})
'''


def write_app(directory: Path, version: int = 1) -> None:
    (directory / "cliapp.py").write_text(textwrap.dedent(APP_MODULE.format(version=version)))


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def get(url: str, **options: Any) -> str:
    return httpx.get(url, timeout=10, trust_env=False, **options).text


def fields(body: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in body.split())


async def ws_echo(url: str, text: str, **options: Any) -> str:
    async with connect(url, proxy=None, open_timeout=10, **options) as ws:
        await ws.send(text)
        return await asyncio.wait_for(ws.recv(), 10)  # type: ignore[no-any-return]


def test_cli_serves_http_and_websocket_and_exits_0_on_sigterm(app_dir: Path) -> None:
    """SPEC S4: SIGTERM closes WebSockets with 1001, runs lifespan shutdown, exits 0."""
    with legato_run(app_dir, "cliapp:app") as legato:
        assert fields(get(legato.url + "/"))["version"] == "1"
        assert asyncio.run(ws_echo(legato.ws_url, "hello")) == "hello echoed"

        async def sigterm_while_connected() -> int:
            async with connect(legato.ws_url, proxy=None) as ws:
                legato.proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 10)
                assert info.value.rcvd is not None
                return info.value.rcvd.code

        assert asyncio.run(sigterm_while_connected()) == 1001
        assert legato.proc.wait(10) == 0  # (no second signal: that one would force-quit)
        assert not port_is_open(legato.port)
        assert (app_dir / f"shutdown-{legato.proc.pid}").exists()  # lifespan shutdown ran


def test_cli_workers_serve_from_two_processes_and_all_stop_on_sigterm(
        app_dir: Path) -> None:
    with legato_run(app_dir, "cliapp:app", "--workers", "2") as legato:
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        with ThreadPoolExecutor(4) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                bodies = pool.map(lambda _: get(legato.url + "/busy"), range(8))
                pids.update(fields(body)["pid"] for body in bodies)
        assert len(pids) == 2, f"only worker(s) {pids} answered"
        assert str(legato.proc.pid) not in pids  # the supervisor serves nothing itself
        assert legato.terminate() == 0
        assert not port_is_open(legato.port)
        time.sleep(0.2)
        assert [pid for pid in pids if is_running(int(pid))] == []
        for pid in pids:  # each worker ran its own graceful shutdown
            assert (app_dir / f"shutdown-{pid}").exists()


def test_cli_workers_listen_on_a_socket_each_and_get_even_shares_of_connections(
        app_dir: Path) -> None:
    """SO_REUSEPORT: the kernel spreads connections over the workers' own sockets by
    address hash, so long-lived connections do not pile up on whichever worker was idle
    (on one shared socket, 4 workers got 42 to 911 of 2,000: docs/design.md)."""
    with legato_run(app_dir, "cliapp:app", "--workers", "4") as legato:
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while len(seen) < 4 and time.monotonic() < deadline:  # every worker listening
            seen.add(fields(get(legato.url + "/"))["pid"])
        assert len(seen) == 4
        shares = Counter(fields(get(legato.url + "/"))["pid"] for _ in range(400))
        # 100 each on average; a binomial(400, 1/4) is below 50 once in ~10^9 runs.
        assert sorted(shares.values())[0] >= 50, shares
        assert legato.terminate() == 0


def test_cli_a_second_server_on_a_port_that_workers_hold_is_refused(app_dir: Path) -> None:
    """SO_REUSEPORT would let a second server of the same user share the port silently:
    it is refused as before, in one line."""
    with legato_run(app_dir, "cliapp:app", "--workers", "2") as legato:
        for workers in ("1", "2"):
            result = legato_cli(app_dir, "cliapp:app", "--port", str(legato.port),
                                "--workers", workers)
            assert result.returncode == 1, result.stderr
            assert "is already in use" in result.stderr.strip().splitlines()[-1]
        assert fields(get(legato.url + "/"))["version"] == "1"  # the first one serves on
        assert legato.terminate() == 0


def test_cli_no_reuse_port_workers_share_one_listening_socket(app_dir: Path) -> None:
    with legato_run(app_dir, "cliapp:app", "--workers", "2", "--no-reuse-port") as legato:
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        with ThreadPoolExecutor(4) as pool:
            while len(pids) < 2 and time.monotonic() < deadline:
                bodies = pool.map(lambda _: get(legato.url + "/busy"), range(8))
                pids.update(fields(body)["pid"] for body in bodies)
        assert len(pids) == 2
        assert legato.terminate() == 0


def test_cli_no_ws_serves_the_upgrade_request_as_plain_http(app_dir: Path) -> None:
    """SPEC R8: with --no-ws the app gets the upgrade request as an http scope."""
    with legato_run(app_dir, "cliapp:app", "--no-ws") as legato:
        with pytest.raises(InvalidStatus) as info:
            asyncio.run(ws_echo(legato.ws_url, "hello"))
        assert info.value.response.status_code == 200
        assert info.value.response.body.startswith(b"version=1 ")
        assert legato.terminate() == 0


def test_cli_reload_serves_the_new_code_after_the_module_changes(app_dir: Path) -> None:
    with legato_run(app_dir, "cliapp:app", "--reload") as legato:
        assert fields(get(legato.url + "/"))["version"] == "1"
        time.sleep(0.3)  # let the watcher start before the change
        write_app(app_dir, version=2)
        deadline = time.monotonic() + 20
        version = "1"
        while version != "2" and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                version = fields(get(legato.url + "/"))["version"]
            except httpx.TransportError:
                pass  # between the old worker and the new one
        assert version == "2"
        assert asyncio.run(ws_echo(legato.ws_url, "reloaded")) == "reloaded echoed"
        assert legato.terminate() == 0


def test_cli_serves_https_and_wss_with_a_certificate(app_dir: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = app_dir / "cert.pem", app_dir / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with legato_run(app_dir, "cliapp:app", "--ssl-certfile", str(certfile),
                    "--ssl-keyfile", str(keyfile), scheme="https") as legato:
        assert legato.url.startswith("https://")
        assert fields(get(legato.url + "/", verify=client))["scheme"] == "https"
        assert asyncio.run(ws_echo(legato.ws_url, "secret", ssl=client)) == "secret echoed"
        with pytest.raises(httpx.TransportError):  # plain HTTP on the TLS port fails
            get(legato.url.replace("https", "http") + "/")
        assert legato.terminate() == 0


@pytest.mark.parametrize(("target", "expected"), [
    ("nosuchmodule:app", "nosuchmodule"),
    ("cliapp:nosuchattribute", "nosuchattribute"),
    ("cliapp", "module:attribute"),
])
def test_cli_bad_target_exits_nonzero_with_a_clear_message(
        app_dir: Path, target: str, expected: str) -> None:
    result = subprocess.run([sys.executable, "-m", "legato", "run", target, "--port", "0"],
                            cwd=app_dir, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    assert f"cannot load {target!r}" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_exits_nonzero_when_the_app_fails_lifespan_startup(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(textwrap.dedent('''
        async def app(scope, receive, send):
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
    '''))
    result = subprocess.run([sys.executable, "-m", "legato", "run", "failing:app",
                             "--port", "0"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=20)
    assert result.returncode != 0
    assert "startup failed" in result.stderr and "no database" in result.stderr


def test_cli_bad_target_with_workers_exits_nonzero_instead_of_respawning(
        app_dir: Path) -> None:
    """A target that cannot load in any worker is not "a worker that died": restarting
    it forever serves nothing, so the supervisor gives up with an error."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", "nosuchmodule:app", "--workers", "2",
         "--port", "0"], cwd=app_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, stderr = proc.communicate(timeout=8)
        assert proc.returncode != 0
        assert b"nosuchmodule" in stderr
    finally:
        if proc.poll() is None:
            children = child_pids(proc.pid)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pid in children:
                if is_running(pid):
                    os.kill(pid, signal.SIGKILL)


# ---------------------------------------------- S1: where to serve, said clearly (issue 13)

def legato_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "legato", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


@contextmanager
def busy_port() -> Iterator[int]:
    """A port another server listens on (held by this test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("port", ["99999", "65536", "-1", "http"])
def test_S1_cli_refuses_a_port_outside_0_to_65535_with_a_usage_error(
        app_dir: Path, port: str) -> None:
    """asyncio wraps 99999 to 34463 (modulo 65536): the server would run unseen."""
    result = legato_cli(app_dir, "cliapp:app", "--port", port)
    assert result.returncode == 2  # argparse's usage error
    assert f"argument --port: {port!r} is not a port: use 0 to 65535" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("option", "value"), [
    ("--workers", "0"), ("--workers", "-2"), ("--max-connections", "0"),
    ("--shutdown-timeout", "-1"), ("--ws-ping-interval", "nan"), ("--max-body-size", "1.5"),
])
def test_S1_cli_refuses_counts_and_durations_the_server_would_misread(
        app_dir: Path, option: str, value: str) -> None:
    result = legato_cli(app_dir, "cliapp:app", "--port", "0", option, value)
    assert result.returncode == 2
    assert f"argument {option}: {value!r} is not" in result.stderr


@pytest.mark.parametrize("workers", [None, 2])
def test_S1_app_run_refuses_a_port_outside_0_to_65535(workers: int | None) -> None:
    from legato import App  # noqa: PLC0415

    options = {"workers": workers} if workers else {}
    with pytest.raises(ValueError, match=r"port must be an integer from 0 to 65535.*99999"):
        App().run(port=99999, **options)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_S1_cli_port_in_use_says_which_in_one_line_and_exits_nonzero(
        app_dir: Path, workers: str) -> None:
    with busy_port() as port:
        result = legato_cli(app_dir, "cliapp:app", "--port", str(port), "--workers", workers)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"legato: 127.0.0.1:{port} is already in use (another server?); "
        "stop it or choose another --port")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_S1_app_run_refuses_fewer_than_one_worker(workers: Any) -> None:
    from legato import App  # noqa: PLC0415

    with pytest.raises(ValueError, match=f"workers must be a whole number .*{workers}"):
        App().run(port=0, workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_S1_app_run_port_in_use_says_which_in_one_line_and_exits_1(
        tmp_path: Path, workers: int) -> None:
    (tmp_path / "runapp.py").write_text(textwrap.dedent(f'''
        import sys
        from legato import App

        app = App()

        if __name__ == "__main__":
            app.run(port=int(sys.argv[1]), workers={workers})
    '''))
    with busy_port() as port:
        result = subprocess.run([sys.executable, "runapp.py", str(port)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"legato: 127.0.0.1:{port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_S1_a_server_that_cannot_bind_undoes_its_lifespan_startup() -> None:
    app = ShutdownApp()
    with busy_port() as port:
        with pytest.raises(CannotServe, match=f"127.0.0.1:{port} is already in use"):
            asyncio.run(Server(app, ServerConfig(port=port)).serve())
    assert app.wait_for("lifespan.startup") and app.wait_for("lifespan.shutdown")


def test_S1_cli_access_log_logs_websocket_open_and_close(app_dir: Path) -> None:
    with legato_run(app_dir, "cliapp:app", "--access-log") as legato:
        assert asyncio.run(ws_echo(legato.ws_url + "/chat?room=1", "hi")) == "hi echoed"
        deadline = time.monotonic() + 10
        while "closed 1000" not in legato.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        output = legato.output()
    assert '"WebSocket /chat?room=1" open subprotocol=-' in output
    assert re.search(r'"WebSocket /chat\?room=1" closed 1000 after [\d.]+ s, '
                     r"\d+ B in, \d+ B out", output), output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_S1_cli_tls_files_that_do_not_load_say_which_in_one_line(
        app_dir: Path, workers: str) -> None:
    (app_dir / "garbage.pem").write_text("not a certificate\n")
    for files, reason in [(["missing.pem", "missing.key"], "No such file or directory"),
                          (["garbage.pem"], "PEM")]:
        options = ["--ssl-certfile", files[0]] + (["--ssl-keyfile", files[1]]
                                                  if len(files) > 1 else [])
        result = legato_cli(app_dir, "cliapp:app", "--port", "0", "--workers", workers,
                            *options)
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"legato: cannot use the TLS certificate {files[0]}")
        assert reason in last and "Traceback" not in result.stderr
        assert "starting another" not in result.stderr  # no worker crash loop
