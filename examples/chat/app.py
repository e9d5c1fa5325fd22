"""The chat example that `make run` starts: rooms, an HTML + JavaScript client, every
message broadcast to everyone in the room through the hub, with history so a reloaded
page catches up.

    python examples/chat/app.py                     # http://127.0.0.1:8000

The same chat across processes (and hosts), through Redis: examples/chat_redis.py runs
this file once per port with ``LEGATO_HUB=redis://...``

    python examples/chat_redis.py                   # http://127.0.0.1:8001 and :8002

Open the page in two tabs, pick the same room, and talk; reload a tab and it gets what it
missed (the page remembers the id of the last message it saw and resumes with since=).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from legato import App, FileResponse, WebSocket

HERE = Path(__file__).parent
MAX_TEXT = 2000  # characters per chat message; longer ones are cut
HISTORY = 100  # messages a room keeps for pages that reload or join late

app = App(hub=os.environ.get("LEGATO_HUB", "memory://"), hub_history=HISTORY)
app.static("/static", str(HERE / "static"))


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
                if text.strip():
                    await app.hub.publish(topic, {"type": "message", "user": name,
                                                  "text": text[:MAX_TEXT], "ts": time.time()})
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
