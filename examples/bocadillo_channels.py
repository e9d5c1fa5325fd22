"""JSON channels, a chat room kept by providers, and a key-checked route (Bocadillo's
style, seed 002).

    python examples/bocadillo_channels.py [--host 127.0.0.1] [--port 8000]

Open http://127.0.0.1:8000 in two tabs and chat: each tab sees the other's messages,
and a tab opened later first receives what was said before it came.
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from contextlib import suppress
from typing import Any

from legato import App, WebSocket, WebSocketDisconnect

app = App()

#: The key /hello asks for. Set LEGATO_API_KEY when running this anywhere but a laptop.
API_KEY = os.environ.get("LEGATO_API_KEY", "not-a-secret")

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Chat room</title></head>
<body>
<h1>Chat room</h1>
<ul id="messages"></ul>
<form id="form">
  <input id="user" placeholder="Your name">
  <input id="text" placeholder="Say something" autocomplete="off">
  <button>Send</button>
</form>
<script>
const scheme = location.protocol === "https:" ? "wss" : "ws";
const ws = new WebSocket(`${scheme}://${location.host}/chat`);
const text = document.getElementById("text");
ws.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.type !== "message") return;  // ignore kinds this page does not know
  const item = document.createElement("li");
  item.textContent = `${message.user}: ${message.text}`;  // never innerHTML: untrusted
  document.getElementById("messages").append(item);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  if (!text.value) return;
  const user = document.getElementById("user").value;
  ws.send(JSON.stringify({type: "message", user: user, text: text.value}));
  text.value = "";
};
</script>
</body></html>
"""


@app.route("/")
async def index() -> str:
    return PAGE  # a str is sent as text/html


# ---------------------------------------------------------------- typed parameters


@app.websocket_route("/chat/{channel}", value_type="json")
async def channel_echo(ws: WebSocket, channel: str, anonymous: bool = False) -> None:
    """``channel`` comes from the path, ``anonymous`` from the query string (?anonymous=1);
    value_type="json" decodes every message and encodes every reply."""
    user = "Anonymous" if anonymous else ws.headers.get("user", "Anonymous")
    async for message in ws:
        await ws.send({"channel": channel, "user": user, "message": message})


# ------------------------------------------------ the chat room, state in providers


@app.provider(scope="app")
def clients() -> set[WebSocket]:
    """Everyone in the room. App-scoped: one set, made at startup, shared by all."""
    return set()


@app.provider(scope="app")
def history() -> deque[dict[str, str]]:
    """The last 100 messages, replayed to newcomers; bounded so memory stays flat."""
    return deque(maxlen=100)


# Browsers may drop a closing tab without a close frame (1006): for a chat room that is
# an ordinary goodbye, so it ends the handler quietly like 1000 and 1001 do.
@app.websocket_route("/chat", value_type="json", caught_close_codes=(1000, 1001, 1006))
async def chat_room(ws: WebSocket, clients: set[WebSocket],
                    history: deque[dict[str, str]]) -> None:
    # Copy the history and join in one step (no await between): every message is then
    # either in the copy or broadcast to us later, never lost, never twice.
    missed = list(history)
    clients.add(ws)
    try:
        for past in missed:
            await ws.send(past)
        async for data in ws:
            message = _chat_message(data)
            if message is not None:
                history.append(message)
                await _broadcast(clients, message)
    finally:
        clients.discard(ws)  # also when the connection fails: no dead entries left


def _chat_message(data: Any) -> dict[str, str] | None:
    """Rebuild what the room relays, so a client cannot push arbitrary JSON to others."""
    if not isinstance(data, dict) or data.get("type") != "message" or not data.get("text"):
        return None
    return {"type": "message", "user": str(data.get("user") or "Anonymous"),
            "text": str(data["text"])}


async def _broadcast(clients: set[WebSocket], message: dict[str, str]) -> None:
    for client in list(clients):  # a copy: the set changes when someone leaves meanwhile
        # A client that left mid-broadcast must not end the sender's own connection.
        with suppress(WebSocketDisconnect):
            await client.send(message)


# ------------------------------------------ manual accept: reject, then `async with`


@app.websocket_route("/hello", auto_accept=False)
async def hello(ws: WebSocket) -> None:
    """A naive API-key check. Before accept, reject() answers the handshake with HTTP 403,
    which clients report as a failed connection; the handler stops there."""
    if ws.headers.get("api-key") != API_KEY:
        await ws.reject(403, "a valid api-key header is required")
    async with ws:  # accepts on entry, closes with 1000 on exit
        await ws.send("hello, key holder")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
