"""The chat example `make run` starts: page and static files over HTTP, rooms and
broadcast over WebSockets — through the TestClient, over a real socket with the
`websockets` client, and in Chromium with two pages talking to each other."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ports import free_port, port_is_open

import legato

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "chat" / "app.py"
sys.path.insert(0, str(ROOT / "tests" / "framework"))
from live import serve_legato  # noqa: E402


def load_chat() -> Any:
    spec = importlib.util.spec_from_file_location("chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_page_and_script_are_served() -> None:
    with legato.TestClient(load_chat().app) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/static/chat.js" in page.text
        script = client.get("/static/chat.js")
        assert script.status_code == 200
        assert 'from "/_legato/client.js"' in script.text  # the browser client
        assert client.get("/_legato/client.js").status_code == 200


def data(session: Any) -> Any:
    """The chat event inside the hub's envelope ({"topic", "id", "data"})."""
    return session.receive_json()["data"]


def test_a_message_reaches_everyone_in_the_room_and_no_one_outside() -> None:
    with legato.TestClient(load_chat().app) as client:
        with client.websocket_connect("/ws/lobby?name=ann") as ann:
            assert data(ann) == {"type": "join", "user": "ann", "count": 1}
            with client.websocket_connect("/ws/lobby?name=bob") as bob, \
                    client.websocket_connect("/ws/attic?name=eve") as eve:
                assert data(eve)["count"] == 1
                assert data(ann) == {"type": "join", "user": "bob", "count": 2}
                # bob first catches up on the room's history: ann's join, then his own
                assert [data(bob)["user"], data(bob)["user"]] == ["ann", "bob"]
                bob.send_json({"text": "hello"})
                for member in (ann, bob):
                    said = data(member)
                    assert (said["type"], said["user"], said["text"]) == \
                        ("message", "bob", "hello")
                eve.send_json({"text": "only me"})
                assert data(eve)["text"] == "only me"
            assert data(ann) == {"type": "leave", "user": "bob", "count": 1}


def test_blank_and_malformed_messages_are_not_broadcast() -> None:
    with legato.TestClient(load_chat().app) as client:
        with client.websocket_connect("/ws/r?name=ann") as ann:
            data(ann)
            ann.send_json({"text": "   "})
            ann.send_json(["not", "an", "object"])
            ann.send_json({"text": "real"})
            assert data(ann)["text"] == "real"


def test_a_reloaded_page_catches_up_from_the_last_id_it_saw() -> None:
    with legato.TestClient(load_chat().app) as client:
        with client.websocket_connect("/ws/r?name=ann") as ann:
            last_seen = ann.receive_json()["id"]  # ann's own join
            with client.websocket_connect("/ws/r?name=bob") as bob:
                ann.receive_json()
                bob.receive_json()
                bob.receive_json()
                ann.close()  # the page reloads...
                bob.send_json({"text": "while you were away"})
                data(bob)
            with client.websocket_connect(f"/ws/r?name=ann&since={last_seen}") as again:
                missed = [data(again) for _ in range(4)]
        assert [(m["type"], m["user"]) for m in missed] == [
            ("join", "bob"), ("leave", "ann"), ("message", "bob"), ("leave", "bob")]
        assert missed[2]["text"] == "while you were away"


def test_P5_a_page_away_longer_than_the_history_lasts_is_told_it_missed_messages() -> None:
    chat = load_chat()
    with legato.TestClient(chat.app) as client:
        with client.websocket_connect("/ws/r?name=ann") as ann:
            last_seen = ann.receive_json()["id"]  # ann's own join
        with client.websocket_connect("/ws/r?name=bob") as bob:
            for _ in range(3):  # ann's join and leave, bob's join
                bob.receive_json()
            for n in range(chat.HISTORY + 5):
                bob.send_json({"text": f"m{n}"})
                data(bob)
        with client.websocket_connect(f"/ws/r?name=ann&since={last_seen}") as again:
            kept = [again.receive_json() for _ in range(chat.HISTORY)]
            # what the room still keeps, then the notice, then live messages
            assert again.receive_json() == {"type": "gap", "reason": "trimmed",
                                            "kept": chat.HISTORY}
            assert data(again) == {"type": "join", "user": "ann", "count": 1}
        assert kept[-1]["data"]["type"] == "leave"  # bob's
        with client.websocket_connect(f"/ws/r?name=ann&since={kept[-1]['id']}") as ann:
            assert data(ann)["type"] == "join"  # nothing missed: no notice


