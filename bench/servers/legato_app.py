"""legato: a plain ASGI 3 app, served by ``python -m legato run legato_app:app``.

/echo echoes every message; /sub joins the subscriber set; every message on /pub is
sent to each subscriber in turn (a set of ``send`` callables and a loop over them).
"""

from __future__ import annotations

from typing import Any

subscribers: set[Any] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not found"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    path = scope["path"]
    if path == "/echo":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
    elif path == "/sub":
        subscribers.add(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            subscribers.discard(send)
    elif path == "/pub":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            out = {"type": "websocket.send", "text": message["text"]}
            for subscriber in list(subscribers):
                try:
                    await subscriber(out)
                except Exception:  # noqa: BLE001 - a subscriber that left
                    subscribers.discard(subscriber)
