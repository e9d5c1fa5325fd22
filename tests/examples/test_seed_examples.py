"""The seed examples (SPEC §8): each one's page and WebSocket behaviour, in process
through legato.TestClient and over real sockets to legato's built-in server (httpx and
the `websockets` library as clients, via tests/framework/live.py), and each started with
its one command as a user would."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from legato import WebSocketDenied, WebSocketDisconnect

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
TREMOLO = EXAMPLES / "tremolo_hybrid_chat.py"
BOCADILLO = EXAMPLES / "bocadillo_channels.py"
SHALLOT = EXAMPLES / "shallot_generator_echo.py"
RESPONDER = EXAMPLES / "responder_chat" / "app.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _live() -> ModuleType:
    """tests/framework/live.py, shared with the framework tests rather than copied."""
    if "live" not in sys.modules:
        sys.modules["live"] = _load("live", ROOT / "tests" / "framework" / "live.py")
    return sys.modules["live"]


live = _live()


def example(path: Path) -> ModuleType:
    """A fresh copy of an example module: its App and module state start clean."""
    return _load(f"example_{path.parent.name}_{path.stem}", path)


def _has_testclient() -> bool:
    try:
        from legato import TestClient  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(params=["testclient", "legato"])
def client_of(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], Any]]:
    """``client_of(app)``: a TestClient, or a LiveClient to the app on a real socket."""
    if request.param == "testclient" and not _has_testclient():
        pytest.skip("legato.TestClient is not available yet")
    with ExitStack() as stack:
        yield lambda app: stack.enter_context(live.client_for(request.param, app))


def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Server-side effects of a close land after the client's close returns (sockets)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ------------------------------------------------- seed 001: Tremolo's hybrid handler


def test_hybrid_chat_streams_its_page_with_a_websocket_url_for_the_host(client_of) -> None:
    client = client_of(example(TREMOLO).app)
    response = client.get("/", headers={"host": "chat.example:8000"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'new WebSocket("ws://chat.example:8000/")' in response.text
    assert response.text.rstrip().endswith("</html>")


def test_hybrid_chat_stamps_each_message_with_the_time_and_a_guest_name(client_of) -> None:
    client = client_of(example(TREMOLO).app)
    with client.websocket_connect("/") as ws:
        for text in ("hello", "again"):
            ws.send_text(text)
            assert re.fullmatch(rf"\[\d\d:\d\d:\d\d\] Guest\d+: {text}", ws.receive_text())


def test_hybrid_chat_refuses_a_host_that_could_break_out_of_the_page(client_of) -> None:
    # The built-in server lets ' and & through (RFC 3986 sub-delims): the hook must not.
    client = client_of(example(TREMOLO).app)
    response = client.get("/", headers={"host": "chat'example"})
    assert response.status_code == 400
    assert "illegal host" in response.text


def test_hybrid_chat_refuses_the_same_host_on_a_websocket_in_process() -> None:
    if not _has_testclient():
        pytest.skip("legato.TestClient is not available yet")
    with live.client_for("testclient", example(TREMOLO).app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            with client.websocket_connect("/", headers={"host": "chat&example"}):
                pass
    assert denied.value.status_code == 400


def test_hybrid_chat_refuses_the_same_host_on_a_websocket_handshake() -> None:
    # Raw bytes: client libraries build the Host header from the URL themselves.
    handshake = (b"GET / HTTP/1.1\r\nHost: chat&example\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    with live.serve_legato(example(TREMOLO).app) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(handshake)
            answer = b"".join(iter(lambda: sock.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"illegal host")


def test_hybrid_chat_names_the_guest_after_the_client_port_over_a_socket() -> None:
    with live.serve_legato(example(TREMOLO).app) as port:
        with ws_connect(f"ws://127.0.0.1:{port}/", open_timeout=5) as ws:
            ws.send("hi")
            answer = ws.recv(timeout=5)
            assert answer.endswith(f"Guest{ws.local_address[1]}: hi")


# ------------------------------------------------ seed 002: Bocadillo's JSON channels


def test_channels_page_is_a_chat_client_sending_json_messages(client_of) -> None:
    response = client_of(example(BOCADILLO).app).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/chat`" in response.text
    assert 'type: "message"' in response.text


def test_channel_echo_names_the_channel_and_the_user_header(client_of) -> None:
    client = client_of(example(BOCADILLO).app)
    with client.websocket_connect("/chat/general", headers={"user": "ada"}) as ws:
        ws.send_json({"text": "hi"})
        assert ws.receive_json() == {"channel": "general", "user": "ada",
                                     "message": {"text": "hi"}}


@pytest.mark.parametrize("query, headers", [("?anonymous=true", {"user": "ada"}), ("", {})])
def test_channel_echo_is_anonymous_when_asked_or_without_a_user(client_of, query,
                                                                  headers) -> None:
    client = client_of(example(BOCADILLO).app)
    with client.websocket_connect(f"/chat/news{query}", headers=headers) as ws:
        ws.send_json([1, 2])
        assert ws.receive_json()["user"] == "Anonymous"


def test_channel_echo_denies_an_anonymous_flag_that_is_not_a_boolean(client_of) -> None:
    client = client_of(example(BOCADILLO).app)
    with pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect("/chat/news?anonymous=maybe"):
            pass
    assert denied.value.status_code == 400
    assert b"anonymous" in bytes(denied.value.body)


def test_chat_room_relays_to_everyone_and_replays_history_to_newcomers(client_of) -> None:
    client = client_of(example(BOCADILLO).app)
    first = {"type": "message", "user": "ada", "text": "first"}
    second = {"type": "message", "user": "bob", "text": "second"}
    with client.websocket_connect("/chat") as ada:
        ada.send_json(first)
        assert ada.receive_json() == first
        with client.websocket_connect("/chat") as bob:
            assert bob.receive_json() == first  # said before bob came
            bob.send_json(second)
            assert bob.receive_json() == second
            assert ada.receive_json() == second


def test_chat_room_relays_only_chat_messages_and_only_their_fields(client_of) -> None:
    client = client_of(example(BOCADILLO).app)
    with client.websocket_connect("/chat") as ws:
        ws.send_json({"type": "typing", "user": "ada"})
        ws.send_json({"type": "message", "text": "hi", "html": "<script>"})
        assert ws.receive_json() == {"type": "message", "user": "Anonymous", "text": "hi"}


def test_chat_room_takes_a_tab_dropped_without_a_close_frame_as_a_quiet_leave(caplog) -> None:
    caplog.set_level("INFO", logger="legato")
    message = {"type": "message", "user": "ada", "text": "anyone?"}
    with live.serve_legato(example(BOCADILLO).app) as port:
        url = f"ws://127.0.0.1:{port}/chat"
        with ws_connect(url, open_timeout=5) as ada, ws_connect(url, open_timeout=5) as bob:
            bob.socket.shutdown(socket.SHUT_RDWR)  # gone without a close frame: 1006
            ada.send(json.dumps(message))
            assert json.loads(ada.recv(timeout=5)) == message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_hello_rejects_a_client_without_the_api_key_with_403(client_of) -> None:
    client = client_of(example(BOCADILLO).app)
    with pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect("/hello", headers={"api-key": "guess"}):
            pass
    assert denied.value.status_code == 403


def test_hello_greets_a_key_holder_then_closes_normally(client_of) -> None:
    module = example(BOCADILLO)
    client = client_of(module.app)
    with client.websocket_connect("/hello", headers={"api-key": module.API_KEY}) as ws:
        assert ws.receive_text() == "hello, key holder"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1000


# ---------------------------------------------- seed 003: Shallot's generator echo


def test_generator_echo_page_connects_offering_the_subprotocol(client_of) -> None:
    response = client_of(example(SHALLOT).app).get("/")
    assert response.status_code == 200
    assert '/echo`, ["echo.v1"]' in response.text


def test_generator_echo_echoes_then_says_bye_and_closes_with_1001_on_exit(client_of) -> None:
    client = client_of(example(SHALLOT).app)
    with client.websocket_connect("/echo") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "@ECHO: hello"
        ws.send_text("exit")
        assert ws.receive_text() == "@ECHO: exit"
        assert ws.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1001


def test_generator_echo_sends_binary_back_as_binary(client_of) -> None:
    client = client_of(example(SHALLOT).app)
    with client.websocket_connect("/echo") as ws:
        ws.send_bytes(b"\x00\xff")
        assert ws.receive_bytes() == b"\x00\xff"


@pytest.mark.parametrize("offered, chosen", [(["chat", "echo.v1"], "echo.v1"),
                                             (["chat"], None), (None, None)])
def test_generator_echo_accepts_its_subprotocol_only_when_offered(client_of, offered,
                                                                   chosen) -> None:
    client = client_of(example(SHALLOT).app)
    with client.websocket_connect("/echo", subprotocols=offered) as ws:
        assert ws.accepted_subprotocol == chosen
        ws.send_text("ping")
        assert ws.receive_text() == "@ECHO: ping"


def test_generator_echo_logs_a_disconnect_only_when_the_client_closes(client_of,
                                                                     caplog) -> None:
    caplog.set_level("INFO", logger="shallot_echo")
    client = client_of(example(SHALLOT).app)

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "shallot_echo"]

    with client.websocket_connect("/echo") as ws:
        ws.send_text("exit")
        for _ in range(2):
            ws.receive_text()
    assert _eventually(lambda: len(lines()) == 1)
    assert lines() == ["connection to /echo closed with 1001"]  # the server closed

    caplog.clear()
    with client.websocket_connect("/echo") as ws:
        ws.send_text("hi")
        ws.receive_text()
        ws.close(1000)
    assert _eventually(lambda: len(lines()) == 2)
    assert lines() == ["client disconnected from /echo with 1000",
                       "connection to /echo closed with 1000"]


# ------------------------------------- seed 004: Responder's chat room, static files

TOKEN = "?token=demo-token"


def test_responder_chat_serves_its_page_at_the_root_and_under_static(client_of) -> None:
    client = client_of(example(RESPONDER).app)
    page = client.get("/")
    static = client.get("/static/index.html")
    assert page.status_code == static.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.text == static.text
    assert "/chat?token=" in page.text


@pytest.mark.parametrize("path", ["/chat", "/ws", "/json?token=wrong"])
def test_responder_chat_refuses_websockets_without_the_token_with_403(client_of,
                                                                      path) -> None:
    client = client_of(example(RESPONDER).app)
    with pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect(path):
            pass
    assert denied.value.status_code == 403


def test_responder_chat_denies_a_websocket_path_it_does_not_route_with_404(client_of) -> None:
    client = client_of(example(RESPONDER).app)
    with pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect("/nowhere" + TOKEN):
            pass
    assert denied.value.status_code == 404


def test_responder_chat_broadcasts_to_everyone_and_forgets_who_left(client_of) -> None:
    module = example(RESPONDER)
    client = client_of(module.app)
    with client.websocket_connect("/chat" + TOKEN) as ada:
        with client.websocket_connect("/chat" + TOKEN) as bob:
            assert _eventually(lambda: len(module.connected) == 2)
            bob.send_text("hello room")
            assert bob.receive_text() == "hello room"
            assert ada.receive_text() == "hello room"
        assert _eventually(lambda: len(module.connected) == 1)
        ada.send_text("still here")
        assert ada.receive_text() == "still here"
    assert _eventually(lambda: not module.connected)


def test_responder_echo_routes_answer_text_json_and_binary(client_of) -> None:
    client = client_of(example(RESPONDER).app)
    with client.websocket_connect("/ws" + TOKEN) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "echo: hi"
    with client.websocket_connect("/json" + TOKEN) as ws:
        ws.send_json({"data": [1, 2, 3]})
        assert ws.receive_json() == {"type": "echo", "data": {"data": [1, 2, 3]}}
    with client.websocket_connect("/binary" + TOKEN) as ws:
        ws.send_bytes(b"\x00\x01\x02")
        assert ws.receive_bytes() == b"\x02\x01\x00"


# ------------------------------------------------- SPEC T2: the pages in a browser

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page_of(browser) -> Iterator[Callable[[], Any]]:
    """``page_of()``: a fresh browser tab, closed after the test."""
    context = browser.new_context()
    try:
        yield context.new_page
    finally:
        context.close()


def test_hybrid_chat_page_chats_in_a_browser_showing_markup_as_text(page_of) -> None:
    with live.serve_legato(example(TREMOLO).app) as port:
        page = page_of()
        page.goto(f"http://127.0.0.1:{port}/")
        page.fill("#message", "hi <b>there</b>")
        page.click("button")
        page.wait_for_selector("text=: hi <b>there</b>", timeout=5000)
        assert page.locator("#messages b").count() == 0


def test_channels_page_shows_the_room_and_its_history_in_a_browser(page_of) -> None:
    with live.serve_legato(example(BOCADILLO).app) as port:
        ada = page_of()
        ada.goto(f"http://127.0.0.1:{port}/")
        ada.fill("#user", "ada")
        ada.fill("#text", "first!")
        ada.click("button")
        ada.wait_for_selector("text=ada: first!", timeout=5000)
        late = page_of()
        late.goto(f"http://127.0.0.1:{port}/")
        late.wait_for_selector("text=ada: first!", timeout=5000)


def test_generator_echo_page_negotiates_echoes_and_sees_1001_in_a_browser(page_of) -> None:
    with live.serve_legato(example(SHALLOT).app) as port:
        page = page_of()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("text=connected (subprotocol: echo.v1)", timeout=5000)
        page.fill("#text", "exit")
        page.click("button")
        page.wait_for_selector("text=closed with 1001", timeout=5000)
        assert page.locator("#log li").all_inner_texts()[1:3] == ["bye", "@ECHO: exit"]


def test_responder_chat_page_broadcasts_between_two_browser_tabs(page_of) -> None:
    module = example(RESPONDER)
    with live.serve_legato(module.app) as port:
        tabs = [page_of(), page_of()]
        for tab in tabs:
            tab.goto(f"http://127.0.0.1:{port}/")
        assert _eventually(lambda: len(module.connected) == 2, timeout=5)
        tabs[0].fill("#input", "hello, other tab")
        tabs[0].press("#input", "Enter")
        for tab in tabs:
            tab.wait_for_selector("#messages >> text=hello, other tab", timeout=5000)


# ---------------------------------------------------------- SPEC §8: one command


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} (exit code {process.poll()})")


@pytest.mark.parametrize("script", [TREMOLO, BOCADILLO, SHALLOT, RESPONDER],
                         ids=["tremolo", "bocadillo", "shallot", "responder"])
def test_example_runs_with_its_one_command_and_stops_cleanly_on_sigterm(script: Path,
                                                                       tmp_path) -> None:
    port = live.free_port()
    # Another working directory: an example must find its files from its own location.
    process = subprocess.Popen([sys.executable, str(script), "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process)
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        process.terminate()  # SIGTERM to this PID: the graceful shutdown path
        output = process.communicate(timeout=10)[0].decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert response.status_code == 200, output
    assert "<!DOCTYPE html>" in response.text
    assert process.returncode == 0, output
