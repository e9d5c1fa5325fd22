"""socketify (Python bindings of uWebSockets) with its native pub/sub: a subscriber's
socket does ``ws.subscribe("bench")``, and every message on /pub goes out through
``app.publish("bench", ...)``, which uWebSockets fans out in C.

Usage: python socketify_app.py PORT
"""

from __future__ import annotations

import sys

from socketify import App, CompressOptions

app = App()


def echo(ws, message, opcode):  # type: ignore[no-untyped-def]
    ws.send(message, opcode)


def sub_open(ws):  # type: ignore[no-untyped-def]
    ws.subscribe("bench")


def pub_message(ws, message, opcode):  # type: ignore[no-untyped-def]
    app.publish("bench", message, opcode)


def ignore(ws, message, opcode):  # type: ignore[no-untyped-def]
    pass


BEHAVIOR = {"compression": CompressOptions.DISABLED, "max_payload_length": 16 * 1024 * 1024,
            "idle_timeout": 120}
app.ws("/echo", {**BEHAVIOR, "message": echo})
app.ws("/sub", {**BEHAVIOR, "open": sub_open, "message": ignore})
app.ws("/pub", {**BEHAVIOR, "message": pub_message})

if __name__ == "__main__":
    app.listen({"port": int(sys.argv[1]), "host": "127.0.0.1"}, lambda config: None)
    app.run()
