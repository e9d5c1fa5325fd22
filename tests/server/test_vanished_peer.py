"""A peer that drops its TCP connection (close code 1006) is normal on the web: the
handler sees WebSocketDisconnect(1006) as before, and the server logs it at debug, never
as an error with a traceback (issue 18 item 6). Real sockets, the App on legato's server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect

from conftest import RunningServer
from legato import App, WebSocket, WebSocketDisconnect

seen: list[int] = []
app = App()


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    try:
        async for message in ws:
            await ws.send(message)
    except WebSocketDisconnect as exc:
        seen.append(exc.code)
        raise


@app.websocket("/plain")
async def plain(ws: WebSocket) -> None:
    async for message in ws:  # the documented shape: nothing caught
        await ws.send(message)


@pytest.mark.parametrize("path", ["/echo", "/plain"])
def test_a_vanished_peer_is_logged_at_debug_not_as_an_error(
        path: str, serve: Callable[..., RunningServer],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve(app)
    seen.clear()

    async def drop() -> None:
        async with connect(server.ws_url + path, proxy=None) as ws:
            await ws.send("hi")
            assert await asyncio.wait_for(ws.recv(), 10) == "hi"
            ws.transport.abort()  # TCP gone, no Close frame

    asyncio.run(drop())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            "went away" in r.getMessage() for r in caplog.records):
        time.sleep(0.02)
    assert any("went away without a Close (1006)" in r.getMessage()
               and r.levelno == logging.DEBUG for r in caplog.records)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    if path == "/echo":
        assert seen == [1006]  # the handler still learns it
