"""tremolo's own framework and WebSocket support (on uvloop). keepalive_connections is
raised from 512: tremolo stops serving upgraded connections beyond that many.

Usage: python tremolo_app.py PORT
"""

from __future__ import annotations

import sys

from tremolo import Application

app = Application()
subscribers: set = set()


@app.route("/echo")
async def echo(websocket=None, **server):  # noqa: ANN001, ANN003, ANN201
    async for message in websocket:
        await websocket.send(message)


@app.route("/sub")
async def sub(websocket=None, **server):  # noqa: ANN001, ANN003, ANN201
    subscribers.add(websocket)
    try:
        async for _ in websocket:
            pass
    finally:
        subscribers.discard(websocket)


@app.route("/pub")
async def pub(websocket=None, **server):  # noqa: ANN001, ANN003, ANN201
    async for message in websocket:
        for subscriber in list(subscribers):
            try:
                await subscriber.send(message)
            except Exception:  # noqa: BLE001 - a subscriber that left
                subscribers.discard(subscriber)


if __name__ == "__main__":
    app.run("127.0.0.1", int(sys.argv[1]), loop="uvloop", log_level="WARNING",
            keepalive_connections=100_000)
