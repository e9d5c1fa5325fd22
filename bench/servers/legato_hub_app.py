"""legato's App with its hub (SPEC §6), written as a user would: served by ``python -m
legato run legato_hub_app:app`` (``--workers 2`` for the Redis backend).

/echo echoes every message (the harness's readiness probe); /sub subscribes the
connection to the topic "bench" and waits for it to end; every message on /pub is
published to "bench". ``hub_envelope=False``: subscribers receive the message as it was
published (text as text), byte for byte what the other servers send, instead of the
default ``{"topic", "id", "data"}`` envelope.

The hub backend comes from ``LEGATO_BENCH_HUB`` (default ``memory://``; the benchmark
sets a ``redis://`` URL for ``legato-hub-redis``). Instrumentation for the benchmark
only: each process prints one line when it is ready and, at shutdown, how many
subscribers it held at most (how the kernel spread them over the workers).
"""

from __future__ import annotations

import os

from legato import App, WebSocket

app = App(hub=os.environ.get("LEGATO_BENCH_HUB", "memory://"), hub_envelope=False)
held = peak = 0


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)


@app.websocket("/sub")
async def subscribe(ws: WebSocket) -> None:
    global held, peak
    await app.hub.subscribe(ws, "bench")
    held += 1
    peak = max(peak, held)
    try:
        await ws.wait_closed()
    finally:
        held -= 1


@app.websocket("/pub")
async def publish(ws: WebSocket) -> None:
    async for message in ws:
        await app.hub.publish("bench", message)


@app.on_startup
def ready() -> None:
    print(f"bench-worker {os.getpid()} ready", flush=True)


@app.on_shutdown
def report() -> None:
    print(f"bench-worker {os.getpid()} peak-subscribers {peak}", flush=True)
