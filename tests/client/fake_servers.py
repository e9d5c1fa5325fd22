"""A server that speaks *broken* legato.v1, to see what the client does with bad frames.

It is a plain legato WebSocket route (nothing from legato.channels): it accepts with the
legato.v1 subprotocol, sends ``welcome`` unless told not to, then the frame of the case
named in the query string, and records the close code the client answered with.
"""

from __future__ import annotations

import asyncio
from typing import Any

from legato import App
from legato.exceptions import WebSocketDisconnect
from legato.websocket import WebSocket

WELCOME = '{"t":"welcome","v":1,"conn":"fake","heartbeat":25000}'

#: case -> (send welcome first?, what to send: str for text, bytes for binary)
CASES: dict[str, tuple[bool, str | bytes]] = {
    "not_json": (True, "{nope"),
    "not_object": (True, "[1, 2]"),
    "binary": (True, b"\x00\x01"),
    "ref_not_int": (True, '{"t":"reply","ref":"1","data":{}}'),
    "t_not_string": (True, '{"t":7}'),
    "message_without_id": (True, '{"topic":"room:a","data":1}'),
    "member_without_conn": (True, '{"t":"joined","topic":"room:a","member":{}}'),
    "before_welcome": (False, '{"t":"reply","ref":1,"data":{}}'),
    "version_2": (False, '{"t":"welcome","v":2,"conn":"x","heartbeat":1000}'),
    "second_welcome": (True, WELCOME),
}

app = App()
#: case -> close codes the client sent, in order
closed_with: dict[str, list[int]] = {}
#: case -> connections made (the client reconnects after each failure)
connections: dict[str, int] = {}


@app.websocket("/fake", auto_accept=False, subprotocols=["legato.v1"])
async def fake(ws: WebSocket) -> None:
    case = ws.query_params.get("case", "")
    connections[case] = connections.get(case, 0) + 1
    await ws.accept("legato.v1")
    welcome, frame = CASES[case] if case in CASES else (True, "")
    if welcome:
        await ws.send_text(WELCOME)
    if isinstance(frame, bytes):
        await ws.send_bytes(frame)
    elif frame:
        await ws.send_text(frame)
    try:
        while True:
            await ws.receive_text()
    except WebSocketDisconnect as exc:
        closed_with.setdefault(case, []).append(exc.code)


@app.websocket("/silent", auto_accept=False, subprotocols=["legato.v1"])
async def silent(ws: WebSocket) -> None:
    """Accepts, never says welcome."""
    await ws.accept("legato.v1")
    await asyncio.sleep(30)


@app.websocket("/plain")
async def plain(ws: WebSocket) -> None:
    """A WebSocket route that does not speak legato.v1 at all."""
    await ws.receive_text()


async def noop(_: Any) -> None:
    return None


@app.websocket("/advice", auto_accept=False, subprotocols=["legato.v1"])
async def advice(ws: WebSocket) -> None:
    """welcome, then reconnect advice (300 ms, no jitter) and close 1013; counts visits."""
    connections["advice"] = connections.get("advice", 0) + 1
    visits.append(asyncio.get_running_loop().time())
    await ws.accept("legato.v1")
    await ws.send_text(WELCOME)
    await ws.send_text('{"t":"reconnect","delay":300,"jitter":0,"reason":"overload"}')
    await ws.close(1013, "overloaded")


visits: list[float] = []
