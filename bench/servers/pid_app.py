"""For bench/workers.py: each WebSocket on /pid is told the pid of the worker serving it."""

from __future__ import annotations

import os

from legato import App, WebSocket

app = App()


@app.websocket("/pid")
async def pid(ws: WebSocket) -> None:
    await ws.send_text(str(os.getpid()))
    async for _ in ws:
        pass
