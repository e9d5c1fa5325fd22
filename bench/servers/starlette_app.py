"""uvicorn (uvloop + httptools, default WebSocket implementation) + Starlette.

Usage: python starlette_app.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

subscribers: set[WebSocket] = set()


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


async def sub(websocket: WebSocket) -> None:
    await websocket.accept()
    subscribers.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        subscribers.discard(websocket)


async def pub(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            for subscriber in list(subscribers):
                try:
                    await subscriber.send_text(text)
                except Exception:  # noqa: BLE001 - a subscriber that left
                    subscribers.discard(subscriber)
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/sub", sub),
                        WebSocketRoute("/pub", pub)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop",
                http="httptools", log_level="warning", lifespan="off")
