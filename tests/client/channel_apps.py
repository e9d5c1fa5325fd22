"""The App the client tests talk to: served in-process (``conftest.live``) and by
``legato run channel_apps:app`` in a subprocess (restarts). ``LEGATO_TEST_HUB`` picks
the hub (memory by default; a Redis URL makes epochs and history outlive a restart)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from legato import App

app = App(hub=os.environ.get("LEGATO_TEST_HUB", "memory://"), hub_history=100,
          channels_reconnect_jitter=0.05, debug=True)

room = app.channel("room:{id}", history=100, presence=True)
plain = app.channel("plain:{id}")  # no presence, no history


@room.authorize
async def may(action: str, id: str) -> bool:
    return not (id == "secret" or (action == "publish" and id == "readonly"))


@room.on_join
async def welcome(id: str, data: Any) -> dict[str, Any]:
    return {"room": id}


@app.rpc("add")
async def add(data: Any) -> int:
    return int(data["a"]) + int(data["b"])


@app.rpc("sleep")
async def sleep(data: Any) -> str:
    await asyncio.sleep(float(data))
    return "slept"


@app.rpc("boom")
async def boom(data: Any) -> None:
    raise RuntimeError("boom went the handler")
