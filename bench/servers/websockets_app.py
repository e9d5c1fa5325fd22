"""The ``websockets`` library's asyncio server (on uvloop).

Usage: python websockets_app.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

subscribers: set[ServerConnection] = set()


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
