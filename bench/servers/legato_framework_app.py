"""legato's App, written as a user would: served by ``python -m legato run
legato_framework_app:app`` and compared with the bare ASGI app (legato_app.py) to
measure what the framework layer costs (issue 4: within 10 %).

/echo echoes every message; /sub waits for the connection to end while it is in the
subscriber set; every message on /pub is sent to each subscriber in turn.
"""

from __future__ import annotations

from legato import App, WebSocket, WebSocketDisconnect

app = App()
subscribers: set[WebSocket] = set()


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket("/sub")
async def subscribe(ws: WebSocket) -> None:
    subscribers.add(ws)
    try:
        await ws.wait_closed()
    finally:
        subscribers.discard(ws)


@app.websocket("/pub")
async def publish(ws: WebSocket) -> None:
    async for message in ws:
        for subscriber in list(subscribers):
            try:
                await subscriber.send(message)
            except WebSocketDisconnect:
                subscribers.discard(subscriber)
