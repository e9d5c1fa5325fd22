"""A chat page and its WebSocket served by one hybrid handler (Tremolo's style, seed 001).

    python examples/tremolo_hybrid_chat.py [--host 127.0.0.1] [--port 8000]

Open http://127.0.0.1:8000 and type: the server stamps each message with the time and a
guest name. A plain GET streams the page; an upgrade request to the same URL gets the
WebSocket. Separate routes are usually clearer; this shows that one handler can do both.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator

from legato import App, BadRequest, Request, WebSocket

app = App()

# The page is sent in three chunks: the WebSocket URL in the middle depends on the request.
PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>WebSocket chat</title></head>
<body>
<h1>WebSocket chat</h1>
<form id="form"><input id="message" autocomplete="off" autofocus><button>Send</button></form>
<ul id="messages"></ul>
<script>
"""
PAGE_TAIL = """
const messages = document.getElementById("messages");
socket.onmessage = (event) => {
  const item = document.createElement("li");
  item.textContent = event.data;  // textContent, never innerHTML: messages are untrusted
  messages.prepend(item);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();  // stay on the page instead of submitting the form
  const input = document.getElementById("message");
  socket.send(input.value);
  input.value = "";
};
</script>
</body></html>
"""


@app.on_request
@app.before_request(websocket=True)
async def refuse_odd_hosts(request: Request) -> None:
    """The Host header ends up inside the page's <script>: refuse any value that could
    break out of the JavaScript string (one hook, registered for HTTP and WebSocket)."""
    if any(char in request.host for char in "&<>\"'"):
        raise BadRequest("illegal host")


@app.route("/")
async def chat(request: Request, websocket: WebSocket | None = None) -> AsyncIterator[str]:
    """``websocket`` is the connection on an upgrade request and None otherwise."""
    if websocket is not None:
        # The client's port tells guests apart well enough for a demo.
        guest = f"Guest{request.client.port if request.client else 0}"
        # `async for` accepts the handshake and ends quietly when the tab is closed.
        async for message in websocket:
            await websocket.send(f"[{time.strftime('%H:%M:%S')}] {guest}: {message}")
        return
    # Not an upgrade: stream the page. An async generator is sent with chunked encoding.
    yield PAGE_HEAD
    ws_scheme = "wss" if request.scheme == "https" else "ws"
    yield f'const socket = new WebSocket("{ws_scheme}://{request.host}/");\n'
    yield PAGE_TAIL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
