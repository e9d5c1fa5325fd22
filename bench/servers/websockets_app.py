"""The ``websockets`` library's asyncio server (on uvloop).

/pub sends to each subscriber in turn (``await send()``, bench/server.py), or with
``--broadcast`` through the library's own ``broadcast()``, which writes the frame to every
connection without awaiting each send (bench/hub.py).

Usage: python websockets_app.py PORT [--broadcast]
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

subscribers: set[ServerConnection] = set()
BROADCAST = "--broadcast" in sys.argv


async def handler(websocket: ServerConnection) -> None:
    path = websocket.request.path
    if path == "/echo":
        async for message in websocket:
            await websocket.send(message)
    elif path == "/sub":
        subscribers.add(websocket)
        try:
            await websocket.wait_closed()
        finally:
            subscribers.discard(websocket)
    elif path == "/pub":
        async for message in websocket:
            if BROADCAST:
                broadcast(subscribers, message)
                continue
            for subscriber in list(subscribers):
                try:
                    await subscriber.send(message)
                except ConnectionClosed:
                    subscribers.discard(subscriber)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
