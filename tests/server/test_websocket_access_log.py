"""S1 ``--access-log`` covers WebSockets: a line when one opens (path, client,
subprotocol), a line when it ends (close code, duration, bytes in and out), and a
denied handshake logged like any HTTP response. Real sockets, on asyncio and uvloop."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from conftest import RunningServer

PAYLOAD = 3000  # bytes, random: permessage-deflate is off in these clients anyway


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/echo echoes; /bye closes with 4001 "bye"; /deny refuses the handshake (403)."""
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept",
                "subprotocol": "chat" if "chat" in scope["subprotocols"] else None})
    if scope["path"] == "/bye":
        await send({"type": "websocket.close", "code": 4001, "reason": "bye"})
        return
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "bytes": message.get("bytes"),
                    "text": message.get("text")})


def access_lines(caplog: pytest.LogCaptureFixture, count: int,
                 timeout: float = 10.0) -> list[str]:
    """The access log's lines, once there are ``count`` (the close line comes when the
    server has seen the connection end, after the client has)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "legato.access"]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


CLOSED = re.compile(r'^(?P<client>\S+) - "WebSocket (?P<target>\S+)" closed (?P<code>\d+)'
                    r'(?: "(?P<reason>[^"]*)")? after (?P<seconds>[\d.]+) s, '
                    r"(?P<in>\d+) B in, (?P<out>\d+) B out$")


def test_S1_access_log_records_a_websocket_open_and_its_close_with_code_duration_and_bytes(
        serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="legato.access")
    server = serve(app, access_log=True)
    data = os.urandom(PAYLOAD)

    async def talk() -> str:
        async with connect(server.ws_url + "/echo?room=lobby", subprotocols=["chat"],
                           compression=None, proxy=None) as ws:
            await ws.send(data)
            assert await asyncio.wait_for(ws.recv(), 10) == data
            host, port = ws.local_address[:2]
            await asyncio.sleep(0.05)  # a measurable duration
        return f"{host}:{port}"

    client = asyncio.run(talk())
    opened, closed = access_lines(caplog, 2)[:2]
    assert opened == f'{client} - "WebSocket /echo?room=lobby" open subprotocol=chat'
    match = CLOSED.match(closed)
    assert match is not None, closed
    assert match["client"] == client and match["target"] == "/echo?room=lobby"
    assert match["code"] == "1000" and match["reason"] is None
    assert 0.05 <= float(match["seconds"]) < 10
    # Wire bytes since the 101: the message plus frame headers (masking key in) and the
    # closing handshake, and nothing of the HTTP upgrade before it.
    assert PAYLOAD < int(match["in"]) < PAYLOAD + 64
    assert PAYLOAD < int(match["out"]) < PAYLOAD + 64


def test_S1_access_log_records_the_close_code_and_reason_the_app_chose(
        serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="legato.access")
    server = serve(app, access_log=True)

    async def talk() -> None:
        async with connect(server.ws_url + "/bye", proxy=None) as ws:
            await asyncio.wait_for(ws.wait_closed(), 10)

    asyncio.run(talk())
    opened, closed = access_lines(caplog, 2)[:2]
    assert opened.endswith('"WebSocket /bye" open subprotocol=-')
    match = CLOSED.match(closed)
    assert match is not None, closed
    assert (match["code"], match["reason"]) == ("4001", "bye")


def test_S1_access_log_records_a_denied_handshake_as_an_http_response(
        serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="legato.access")
    server = serve(app, access_log=True)

    async def talk() -> None:
        with pytest.raises(InvalidStatus):
            async with connect(server.ws_url + "/deny?t=1", proxy=None):
                pass

    asyncio.run(talk())
    lines = access_lines(caplog, 1)
    assert len(lines) == 1 and lines[0].endswith(' - "GET /deny?t=1 HTTP/1.1" 403')


def test_S1_without_access_log_websockets_log_nothing_and_keep_no_record(
        serve: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    """Zero cost when off: no record object per connection, nothing looked at per
    message (access.py)."""
    caplog.set_level(logging.INFO, logger="legato.access")
    server = serve(app)

    async def talk() -> list[Any]:
        async with connect(server.ws_url + "/echo", proxy=None) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            return [c.websocket.access for c in list(server.server.state.connections)
                    if c.websocket is not None]

    assert asyncio.run(talk()) == [None]
    time.sleep(0.2)
    assert [r for r in caplog.records if r.name == "legato.access"] == []
