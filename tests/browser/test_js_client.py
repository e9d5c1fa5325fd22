"""The JS client (clients/js/legato.js) in Chromium, loaded from the App's own
``/_legato/client.js``, against a real server process (``legato run`` and uvicorn, on
the memory hub and on Redis): its messages reach a peer nobody here wrote (the
`websockets` library speaking legato.v1 by hand) and back, calls and presence work, a
server restart (SIGTERM: advice, 1012) is survived with what was queued sent once
(docs/channels.md, "Reconnecting"), and behind a proxy that refuses WebSocket upgrades
the client falls back to SSE + POST ("The fallback transport")."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub.redis_servers import delete_prefix, session_redis
from ports import free_port, port_is_open

HERE = Path(__file__).parent
PACKAGE_SOURCE = HERE.parents[1] / "clients" / "js" / "legato.js"
CHROMIUM = "/usr/bin/chromium"
WAIT = 10.0  # seconds for anything to happen on a loaded machine

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium not installed")


#: How each server kind is started (from this folder).
COMMANDS = {
    "legato": [sys.executable, "-m", "legato", "run", "channels_app:app"],
    "uvicorn": [sys.executable, "-m", "uvicorn", "channels_app:app"],
}


class ServerProcess:
    """``channels_app:app`` under ``kind`` (legato run, uvicorn) on ``port`` with the
    hub ``hub``; stopped by its PID only."""

    def __init__(self, port: int, kind: str = "legato", hub: str = "memory://") -> None:
        self.port, self.kind, self.hub = port, kind, hub
        self.proc = subprocess.Popen(
            [*COMMANDS[kind], "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            cwd=HERE, env={**os.environ, "LEGATO_TEST_HUB": hub},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + WAIT
        while not port_is_open(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"the server did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(WAIT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


    def again(self) -> ServerProcess:
        """The same server started again (a restart: same port, kind and hub)."""
        return ServerProcess(self.port, self.kind, self.hub)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with session_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def hub(request: pytest.FixtureRequest) -> Iterator[str]:
    """``App(hub=...)``: the memory hub, or Redis with this test's own key prefix."""
    if request.param == "memory":
        yield "memory://"
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"legato-test-{uuid.uuid4().hex[:12]}"
    yield f"{url.removesuffix('/0')}/0?prefix={prefix}"
    delete_prefix(url, prefix)


