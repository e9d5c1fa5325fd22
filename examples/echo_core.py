"""An echo page served straight from legato's sans-I/O protocol core.

No App and no built-in server: a minimal asyncio adapter around :mod:`legato.protocol`,
to show what the sans-I/O core asks of an I/O layer (about what legato's server does,
minus its limits, keep-alive, backpressure and routing). It is the protocol core's
"hello world", not a way to serve apps: for that, `app.run()` or `legato run`
(`make run` starts the chat example). Open http://127.0.0.1:8000 and type.

    python examples/echo_core.py --port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from legato.protocol import (
    BytesMessage,
    Connection,
    Headers,
    ServerHandshake,
    TextMessage,
    is_upgrade_request,
)
from legato.exceptions import HandshakeRejected
from legato.protocol.http import HeadError, find_head_end, parse_request_head, serialize_response

PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>legato echo</title></head>
<body>
<h1>legato echo</h1>
<form id="form"><input id="text" autocomplete="off" autofocus><button>Send</button></form>
<ul id="log"></ul>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
const log = (text) => {
  const li = document.createElement("li"); li.textContent = text;
  document.getElementById("log").prepend(li);
};
ws.onopen = () => log("connected");
ws.onmessage = (event) => log(event.data);
ws.onclose = (event) => log(`closed ${event.code}`);
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  ws.send(input.value); input.value = "";
};
</script>
</body></html>
"""

HANDSHAKE = ServerHandshake()


class EchoProtocol(asyncio.Protocol):
    """HTTP head first; then either the page, or a WebSocket that echoes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.ws: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.on_ws_data(data)
            return
        self.head += data
        try:
            end = find_head_end(self.head)
            if end is None:
                return
            request = parse_request_head(self.head[:end])
        except HeadError as exc:
            self.respond(exc.status_code, str(exc).encode())
            return
        rest, self.head = self.head[end:], b""
        if request.target.split("?")[0] == "/ws" and is_upgrade_request(request.headers):
            self.upgrade(request.method, request.http_version, request.headers, rest)
        elif request.target.split("?")[0] == "/":
            self.respond(200, PAGE, "text/html; charset=utf-8")
        else:
            self.respond(404, b"not found")

    def upgrade(self, method: str, version: str, headers: Headers, rest: bytes) -> None:
        assert self.transport is not None
        try:
            offer = HANDSHAKE.check(method, version, headers)
        except HandshakeRejected as exc:
            self.transport.write(HANDSHAKE.reject(exc.status_code, exc.reason.encode(),
                                                  exc.headers))
            self.transport.close()
            return
        accepted = HANDSHAKE.accept(offer)
        self.transport.write(accepted.response())
        self.ws = accepted.connection()
        if rest:
            self.on_ws_data(rest)

    def on_ws_data(self, data: bytes) -> None:
        assert self.ws is not None and self.transport is not None
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, TextMessage):
                ws.send_text(f"You said: {event.data}")
            elif isinstance(event, BytesMessage):
                ws.send_bytes(event.data)
        out = ws.data_to_send()
        if out:
            self.transport.write(out)
        if ws.close_transport():
            self.transport.close()

    def respond(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        assert self.transport is not None
        self.transport.write(serialize_response(status, [
            ("Content-Type", content_type), ("Content-Length", str(len(body))),
            ("Connection", "close")], body))
        self.transport.close()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port)
    logging.getLogger("legato").info("echo demo on http://%s:%d", host, port)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"legato echo demo: http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
