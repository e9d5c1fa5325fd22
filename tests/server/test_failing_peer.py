"""A peer that breaks the protocol right after valid messages (RFC 6455 §7.1.7), over
real sockets on legato's server: the app's answers to the messages that arrived before
the bad frame go out before the 1002 Close, which follows within ``ws_fail_grace``.

The shapes are the Autobahn cases legato once got NON-STRICT in (3.2, 3.3, 4.1.3, 4.1.4,
4.2.3, 4.2.4, 5.15: the echo was lost because the Close went out before the app had
answered); bench/autobahn.py runs the whole suite. Every burst goes out in one write,
frames built here from RFC 6455 §5.2 (conftest's client_frame), not by legato.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import (
    RunningServer,
    client_frame,
    close_code_of,
    echo_app,
    open_raw_websocket,
    parse_frames,
)

from legato import App, TestClient, WebSocket, WebSocketDisconnect

TEXT, CONT, CLOSE, PING, PONG = 0x1, 0x0, 0x8, 0x9, 0xA
HELLO = b"Hello, world!"
CASES = ["3.2", "3.3", "4.1.3", "4.1.4", "4.2.3", "4.2.4", "5.15"]


def with_rsv(frame: bytes, bits: int) -> bytes:
    return bytes([frame[0] | bits]) + frame[1:]


def autobahn_shape(case: str) -> tuple[bytes, list[bytes]]:
    """One Autobahn case's frames as one write, and the messages before its bad frame."""
    ping = client_frame(PING)
    if case in ("3.2", "3.3"):  # RSV = 2 (RSV2) or 3 (RSV2 | RSV3), nothing negotiated
        bad = with_rsv(client_frame(TEXT, HELLO), 0x20 if case == "3.2" else 0x30)
        return client_frame(TEXT, HELLO) + bad + ping, [HELLO]
    reserved = {"4.1.3": (5, b""), "4.1.4": (6, b"hello"), "4.2.3": (13, b""),
                "4.2.4": (14, b"hello")}
    if case in reserved:  # a reserved data (0x3-0x7) or control (0xB-0xF) opcode
        opcode, payload = reserved[case]
        return client_frame(TEXT, HELLO) + client_frame(opcode, payload) + ping, [HELLO]
    assert case == "5.15"  # a continuation with no message to continue
    return (client_frame(TEXT, b"fragment1", fin=False) + client_frame(CONT, b"fragment2")
            + client_frame(CONT, b"fragment3", fin=False) + client_frame(TEXT, b"fragment4")), \
        [b"fragment1fragment2"]


