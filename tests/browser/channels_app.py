"""The App the Chromium tests load the JS client from (`legato run channels_app:app`
or `uvicorn channels_app:app`, from this folder): one page that imports
`/_legato/client.js`, a room with presence and history, one rpc. LEGATO_TEST_HUB picks
the hub (memory:// by default)."""

from __future__ import annotations

import os
from typing import Any

from legato import App, HTMLResponse

app = App(channels_reconnect_jitter=0.2, hub=os.environ.get("LEGATO_TEST_HUB", "memory://"))
app.channel("room:{id}", history=100, presence=True)

PAGE = """<!doctype html><meta charset="utf-8"><title>legato client</title>
<script type="module">
  import { Client, LegatoError } from "/_legato/client.js";
  window.legato = { Client, LegatoError };
  document.title = "ready";
</script>"""


@app.get("/")
async def page() -> Any:
    return HTMLResponse(PAGE)


@app.rpc("add")
async def add(data: Any) -> Any:
    return data["a"] + data["b"]
