"""The App the JS client's tests talk to (`legato run app:app`, from this folder).

LEGATO_TEST_HUB picks the hub (memory:// by default; a redis:// URL keeps history and
epochs across a server restart); LEGATO_TEST_JITTER the reconnect advice's jitter (s).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from legato import App
from legato.channels import ChannelError

jitter = os.environ.get("LEGATO_TEST_JITTER")
app = App(debug=True, hub=os.environ.get("LEGATO_TEST_HUB", "memory://"),
          channels_reconnect_jitter=float(jitter) if jitter else 0.2)

room = app.channel("room:{id}", history=100, presence=True)
app.channel("quiet:{id}")  # no history: resume cannot know what was missed
secret = app.channel("secret:{id}")


@secret.authorize
async def nobody(action: str) -> bool:
    return False


@room.on_join
async def greet(topic: str, data: Any) -> dict[str, Any]:
    # `topic`, not the placeholder `id`: see the report (on_join without authorize)
    return {"room": topic.split(":", 1)[1]}


@app.rpc("add")
async def add(data: Any) -> Any:
    return data["a"] + data["b"]


@app.rpc("refuse")
async def refuse(data: Any) -> Any:
    raise ChannelError("forbidden", "not you", {"why": data})


@app.rpc("boom")
async def boom(data: Any) -> Any:
    raise ValueError("it broke")


@app.rpc("sleep")
async def sleep(data: Any) -> Any:
    await asyncio.sleep(data)
    return data


@app.rpc("whoami")
async def whoami(data: Any, ws: Any) -> Any:
    return dict(ws.query_params)
