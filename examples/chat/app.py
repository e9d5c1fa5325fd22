"""The chat example that `make run` starts: rooms, an HTML + JavaScript client, and every
message broadcast to everyone in the room.

    python examples/chat/app.py            # http://127.0.0.1:8000

Open the page in two tabs, pick the same room, and talk. Each room is a set of open
WebSockets kept by an app-scoped provider; a message is encoded once and sent to each
member (the built-in server reuses the encoded frame for all of them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from legato import App, FileResponse, WebSocket, WebSocketDisconnect, jsoncodec

HERE = Path(__file__).parent
MAX_TEXT = 2000  # characters per chat message; longer ones are cut

app = App()
app.static("/static", str(HERE / "static"))


class Rooms:
    """Who is in which room; the only state the chat keeps."""

    def __init__(self) -> None:
        self.members: dict[str, set[WebSocket]] = {}

    def join(self, room: str, ws: WebSocket) -> int:
        self.members.setdefault(room, set()).add(ws)
        return len(self.members[room])

    def leave(self, room: str, ws: WebSocket) -> int:
        members = self.members.get(room, set())
        members.discard(ws)
        if not members:
            self.members.pop(room, None)
        return len(members)

    async def broadcast(self, room: str, event: dict[str, Any]) -> None:
        text = jsoncodec.dumps_str(event)  # encoded once, the same text for everyone
        for ws in list(self.members.get(room, ())):
            try:
                await ws.send_text(text)
            except WebSocketDisconnect:
                self.leave(room, ws)  # left while we were sending: its handler cleans up too


@app.provider(scope="app")
def rooms() -> Rooms:
    return Rooms()


@app.route("/")
async def index() -> FileResponse:
    return FileResponse(HERE / "static" / "index.html")


@app.websocket("/ws/{room}", receive_type="json")
async def chat(ws: WebSocket, room: str, rooms: Rooms, name: str = "guest") -> None:
    """One member of ``room``: everything it says goes to everyone there, itself too."""
    name = name.strip()[:32] or "guest"
    count = rooms.join(room, ws)
    try:
        await rooms.broadcast(room, {"type": "join", "user": name, "count": count})
        async for message in ws:
            text = str(message.get("text", "")) if isinstance(message, dict) else ""
            if text.strip():
                await rooms.broadcast(room, {"type": "message", "user": name,
                                             "text": text[:MAX_TEXT], "ts": time.time()})
    finally:
        count = rooms.leave(room, ws)
        await rooms.broadcast(room, {"type": "leave", "user": name, "count": count})


def main() -> None:
    parser = argparse.ArgumentParser(description="legato chat example")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
