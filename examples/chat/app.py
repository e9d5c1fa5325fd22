"""The chat example that `make run` starts: rooms, an HTML page on legato's browser
client (channels, docs/channels.md), every message broadcast to everyone in the room
through the hub, with history so a reloaded page catches up and a page that lost its
connection (the server restarted, the network dropped) reconnects and resumes by itself.

    python examples/chat/app.py                     # http://127.0.0.1:8000

The same chat across processes (and hosts), through Redis: examples/chat_redis.py runs
this file once per port with ``LEGATO_HUB=redis://...``

    python examples/chat_redis.py                   # http://127.0.0.1:8001 and :8002

Open the page in two tabs, pick the same room, and talk; restart the server and keep
typing: what you type while it is down is sent when it is back, and every page shows
every message once.

Two ways in, one room: pages join the channel ``room:{id}`` through
``/_legato/client.js``; plain WebSocket clients (websocat, scripts) use ``/ws/{room}``
with JSON ``{"text": ...}``. Both publish the same messages to the same topic.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dataclasses import dataclass
from typing import Any

from legato import App, FileResponse, WebSocket
from legato.channels import ChannelError

HERE = Path(__file__).parent
MAX_TEXT = 2000  # characters per chat message; longer ones are cut
HISTORY = 100  # messages a room keeps for pages that reload or join late

app = App(hub=os.environ.get("LEGATO_HUB", "memory://"), hub_history=HISTORY)
app.static("/static", str(HERE / "static"))


@dataclass
class Line:
    """What a page publishes; the server adds who said it and when."""

    text: str


def member(data: Any) -> dict[str, str]:
    """A page's presence in its room: the name it joined with, trimmed."""
    name = data.get("name") if isinstance(data, dict) else None
    return {"name": str(name or "").strip()[:32] or "guest"}


room = app.channel("room:{id}", message=Line, history=HISTORY, presence=member)


@room.on_publish
def said(message: Line, member: dict[str, str]) -> dict[str, Any]:
    text = message.text.strip()
    if not text:
        raise ChannelError("invalid", "say something")
    return {"type": "message", "user": member["name"], "text": text[:MAX_TEXT],
            "ts": time.time()}


@app.route("/")
async def index() -> FileResponse:
    return FileResponse(HERE / "static" / "index.html")


@app.websocket("/ws/{room}", receive_type="json")
async def chat(ws: WebSocket, room: str, name: str = "guest", since: str = "0") -> None:
    """One member of ``room``: it first gets what it missed after ``since`` (the room's
    last 100 messages for a new page), then everything anyone in the room says. A page
    away for longer than the room's history lasts is told that it missed some."""
    name = name.strip()[:32] or "guest"
    topic = f"room:{room}"
    async with app.hub.subscribe(ws, topic, since=since, presence={"name": name}) as sub:
        if sub.gap is not None:  # P5: after what the room still keeps, say what it does not
            await ws.send_json({"type": "gap", "reason": sub.gap.reason, "kept": HISTORY})
        await app.hub.publish(topic, {"type": "join", "user": name,
                                      "count": len(await app.hub.presence(topic))})
        try:
            async for message in ws:
                text = str(message.get("text", "")) if isinstance(message, dict) else ""
                if text.strip() and await app.hub.publish(
                        topic, {"type": "message", "user": name, "text": text[:MAX_TEXT],
                                "ts": time.time()}) is None:
                    # The hub's broker is down: this process's members got it, others
                    # did not (docs/hub.md, "When Redis fails"). The page stays open.
                    await ws.send_json({"type": "notice",
                                        "text": "not everyone in the room got that"})
        finally:
            await app.hub.unsubscribe(ws, topic)
            await app.hub.publish(topic, {"type": "leave", "user": name,
                                          "count": len(await app.hub.presence(topic))})


def main() -> None:
    parser = argparse.ArgumentParser(description="legato chat example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
