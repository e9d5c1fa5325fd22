"""The app that test_hub_processes.py serves with ``legato run hub_apps:app`` (in this
folder), several times over, all on the Redis hub named by LEGATO_TEST_HUB
(``redis://host:port/db?prefix=...``): one prefix per test keeps the runs apart.

- ``/ws/{topic}?name=&since=``: subscribes (with presence ``{"name", "pid"}``), then
  sends ``{"ready": name, "pid": os.getpid()}``; every text it receives is published as
  ``{"from": name, "text": ...}``, acknowledged with ``{"published": id}`` or, when the
  hub's Redis cannot be reached, answered with ``{"error": ...}`` on the same connection.
- ``POST /publish/{topic}`` (a JSON body): ``{"id": ...}``, or 503 while Redis is down.
- ``POST /feed/{topic}?count=&size=``: a live feed of ``count`` messages of ``size``
  characters, ``"00000xxx..."`` numbered from 0.
- ``GET /presence/{topic}``, ``/events`` (the hub's backend events), ``/stats``, ``/pid``.

Topics starting with "feed" buffer 32 messages per subscriber (P3).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from legato import App, JSONResponse, Request, WebSocket
from legato.hub import HubUnavailable

PID = os.getpid()
FEED_BUFFER = 32  # messages a subscriber of a "feed" topic may have waiting

# hub_strict: this app answers an outage itself (503, or an error on the connection).
app = App(hub=os.environ["LEGATO_TEST_HUB"], hub_history=100, hub_strict=True)
app.hub.configure("feed*", buffer=FEED_BUFFER, policy="drop_oldest")


def unavailable(exc: HubUnavailable) -> JSONResponse:
    return JSONResponse({"error": str(exc), "pid": PID}, status_code=503)


@app.websocket("/ws/{topic}", receive_type="text")
async def member(ws: WebSocket, topic: str, name: str = "anon",
                 since: str | None = None) -> None:
    async with app.hub.subscribe(ws, topic, since=since,
                                 presence={"name": name, "pid": PID}):
        await ws.send_json({"ready": name, "pid": PID})
        async for text in ws:
            try:
                message_id = await app.hub.publish(topic, {"from": name, "text": text})
            except HubUnavailable as exc:
                # Answered here, on this connection: it needs no Redis.
                await ws.send_json({"error": str(exc), "text": text})
            else:
                await ws.send_json({"published": message_id})


@app.post("/publish/{topic}")
async def publish(request: Request, topic: str) -> Any:
    try:
        message_id = await app.hub.publish(topic, await request.json())
    except HubUnavailable as exc:
        return unavailable(exc)
    return {"id": message_id, "pid": PID}


@app.post("/feed/{topic}")
async def feed(topic: str, count: int, size: int) -> Any:
    filler = "x" * size
    try:
        for n in range(count):
            await app.hub.publish(topic, f"{n:05d}{filler}")
            # A live feed, not one burst: a burst faster than any network fills every
            # subscriber's buffer, reading or not.
            await asyncio.sleep(0.001)
    except HubUnavailable as exc:
        return unavailable(exc)
    return {"published": count}


@app.get("/presence/{topic}")
async def presence(topic: str) -> Any:
    try:
        return await app.hub.presence(topic)
    except HubUnavailable as exc:
        return unavailable(exc)


@app.get("/events")
async def events() -> Any:
    return [[kind, details] for kind, details in app.hub.events]


@app.get("/stats")
async def stats() -> Any:
    return app.hub.stats()


@app.get("/pid")
async def pid() -> Any:
    return {"pid": PID}


# Channels (docs/channels.md) at /_legato/ws: test_channel_processes.py.
app.channel("room:{id}", history=100, presence=True)


@app.rpc("pid")
async def process_id() -> int:
    return PID