def read_until_closed(sock: socket.socket, rest: bytes, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes TCP (a test fails on the timeout)."""
    sock.settimeout(timeout)
    data = rest
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def frames_after(server: RunningServer, burst: bytes | list[bytes], path: str = "/",
                 pause: float = 0.0) -> list[tuple[int, bytes]]:
    """Open a WebSocket, write ``burst`` (a list: one write each, ``pause`` s apart) and
    return the (opcode, payload) of every frame the server sent until it closed TCP."""
    sock, head, rest = open_raw_websocket(server.port, path)
    with sock:
        assert head.startswith(b"HTTP/1.1 101"), head
        for i, part in enumerate([burst] if isinstance(burst, bytes) else burst):
            if i:
                time.sleep(pause)
            sock.sendall(part)
        data = read_until_closed(sock, rest)
    return [(opcode, payload) for opcode, _fin, payload in parse_frames(data)]


def expect_echoes_then_close(frames: list[tuple[int, bytes]], echoes: list[bytes],
                             code: int = 1002) -> None:
    assert [p for op, p in frames if op == TEXT] == echoes, frames
    assert frames[-1][0] == CLOSE and close_code_of(frames[-1][1]) == code, frames
    assert [op for op, _ in frames] == [TEXT] * len(echoes) + [CLOSE], \
        "the Ping after the bad frame is never answered (§7.1.7: nothing more is read)"


# ----------------------------------------------------------------------------- apps

app = App()
ended: list[tuple[list[str], int]] = []  # what each App handler saw, in order


@app.websocket("/")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket("/record")
async def record(ws: WebSocket) -> None:
    seen: list[str] = []
    try:
        while True:
            seen.append(await ws.receive_text())
            await ws.send(seen[-1])
    except WebSocketDisconnect as exc:
        ended.append((seen, exc.code))


@app.websocket("/slow")
async def slow(ws: WebSocket) -> None:
    """Answers each message after a pause: the bad frame arrives while it works."""
    async for message in ws:
        await asyncio.sleep(0.3)
        await ws.send(message)


@app.websocket("/stuck")
async def stuck(ws: WebSocket) -> None:
    """Takes the first message and then answers nothing for a long while."""
    await ws.receive_text()
    await asyncio.sleep(30)


APPS: dict[str, Any] = {"asgi": echo_app, "App": app}


@pytest.fixture(params=list(APPS))
def echo_server(request: pytest.FixtureRequest,
                serve: Callable[..., RunningServer]) -> RunningServer:
    """A legato server (asyncio and uvloop) echoing with a bare ASGI app or the App."""
    return serve(APPS[request.param])


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES)
def test_RFC6455_s7_1_7_replies_to_messages_before_a_bad_frame_are_sent_before_the_close(
        echo_server: RunningServer, case: str) -> None:
    burst, before = autobahn_shape(case)
    expect_echoes_then_close(frames_after(echo_server, burst), before)


def test_RFC6455_s7_1_7_every_pipelined_message_before_a_bad_frame_is_answered(
        echo_server: RunningServer) -> None:
    messages = [b"m%d" % i for i in range(20)]
    burst = b"".join(client_frame(TEXT, m) for m in messages) + client_frame(0x3)
    expect_echoes_then_close(frames_after(echo_server, burst), messages)


def test_RFC6455_s7_1_7_a_bad_frame_in_a_later_read_waits_for_the_answer_in_progress(
        serve: Callable[..., RunningServer]) -> None:
    """Autobahn 3.3 sends frame by frame: the bad frame can arrive while the app is still
    working on the message before it (here for 0.3 s; the grace is 1 s)."""
    server = serve(app)
    frames = frames_after(server, [client_frame(TEXT, HELLO), with_rsv(client_frame(TEXT), 0x30)],
                          "/slow", pause=0.05)
    expect_echoes_then_close(frames, [HELLO])


def test_W16_the_App_sees_the_messages_before_a_bad_frame_then_the_disconnect_with_1002(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(app)
    ended.clear()
    burst = client_frame(TEXT, b"one") + client_frame(TEXT, b"two") + client_frame(0xB)
    expect_echoes_then_close(frames_after(server, burst, "/record"), [b"one", b"two"])
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [(["one", "two"], 1002)]


def test_RFC6455_s7_1_7_an_app_that_does_not_answer_gets_the_close_after_the_grace(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(app, ws_fail_grace=0.2)
    started = time.monotonic()
    frames = frames_after(server, client_frame(TEXT, b"a") + client_frame(TEXT, b"b")
                          + client_frame(0x3), "/stuck")
    assert frames == [(CLOSE, frames[0][1])] and close_code_of(frames[0][1]) == 1002
    assert time.monotonic() - started < 10, "the grace bounds the wait, not the app"


def test_RFC6455_s7_1_7_ws_fail_grace_0_closes_before_the_app_has_answered(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(echo_app, ws_fail_grace=0)
    frames = frames_after(server, client_frame(TEXT, b"lost") + client_frame(0x3))
    assert [op for op, _ in frames] == [CLOSE] and close_code_of(frames[0][1]) == 1002


def test_T1_the_TestClient_sees_the_echo_before_a_bad_frame_then_the_close_1002() -> None:
    """The TestClient runs legato's server over memory: same behaviour. It has no way to
    send a malformed frame (on purpose), so the test writes to its transport directly."""
    ended.clear()
    with TestClient(app) as client, client.websocket_connect("/record") as ws:
        inner = ws._client
        assert inner is not None and inner.transport is not None
        burst = client_frame(TEXT, b"hi") + with_rsv(client_frame(TEXT, b"bad"), 0x20)
        ws._runner.call(inner.transport.client_write, burst)
        assert ws.receive() == {"type": "websocket.send", "text": "hi"}
        end = ws.receive()
        assert end["type"] == "websocket.close" and end["code"] == 1002, end
    assert ended == [(["hi"], 1002)]
