"""aiohttp's web server (on uvloop, as the other asyncio servers here).

Usage: python aiohttp_app.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import WSMsgType, web

subscribers: set[web.WebSocketResponse] = set()


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


async def sub(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    subscribers.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)
    return ws


async def pub(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            for subscriber in list(subscribers):
                try:
                    await subscriber.send_str(msg.data)
                except Exception:  # noqa: BLE001 - a subscriber that left
                    subscribers.discard(subscriber)
    return ws


app = web.Application()
app.add_routes([web.get("/echo", echo), web.get("/sub", sub), web.get("/pub", pub)])

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=uvloop.new_event_loop())
