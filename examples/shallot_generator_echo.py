"""An echo written as an async generator: messages in, yielded events out (Shallot's
style, seed 003).

    python examples/shallot_generator_echo.py [--host 127.0.0.1] [--port 8000]

Open http://127.0.0.1:8000 and type; "exit" makes the server say goodbye and close with
1001 (going away). The server log shows the lifecycle callbacks.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from typing import Any

from legato import App, ws_accept, ws_close, ws_send

logger = logging.getLogger("shallot_echo")

app = App()

#: The one subprotocol this endpoint speaks; clients may offer it, none have to.
SUBPROTOCOL = "echo.v1"

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Generator echo</title></head>
<body>
<h1>Generator echo</h1>
<p>Type <code>exit</code> to leave.</p>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<ul id="log"></ul>
<script>
const scheme = location.protocol === "https:" ? "wss" : "ws";
const ws = new WebSocket(`${scheme}://${location.host}/echo`, ["echo.v1"]);
const log = (text) => {
  const item = document.createElement("li");
  item.textContent = text;
  document.getElementById("log").prepend(item);
};
ws.onopen = () => log(`connected (subprotocol: ${ws.protocol || "none"})`);
ws.onmessage = (event) => log(event.data);
ws.onclose = (event) => log(`closed with ${event.code}`);
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value);
  input.value = "";
};
</script>
</body></html>
"""


@app.route("/")
async def index() -> str:
    return PAGE


async def choose_subprotocol(scope: dict[str, Any]) -> dict[str, Any]:
    """on_connect answers the handshake: accept, naming our subprotocol only when the
    client offered it (choosing one it did not offer would fail its handshake)."""
    if SUBPROTOCOL in scope.get("subprotocols", ()):
        return ws_accept(subprotocol=SUBPROTOCOL)
    return ws_accept()


async def client_left(scope: dict[str, Any], code: int) -> None:
    """Runs only when the client started the closing."""
    logger.info("client disconnected from %s with %d", scope["path"], code)


async def connection_closed(scope: dict[str, Any], code: int) -> None:
    """Runs whoever closed: the place for cleanup that must always happen."""
    logger.info("connection to %s closed with %d", scope["path"], code)


@app.websocket("/echo", on_connect=choose_subprotocol, on_disconnect=client_left,
               on_close=connection_closed)
async def echo(scope: dict[str, Any], receiver: AsyncIterator[str | bytes]
               ) -> AsyncIterator[dict[str, Any]]:
    """``scope`` is the handshake, ``receiver`` iterates incoming messages; every dict
    yielded is sent as an event. Ending the generator would close with 1000."""
    async for message in receiver:
        if isinstance(message, bytes):
            yield ws_send(message)  # binary in, binary out
            continue
        yield ws_send(f"@ECHO: {message}")
        if message == "exit":
            yield ws_send("bye")
            yield ws_close(1001)  # nothing can be sent after this


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    # Our own handler: a root one (basicConfig) would print legato's lines a second time.
    logger.addHandler(logging.StreamHandler())
    logger.setLevel(logging.INFO)
    app.run(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
