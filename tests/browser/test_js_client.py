"""The JS client (clients/js/legato.js) in Chromium, loaded from the App's own
``/_legato/client.js``, against a real legato server process: its messages reach a
peer nobody here wrote (the `websockets` library speaking legato.v1 by hand) and
back, calls and presence work, and a server restart (SIGTERM: advice, 1012) is
survived with what was queued sent once (docs/channels.md, "Reconnecting")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from ports import free_port, port_is_open

HERE = Path(__file__).parent
PACKAGE_SOURCE = HERE.parents[1] / "clients" / "js" / "legato.js"
CHROMIUM = "/usr/bin/chromium"
WAIT = 10.0  # seconds for anything to happen on a loaded machine

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian's chromium not installed")


class ServerProcess:
    """``legato run channels_app:app`` on ``port``; stopped by its PID only."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "legato", "run", "channels_app:app", "--host",
             "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(free_port())
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
    again = ServerProcess(server.port)
    try:
        page.wait_for_function("window.queuedId", timeout=WAIT * 1000)
        queued = page.evaluate("window.queuedId")
        wait_for_log(page, ["message", "queued", queued])
        wait_for_log(page, ["lost", "epoch"])  # the memory hub's history went with it
        with peer_on(again.port) as peer:  # all the restarted server keeps: "queued"
            peer.request({"t": "join", "topic": "room:r", "since": "0"})
            assert peer.message()["data"] == "queued"
            peer.request({"t": "pub", "topic": "room:r", "data": "last"})
            assert peer.message()["data"] == "last"
        page.wait_for_function("window.log.some((e) => e[1] === 'last')",
                               timeout=WAIT * 1000)
        said = [e[1] for e in page.evaluate("window.log") if e[0] == "message"]
        assert said == ["before", "queued", "last"]
    finally:
        again.stop()
