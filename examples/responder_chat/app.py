"""A broadcast chat room with an HTML client and static files, plus text, JSON and
binary echoes (Responder's style, seed 004).

    python examples/responder_chat/app.py [--host 127.0.0.1] [--port 8000]

Open http://127.0.0.1:8000 in two tabs and chat. Every WebSocket route wants the token
(?token=demo-token, or set CHAT_TOKEN); the page passes it on.
"""

from __future__ import annotations

import argparse
import os
import secrets
from contextlib import suppress
from pathlib import Path
from typing import Any

from legato import App, FileResponse, Forbidden, WebSocket, WebSocketDisconnect

STATIC = Path(__file__).parent / "static"

#: What every WebSocket must present. A real app would hand out per-user tokens.
TOKEN = os.environ.get("CHAT_TOKEN", "demo-token")

app = App()
app.static("/static", str(STATIC))  # anything else the page needs goes in static/


@app.route("/")
async def index() -> FileResponse:
    # The page itself is a static file; FileResponse adds ETag and Last-Modified.
    return FileResponse(STATIC / "index.html")


@app.before_request(websocket=True)
async def check_token(ws: WebSocket) -> None:
    """Runs before every WebSocket handler. Raising Forbidden refuses the handshake with
    HTTP 403; accepting here lets the connection proceed (handlers need not accept)."""
    # compare_digest takes as long for a near miss as for a wild guess.
    if not secrets.compare_digest(ws.query_params.get("token", ""), TOKEN):
        raise Forbidden("missing or wrong token")
    await ws.accept()


# Everyone in the room. One set lives in one process: several worker processes would
# each have their own room, and would need a broker between them.
connected: set[WebSocket] = set()


@app.route("/chat", websocket=True)
async def chat(ws: WebSocket) -> None:
    connected.add(ws)
    try:
        while True:
            message = await ws.receive_text()
            for client in list(connected):  # a copy: someone may leave meanwhile
                # One client that vanished must not end the sender's connection.
                with suppress(WebSocketDisconnect):
                    await client.send_text(message)
    except WebSocketDisconnect:
        pass  # the tab was closed, with whatever code: not an error for a chat room
    finally:
        connected.discard(ws)  # always: a dead entry would be written to forever


@app.route("/ws", websocket=True)
async def echo(ws: WebSocket) -> None:
    # No try/except: when the client closes normally (1000/1001), receive_text() raises
    # WebSocketDisconnect and legato ends the handler quietly.
    while True:
        text = await ws.receive_text()
        await ws.send_text(f"echo: {text}")


@app.route("/json", websocket=True)
async def json_echo(ws: WebSocket) -> None:
    while True:
        data: Any = await ws.receive_json()  # not JSON → closed with 1007 by legato
        await ws.send_json({"type": "echo", "data": data})


@app.route("/binary", websocket=True)
async def binary_echo(ws: WebSocket) -> None:
    while True:
        data = await ws.receive_bytes()  # a text frame here → closed with 1003
        await ws.send_bytes(data[::-1])  # reversed, to show the bytes were handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