def test_chat_works_over_a_real_socket_with_the_websockets_client() -> None:
    from websockets.sync.client import connect

    with serve_legato(load_chat().app) as port:
        with connect(f"ws://127.0.0.1:{port}/ws/lobby?name=ann") as ann, \
                connect(f"ws://127.0.0.1:{port}/ws/lobby?name=bob") as bob:
            ann.recv(timeout=5)
            ann.recv(timeout=5)
            bob.recv(timeout=5)
            bob.recv(timeout=5)
            bob.send(json.dumps({"text": "över the wire ♪"}))
            assert json.loads(ann.recv(timeout=5))["data"]["text"] == "över the wire ♪"


CHROMIUM = "/usr/bin/chromium"


@contextmanager
def chat_in_chromium() -> Iterator[tuple[Any, int]]:
    """A headless Chromium and the port of a chat server (legato's, real sockets)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with serve_legato(load_chat().app) as port, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            yield browser, port
        finally:
            browser.close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium not installed")
def test_two_browser_pages_chat_with_each_other() -> None:
    with chat_in_chromium() as (browser, port):
        pages = [browser.new_page(), browser.new_page()]
        for page, name in zip(pages, ("ann", "bob"), strict=True):
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#name", name)
            page.fill("#room", "lobby")
            page.click("#join-button")
            page.wait_for_selector("#send:not([hidden])", timeout=10_000)
        pages[0].wait_for_selector("text=bob joined", timeout=10_000)
        pages[1].fill("#text", "hi from bob <b>not bold</b>")
        pages[1].click("#send-button")
        for page in pages:
            page.wait_for_selector("text=bob: hi from bob <b>not bold</b>",
                                   timeout=10_000)
        assert pages[0].locator("#messages b").count() == 0  # text, never HTML


@contextmanager
def chat_process(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``python examples/chat/app.py --port port`` until it accepts connections; stopped
    (SIGTERM, then SIGKILL) by its PID on the way out."""
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not port_is_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, "chat did not start"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def chat_lines(page: Any) -> list[str]:
    return list(page.locator("#messages li.message").all_inner_texts())


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium not installed")
def test_pages_survive_a_server_restart_without_reload_each_message_shown_once() -> None:
    """Issue 14: typed before, during and after a restart (SIGTERM: reconnect advice, the
    pages come back by themselves), every message shows exactly once on every page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    port = free_port()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            with chat_process(port) as first:
                pages = [browser.new_page(), browser.new_page()]
                for page, name in zip(pages, ("ann", "bob"), strict=True):
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.fill("#name", name)
                    page.fill("#room", "lobby")
                    page.click("#join-button")
                    page.wait_for_selector("#status[data-state=connected]", timeout=10_000)
                pages[0].wait_for_selector("text=bob joined", timeout=10_000)

                def say(page: Any, text: str) -> None:
                    page.fill("#text", text)
                    page.click("#send-button")

                say(pages[0], "before 1")
                say(pages[1], "before 2")
                for page in pages:
                    page.wait_for_selector("text=bob: before 2", timeout=10_000)
                first.send_signal(signal.SIGTERM)
                first.wait(15)
            for page in pages:
                page.wait_for_selector("#status:not([data-state=connected])", timeout=10_000)
            say(pages[0], "during 1")  # queued in the page while the server is down
            say(pages[1], "during 2")
            with chat_process(port):
                for page in pages:
                    page.wait_for_selector("#status[data-state=connected]", timeout=20_000)
                say(pages[0], "after 1")
                say(pages[1], "after 2")
                expected = ["ann: before 1", "bob: before 2", "ann: during 1",
                            "bob: during 2", "ann: after 1", "bob: after 2"]
                for page in pages:
                    page.wait_for_selector("text=bob: after 2", timeout=10_000)
                    page.wait_for_selector("text=ann: after 1", timeout=10_000)
                    lines = chat_lines(page)
                    assert sorted(lines) == sorted(expected), lines  # each once
                    assert lines.index("ann: before 1") < lines.index("ann: during 1") \
                        < lines.index("ann: after 1")
                    # The memory hub's history went with the process: said, not silent.
                    page.wait_for_selector("text=some messages were missed", timeout=5_000)
        finally:
            browser.close()


def test_make_run_command_starts_the_chat(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
