"""legato's App echoing every message, for the Autobahn run (bench/autobahn.py).

Like bench/servers/legato_framework_app.py, with the App's message limit raised: case 9.x
sends messages of up to 16 MiB, and the App's own limit (1 MiB by default, W15) is the
one that holds for its routes, whatever the server's ``--ws-max-message-size`` says.
"""

from __future__ import annotations

from legato import App, WebSocket

app = App(max_message_size=64 * 1024 * 1024)


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)
