"""Small raw ASGI 3 apps for the TestClient tests (the framework's App is not needed to
test the client: any ASGI app will do)."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

Scope = dict[str, Any]


async def read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def respond(send: Any, status: int = 200, body: bytes = b"",
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """HTTP: the request as JSON (method, path, query, headers, body, scheme, ...)."""
    assert scope["type"] == "http"
    body = await read_body(receive)
    report = {
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
        "query": scope["query_string"].decode(), "scheme": scope["scheme"],
        "root_path": scope["root_path"], "client": scope["client"], "server": scope["server"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }
    await respond(send, 200, json.dumps(report).encode(), [(b"content-type", b"application/json")])


async def streaming_app(scope: Scope, receive: Any, send: Any) -> None:
    """Three body parts with no Content-Length: the server sends them chunked."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    for part in (b"one ", b"two ", b"three"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


async def redirect_app(scope: Scope, receive: Any, send: Any) -> None:
    """/redirect/<status>/<n>: that status n times to /redirect/<status>/<n-1>; at 0, the
    method and body that arrived. /loop redirects to itself."""
    body = await read_body(receive)
    parts = scope["path"].strip("/").split("/")
    if parts[0] == "loop":
        await respond(send, 302, headers=[(b"location", b"/loop")])
    elif parts[0] == "redirect" and int(parts[2]) > 0:
        target = f"/redirect/{parts[1]}/{int(parts[2]) - 1}".encode()
        await respond(send, int(parts[1]), headers=[(b"location", target)])
    else:
        await respond(send, 200, f"{scope['method']} {scope['path']} {body.decode()}".encode())


async def cookie_app(scope: Scope, receive: Any, send: Any) -> None:
    """/set?name=value sets a cookie, /delete?name deletes it, /admin/set sets one on
    /admin only; every response echoes the Cookie header received."""
    await read_body(receive)
    cookie = dict(scope["headers"]).get(b"cookie", b"")
    query = scope["query_string"].decode()
    path = scope["path"]
    headers: list[tuple[bytes, bytes]] = []
    if path == "/set":
        headers.append((b"set-cookie", f"{query}; Path=/; HttpOnly; SameSite=Lax".encode()))
    elif path == "/delete":
        headers.append((b"set-cookie", f"{query}=; Path=/; Max-Age=0".encode()))
    elif path == "/expire":
        headers.append((b"set-cookie", f"{query}=; Path=/; "
                        "Expires=Thu, 01 Jan 1970 00:00:00 GMT".encode()))
    elif path == "/admin/set":
        headers.append((b"set-cookie", f"{query}; Path=/admin".encode()))
    await respond(send, 200, cookie, headers)


class Failure(Exception):
    """What the failing apps raise, so tests can tell it from anything else."""


async def failing_app(scope: Scope, receive: Any, send: Any) -> None:
    """/before raises before responding, /during after the first body part, /after once
    the response is complete."""
    await read_body(receive)
    if scope["path"] == "/before":
        raise Failure("before the response")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    if scope["path"] == "/during":
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise Failure("during the response")
    await send({"type": "http.response.body", "body": b"complete"})
    raise Failure("after the response")


async def silent_app(scope: Scope, receive: Any, send: Any) -> None:
    """Never answers (HTTP), never accepts (WebSocket)."""
    await asyncio.sleep(3600)


async def gzip_app(scope: Scope, receive: Any, send: Any) -> None:
    await respond(send, 200, gzip.compress(b"compressed text"),
                  [(b"content-encoding", b"gzip"), (b"content-type", b"text/plain")])


# ------------------------------------------------------------------------ WebSocket


async def ws_echo_app(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts with the last subprotocol offered (so the choice is visibly the app's) and
    an extra header, echoes every message in kind, and records the close code it gets."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept",
                "subprotocol": subprotocols[-1] if subprotocols else None,
                "headers": [(b"x-accepted", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            DISCONNECTS.append(message["code"])
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


#: Close codes ws_echo_app saw (tests clear it first).
DISCONNECTS: list[int] = []


async def ws_scope_app(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts and sends the interesting parts of its scope as one JSON text message."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({
        "path": scope["path"], "query": scope["query_string"].decode(),
        "scheme": scope["scheme"], "subprotocols": scope["subprotocols"],
        "headers": {n.decode(): v.decode() for n, v in scope["headers"]},
    })})
    await send({"type": "websocket.close", "code": 1000})


async def ws_deny_app(scope: Scope, receive: Any, send: Any) -> None:
    """Denies with 401 and a body, through the websocket.http.response extension."""
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Token")]})
    await send({"type": "websocket.http.response.body", "body": b"no token", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b", no entry"})


async def ws_close_before_accept_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.close", "code": 1008})


async def ws_server_close_app(scope: Scope, receive: Any, send: Any) -> None:
    """Sends one message, then closes with 4001 "go away"."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})
    await send({"type": "websocket.close", "code": 4001, "reason": "go away"})


async def ws_failing_app(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts, echoes one message, then raises on the next one."""
    await receive()
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": message["text"]})
    await receive()
    raise Failure("after accept")


async def ws_failing_before_accept_app(scope: Scope, receive: Any, send: Any) -> None:
    await receive()
    raise Failure("before accept")


async def ws_kinds_app(scope: Scope, receive: Any, send: Any) -> None:
    """Sends a binary message, then a text one."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "bytes": b"\x00\x01"})
    await send({"type": "websocket.send", "text": "text"})
    await receive()


async def ws_mute_app(scope: Scope, receive: Any, send: Any) -> None:
    """Accepts, then waits for the client to leave without sending anything."""
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


# ------------------------------------------------------------------------ lifespan


class LifespanApp:
    """Records lifespan events; puts {"started": True} in the lifespan state, which the
    HTTP route returns from its scope."""

    def __init__(self, fail_startup: bool = False) -> None:
        self.events: list[str] = []
        self.fail_startup = fail_startup

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": "no db"})
                        return
                    scope["state"]["started"] = True
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await read_body(receive)
        await respond(send, 200, json.dumps(scope.get("state", {})).encode())
