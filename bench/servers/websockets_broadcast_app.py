"""The ``websockets`` library's asyncio server (on uvloop), broadcasting with its own
``broadcast()`` (writes the frame to every connection without awaiting each send).

Usage: python websockets_broadcast_app.py PORT
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

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
            broadcast(subscribers, message)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