@pytest.fixture(params=["legato", "uvicorn"])
def server(request: pytest.FixtureRequest, hub: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(free_port(), request.param, hub)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


# In the page: a client joined to `topic` (the base path resolves against the page),
# recording what happens in window.log.
JOIN = """async ([topic, name]) => {
  const client = window.client = new window.legato.Client("/_legato", { baseDelay: 100 });
  const log = window.log = [];
  client.on("state", (s, d) => log.push(["state", s, d ? d.code : null]));
  const room = window.room = client.join(topic, { data: { name } });
  room.on("message", (data, meta) => log.push(["message", data, meta.id]));
  room.on("joined", (m) => log.push(["joined", m.data.name]));
  room.on("left", (m) => log.push(["left", m.data.name]));
  room.on("lost", (info) => log.push(["lost", info.reason]));
  await new Promise((ok) => room.on("state", (s) => s === "joined" && ok()));
  return client.conn;
}"""


def open_page(browser: Any, port: int, topic: str, name: str) -> Any:
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_function("document.title === 'ready'", timeout=WAIT * 1000)
    page.evaluate(JOIN, [topic, name])
    return page


def wait_for_log(page: Any, entry: list[Any]) -> None:
    page.wait_for_function(
        "(e) => window.log.some((x) => JSON.stringify(x) === JSON.stringify(e))",
        arg=entry, timeout=WAIT * 1000)


class Peer:
    """A legato.v1 peer written against the protocol page, on the `websockets` client."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        assert self.receive()["t"] == "welcome"
        self.ref = 0
        self.messages: list[Any] = []  # arrived while waiting for a reply (a replay)

    def receive(self) -> Any:
        return json.loads(self.ws.recv(timeout=WAIT))

    def request(self, frame: dict[str, Any]) -> Any:
        self.ref += 1
        self.ws.send(json.dumps({**frame, "ref": self.ref}))
        while True:
            answer = self.receive()
            if answer.get("ref") == self.ref and answer.get("t") in ("reply", "error"):
                assert answer["t"] == "reply", answer
                return answer["data"]
            if "t" not in answer:
                self.messages.append(answer)

    def message(self) -> Any:
        if self.messages:
            return self.messages.pop(0)
        while True:
            frame = self.receive()
            if "t" not in frame:
                return frame


@contextmanager
def peer_on(port: int) -> Iterator[Peer]:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}/_legato/ws", subprotocols=["legato.v1"],
                 open_timeout=WAIT) as ws:
        yield Peer(ws)


def test_the_app_serves_the_package_s_legato_js(server: ServerProcess) -> None:
    response = httpx.get(f"http://127.0.0.1:{server.port}/_legato/client.js", timeout=WAIT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == PACKAGE_SOURCE.read_bytes()


def test_chromium_and_an_independent_peer_hear_each_other(
        server: ServerProcess, browser: Any) -> None:
    with peer_on(server.port) as peer:
        peer.request({"t": "join", "topic": "room:lobby", "data": {"name": "peer"}})
        page = open_page(browser, server.port, "room:lobby", "ann")
        published = page.evaluate("room.publish({ text: 'from chromium' })")
        heard = peer.message()
        assert heard == {"topic": "room:lobby", "id": published,
                         "data": {"text": "from chromium"}}
        sent = peer.request({"t": "pub", "topic": "room:lobby", "data": "from the peer",
                             "once": "k1"})
        wait_for_log(page, ["message", "from the peer", sent["id"]])


def test_chromium_calls_and_sees_presence(server: ServerProcess, browser: Any) -> None:
    ann = open_page(browser, server.port, "room:here", "ann")
    assert ann.evaluate("client.call('add', { a: 20, b: 22 })") == 42
    error = ann.evaluate("client.call('nope').catch((e) => [e instanceof "
                         "window.legato.LegatoError, e.code])")
    assert error == [True, "not_found"]
    bob = open_page(browser, server.port, "room:here", "bob")
    wait_for_log(ann, ["joined", "bob"])
    names = ann.evaluate("room.presence().then((ms) => ms.map((m) => m.data.name).sort())")
    assert names == ["ann", "bob"]
    bob.close()  # the tab goes: the server says bob left
    wait_for_log(ann, ["left", "bob"])


def test_chromium_survives_a_restart_and_sends_what_it_queued_once(
        server: ServerProcess, browser: Any) -> None:
    page = open_page(browser, server.port, "room:r", "ann")
    before = page.evaluate("room.publish('before')")
    wait_for_log(page, ["message", "before", before])
    server.stop()  # SIGTERM: advice, then close 1012
    wait_for_log(page, ["state", "disconnected", 1012])
    page.evaluate("() => { room.publish('queued').then((id) => window.queuedId = id); }")
    again = server.again()
    try:
        page.wait_for_function("window.queuedId", timeout=WAIT * 1000)
        queued = page.evaluate("window.queuedId")
        wait_for_log(page, ["message", "queued", queued])
        kept = ["before", "queued"]  # Redis keeps the history across the restart
        if server.hub == "memory://":
            wait_for_log(page, ["lost", "epoch"])  # the memory hub's went with it
            kept = ["queued"]
        with peer_on(again.port) as peer:  # all the restarted server keeps
            peer.request({"t": "join", "topic": "room:r", "since": "0"})
            assert [peer.message()["data"] for _ in kept] == kept
            peer.request({"t": "pub", "topic": "room:r", "data": "last"})
            assert peer.message()["data"] == "last"
        page.wait_for_function("window.log.some((e) => e[1] === 'last')",
                               timeout=WAIT * 1000)
        said = [e[1] for e in page.evaluate("window.log") if e[0] == "message"]
        assert said == ["before", "queued", "last"]
    finally:
        again.stop()


class RefusingProxy:
    """A TCP proxy to ``target`` that answers 403 to every WebSocket upgrade (as some
    corporate proxies do) and forwards every other connection byte for byte (the page,
    the SSE stream, the POSTs). ``requests`` lists each connection's first request line
(Chromium reuses a kept-alive connection for later requests).
    Threads of its own; close() ends them and every connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.requests: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.sockets.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return client.close()
            head += chunk
        self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
        if b"upgrade: websocket" in head.lower():
            client.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n"
                           b"connection: close\r\n\r\n")
            return client.close()
        upstream = socket.create_connection(("127.0.0.1", self.target))
        self.sockets.append(upstream)
        upstream.sendall(head)
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def legato_server() -> Iterator[ServerProcess]:
    proc = ServerProcess(free_port())
    try:
        yield proc
    finally:
        proc.stop()


def test_chromium_behind_a_proxy_refusing_websocket_upgrades_falls_back_to_sse(
        legato_server: ServerProcess, browser: Any) -> None:
    with peer_on(legato_server.port):  # a WebSocket connection first: see the report
        pass
    proxy = RefusingProxy(legato_server.port)
    try:
        page = open_page(browser, proxy.port, "room:fallback", "ann")
        assert page.evaluate("client.transport") == "sse"
        assert page.evaluate("window.log.filter((e) => e[1] === 'disconnected').length") == 2
        assert sum("/_legato/ws" in r for r in proxy.requests) >= 2  # refused
        assert page.evaluate("client.call('add', { a: 1, b: 2 })") == 3
        with peer_on(legato_server.port) as peer:
            peer.request({"t": "join", "topic": "room:fallback"})
            published = page.evaluate("room.publish('over sse')")
            assert peer.message() == {"topic": "room:fallback", "id": published,
                                      "data": "over sse"}
            sent = peer.request({"t": "pub", "topic": "room:fallback", "data": "to sse",
                                 "once": "k1"})
            wait_for_log(page, ["message", "to sse", sent["id"]])
        assert page.evaluate("client.transport") == "sse"  # the probe was refused too
    finally:
        proxy.close()
