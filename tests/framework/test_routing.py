"""SPEC §2, routing and handlers (R1-R10), through the App in every mode of the harness:
in-process TestClient, legato's built-in server and uvicorn (conftest.py).

Handlers record what happens on the server side in plain lists; :func:`wait_until`
polls them, since over real sockets a callback may run just after the client returns.
"""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

import legato
from legato.scope import route_path
from legato import (
    App,
    BadRequest,
    Close,
    Forbidden,
    NotFound,
    PlainTextResponse,
    WebSocketDenied,
    WebSocketDisconnect,
    ws_accept,
    ws_close,
    ws_send,
)

U = uuid.UUID("12345678-1234-5678-1234-567812345678")


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def denied(client: Any, path: str, **kw: Any) -> WebSocketDenied:
    """The WebSocketDenied a handshake to ``path`` ends with."""
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect(path, **kw):
            pass
    return info.value


def typed(values: dict[str, Any]) -> dict[str, list[str]]:
    return {k: [type(v).__name__, str(v)] for k, v in values.items()}


# ---------------------------------------------------------------------------------- R1


def converting_app() -> App:
    app = App()

    @app.websocket("/conv/{s}/{count}/{ratio}/{flag}/{ident}/{rest:path}")
    async def conv(ws: legato.WebSocket, s: str, count: int, ratio: float, flag: bool,
                   ident: UUID, rest: str, limit: int = 7, scale: float = 0.5,
                   verbose: bool = False, token: UUID | None = None,
                   name: str = "dflt") -> None:
        await ws.send_json(typed(dict(s=s, count=count, ratio=ratio, flag=flag, ident=ident,
                                      rest=rest, limit=limit, scale=scale, verbose=verbose,
                                      token=token, name=name)))

    @app.websocket("/pattern/{n:int}/{key:uuid}/{x:float}/{on:bool}")
    async def pattern(ws: legato.WebSocket, n, key, x, on) -> None:
        await ws.send_json(typed(dict(n=n, key=key, x=x, on=on)))

    @app.websocket("/needs")
    async def needs(ws: legato.WebSocket, page: int) -> None:
        await ws.send_json(page)

    @app.get("/conv/{s}/{count}/{ratio}/{flag}/{ident}/{rest:path}")
    async def conv_http(s: str, count: int, ratio: float, flag: bool, ident: UUID, rest: str,
                        limit: int = 7, scale: float = 0.5, verbose: bool = False,
                        token: UUID | None = None, name: str = "dflt") -> dict[str, Any]:
        return typed(dict(s=s, count=count, ratio=ratio, flag=flag, ident=ident, rest=rest,
                          limit=limit, scale=scale, verbose=verbose, token=token, name=name))

    @app.get("/needs")
    async def needs_http(page: int) -> int:
        return page

    return app


CONV = f"/conv/abc/42/2.5/true/{U}/a/b/c.txt"
CONVERTED = {"s": ["str", "abc"], "count": ["int", "42"], "ratio": ["float", "2.5"],
             "flag": ["bool", "True"], "ident": ["UUID", str(U)],
             "rest": ["str", "a/b/c.txt"]}
DEFAULTS = {"limit": ["int", "7"], "scale": ["float", "0.5"], "verbose": ["bool", "False"],
            "token": ["NoneType", "None"], "name": ["str", "dflt"]}
QUERY = f"?limit=-3&scale=1e3&verbose=yes&token={U.hex}&name=x%20y"
QUERIED = {"limit": ["int", "-3"], "scale": ["float", "1000.0"],
           "verbose": ["bool", "True"], "token": ["UUID", str(U)], "name": ["str", "x y"]}


def test_R1_websocket_path_and_query_parameters_convert_to_their_annotated_types(connect):
    client = connect(converting_app())
    with client.websocket_connect(CONV) as ws:
        assert ws.receive_json() == {**CONVERTED, **DEFAULTS}
    with client.websocket_connect(CONV + QUERY) as ws:
        assert ws.receive_json() == {**CONVERTED, **QUERIED}
    # {name:int} in the pattern types a parameter the handler leaves unannotated.
    with client.websocket_connect(f"/pattern/-5/{U}/0.25/off") as ws:
        assert ws.receive_json() == {"n": ["int", "-5"], "key": ["UUID", str(U)],
                                     "x": ["float", "0.25"], "on": ["bool", "False"]}


def test_R1_http_path_and_query_parameters_convert_the_same_way(connect):
    client = connect(converting_app())
    assert client.get(CONV).json() == {**CONVERTED, **DEFAULTS}
    assert client.get(CONV + QUERY).json() == {**CONVERTED, **QUERIED}


BAD_VALUES = [
    ("/conv/abc/many/2.5/true/{U}/r", "count"),
    ("/conv/abc/1/wide/true/{U}/r", "ratio"),
    ("/conv/abc/1/2.5/maybe/{U}/r", "flag"),
    ("/conv/abc/1/2.5/true/not-a-uuid/r", "ident"),
    ("/conv/abc/1/2.5/true/{U}/r?limit=ten", "limit"),
    ("/conv/abc/1/2.5/true/{U}/r?verbose=perhaps", "verbose"),
    ("/conv/abc/1/2.5/true/{U}/r?token=zzz", "token"),
    ("/conv/abc/1/2.5/true/{U}/r?scale=nan", "scale"),
    ("/pattern/x/{U}/1/on", "n"),
    ("/needs", "page"),  # a required query parameter that is missing
]


def test_R1_path_or_query_value_that_does_not_convert_denies_the_handshake_400_naming_it(
        connect):
    client = connect(converting_app())
    for template, name in BAD_VALUES:
        exc = denied(client, template.format(U=U))
        assert exc.status_code == 400, template
        assert f"'{name}'" in bytes(exc.body).decode(), (template, exc.body)


def test_R1_http_value_that_does_not_convert_is_a_400_naming_the_parameter(connect):
    client = connect(converting_app())
    for template, name in BAD_VALUES:
        if template.startswith("/pattern"):
            continue
        response = client.get(template.format(U=U))
        assert response.status_code == 400, template
        assert f"'{name}'" in response.text, (template, response.text)


def test_R1_bocadillo_chat_route_with_typed_channel_and_boolean_query_flag(connect):
    # Seed 002, as its users write it.
    app = App()

    @app.websocket_route("/chat/{channel}", value_type="json")
    async def chat(ws, channel: str, anonymous: bool = False):
        user = "Anonymous" if anonymous else ws.headers["user"]
        async for message in ws:
            channel_message = {"user": user, "message": message, "channel": channel}
            await ws.send(channel_message)

    client = connect(app)
    with client.websocket_connect("/chat/general", headers={"user": "ann"}) as ws:
        ws.send_json({"text": "hi"})
        assert ws.receive_json() == {"user": "ann", "message": {"text": "hi"},
                                     "channel": "general"}
    with client.websocket_connect("/chat/random?anonymous=true") as ws:
        ws.send_json([1, 2])
        assert ws.receive_json() == {"user": "Anonymous", "message": [1, 2],
                                     "channel": "random"}


# ---------------------------------------------------------------------------------- R2


def test_R2_tremolo_hybrid_handler_gets_none_over_http_and_the_websocket_on_upgrade(connect):
    # Seed 000, as written: HTTP gets the NotFound the handler raises, an upgrade the echo.
    app = App()

    @app.route("/ws")
    async def ws_handler(websocket=None):
        if websocket is None:
            raise NotFound

        await websocket.accept()

        while True:
            message = await websocket.receive()
            await websocket.send(f"You said: {message}")

    @app.route("/page", methods=["GET", "POST"])
    async def page(request, websocket=None):
        if websocket is None:
            return f"<h1>{request.method} page</h1>"
        async for message in websocket:
            await websocket.send(f"page got {message}")

    client = connect(app)
    assert client.get("/ws").status_code == 404
    with client.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "You said: hello"
        ws.send_text("again")
        assert ws.receive_text() == "You said: again"
    response = client.get("/page")
    assert response.status_code == 200
    assert response.text == "<h1>GET page</h1>"
    assert response.headers["content-type"].startswith("text/html")
    assert client.post("/page").text == "<h1>POST page</h1>"
    assert client.put("/page").status_code == 405
    with client.websocket_connect("/page") as ws:
        ws.send_text("x")
        assert ws.receive_text() == "page got x"


def test_R2_a_hybrid_route_takes_websocket_options(connect):
    app = App()

    @app.route("/chat", max_message_size=10, value_type="json")
    async def chat(request, websocket=None):
        if websocket is None:
            return "page"
        await websocket.accept()
        await websocket.send(await websocket.receive())

    client = connect(app)
    assert client.get("/chat").text == "page"
    with client.websocket_connect("/chat") as ws:
        ws.send_json([1])
        assert ws.receive_json() == [1]
    with client.websocket_connect("/chat") as ws:
        ws.send_text("[" + "1," * 10 + "1]")
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1009
    with pytest.raises(TypeError, match="no websocket parameter"):
        app.route("/plain", max_message_size=10)(lambda: "x")


def test_R2_async_generator_hybrid_streams_its_html_page_and_chats_on_upgrade(connect):
    # Seed 001's chat handler; its bytes-%-formatting of request.host is written as an
    # f-string since legato's request.host and scheme are str.
    app = App()

    @app.route("/")
    async def ws_handler(websocket=None, request=None, stream=False, **_):
        if websocket is not None:
            await websocket.accept()

            while True:
                message = await websocket.receive()
                await websocket.send(
                    "[{:s}] Guest{:d}: {:s}".format(
                        time.strftime("%H:%M:%S"), request.client[1], message)
                )

        yield b"<!DOCTYPE html><html><head><title>WebSocket Chat</title></head><body>"
        ws_scheme = "wss" if request.scheme == "https" else "ws"
        yield f"var socket = new WebSocket('{ws_scheme}://{request.host}/');".encode()
        yield b"</body></html>"

    client = connect(app)
    response = client.get("/", headers={"host": "chat.example:8000"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "content-length" not in response.headers
    assert response.headers.get("transfer-encoding") == "chunked"
    assert response.text == (
        "<!DOCTYPE html><html><head><title>WebSocket Chat</title></head><body>"
        "var socket = new WebSocket('ws://chat.example:8000/');</body></html>")
    with client.websocket_connect("/") as ws:
        ws.send_text("hi there")
        assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] Guest\d+: hi there", ws.receive_text())


# ---------------------------------------------------------------------------------- R3


def test_R3_route_with_websocket_true_registers_a_websocket_route(connect):
    # Seed 004's echo server, as written.
    app = App()

    @app.route("/ws", websocket=True)
    async def echo(ws):
        await ws.accept()
        while True:
            data = await ws.receive_text()
            await ws.send_text(f"Echo: {data}")

    client = connect(app)
    with client.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "Echo: hello"
    # It is a WebSocket route only: plain HTTP finds nothing there.
    assert client.get("/ws").status_code == 404


# ---------------------------------------------------------------------------------- R4


def test_R4_generator_sends_str_as_text_bytes_as_binary_others_as_json_then_closes_1000(
        connect):
    app = App()

    @app.websocket("/gen")
    async def gen(ws):
        yield "text"
        yield b"\x00\x01binary"
        yield {"json": [1, 2]}
        yield [True, None]
        yield 42

    client = connect(app)
    with client.websocket_connect("/gen") as ws:
        assert ws.receive_text() == "text"
        assert ws.receive_bytes() == b"\x00\x01binary"
        assert ws.receive_json() == {"json": [1, 2]}
        assert ws.receive_json() == [True, None]
        assert ws.receive_text() == "42"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1000


def test_R4_yielding_Close_closes_with_its_code_and_reason(connect):
    app = App()

    @app.websocket("/gen")
    async def gen(ws):
        yield "last words"
        yield Close(4001, "done here")
        yield "never sent"

    client = connect(app)
    with client.websocket_connect("/gen") as ws:
        assert ws.receive_text() == "last words"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert (info.value.code, info.value.reason) == (4001, "done here")


def test_R4_generator_reads_incoming_messages_by_iterating_the_websocket(connect):
    app = App()
    ended: list[str] = []

    @app.websocket("/upper")
    async def upper(ws):
        try:
            async for message in ws:
                yield message.upper() if isinstance(message, str) else message[::-1]
        finally:
            ended.append("generator finished")

    client = connect(app)
    with client.websocket_connect("/upper") as ws:
        ws.send_text("shout")
        assert ws.receive_text() == "SHOUT"
        ws.send_bytes(b"abc")
        assert ws.receive_bytes() == b"cba"
    wait_until(lambda: ended == ["generator finished"])


def test_R4_shallot_generator_echo_runs_as_written_and_closes_1001_on_exit(connect):
    # Seed 003, as written (scope and receiver injected, raw events and helpers yielded).
    app = App()
    scopes: list[dict[str, Any]] = []

    @app.websocket("/echo")
    async def handle_ws_echo(scope, receiver):
        scopes.append(scope)
        async for message in receiver:
            yield {"text": f"@ECHO: {message}", "type": "websocket.send"}
            if message == "exit":
                yield ws_send("bybye")
                yield ws_close(1001)

    client = connect(app)
    with client.websocket_connect("/echo?x=1") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "@ECHO: hello"
        ws.send_text("exit")
        assert ws.receive_text() == "@ECHO: exit"
        assert ws.receive_text() == "bybye"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1001
    (scope,) = scopes
    assert scope["type"] == "websocket"
    assert scope["path"] == "/echo"
    assert scope["query_string"] == b"x=1"


def test_R4_shallot_generator_that_stops_yielding_closes_1000(connect):
    app = App()

    @app.websocket("/once")
    async def once(scope, receiver):
        async for message in receiver:
            yield ws_send(f"@ECHO: {message}")
            break

    client = connect(app)
    with client.websocket_connect("/once") as ws:
        ws.send_text("one")
        assert ws.receive_text() == "@ECHO: one"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1000


# ---------------------------------------------------------------------------------- R5


def test_R5_on_connect_accepts_choosing_a_subprotocol_or_denies_with_403(connect):
    app = App()

    async def connection_accept(scope):  # seed 003's shape
        if "sub-123" in scope["subprotocols"]:
            return ws_accept(subprotocol="sub-123")
        return ws_close()

    @app.websocket("/shallot", on_connect=connection_accept)
    async def handle_ws_echo(scope, receiver):
        async for message in receiver:
            yield ws_send(f"@ECHO: {message}")

    async def by_hand(ws):
        if ws.headers.get("x-key") != "open":
            return False
        await ws.accept(subprotocol=ws.subprotocols[-1])

    @app.websocket("/by-hand", on_connect=by_hand)
    async def plain(ws):
        await ws.send_text(f"subprotocol {ws.subprotocol}")

    client = connect(app)
    with client.websocket_connect("/shallot", subprotocols=["chat", "sub-123"]) as ws:
        assert ws.accepted_subprotocol == "sub-123"
        ws.send_text("hi")
        assert ws.receive_text() == "@ECHO: hi"
    assert denied(client, "/shallot", subprotocols=["chat"]).status_code == 403
    assert denied(client, "/shallot").status_code == 403

    with client.websocket_connect("/by-hand", subprotocols=["a", "b"],
                                  headers={"x-key": "open"}) as ws:
        assert ws.accepted_subprotocol == "b"
        assert ws.receive_text() == "subprotocol b"
    assert denied(client, "/by-hand", subprotocols=["a"]).status_code == 403


def test_R5_on_disconnect_runs_only_when_the_client_closes_and_on_close_always(connect):
    app = App()
    events: list[tuple[str, str, int | None]] = []

    async def my_disconnect(scope, code):
        events.append(("disconnect", scope["path"], code))

    async def my_close(ws, code):
        events.append(("close", ws.path, code))

    @app.websocket("/echo", on_disconnect=my_disconnect, on_close=my_close)
    async def echo(scope, receiver):
        async for message in receiver:
            yield ws_send(f"@ECHO: {message}")

    @app.websocket("/server-ends", on_disconnect=my_disconnect, on_close=my_close)
    async def server_ends(ws):
        yield "bye"

    @app.websocket("/refused", on_connect=lambda ws: False,
                   on_disconnect=my_disconnect, on_close=my_close)
    async def refused(ws):
        yield "never"

    client = connect(app)
    with client.websocket_connect("/echo") as ws:
        ws.send_text("x")
        assert ws.receive_text() == "@ECHO: x"
        ws.close(1001)
    wait_until(lambda: len(events) == 2)
    assert events == [("disconnect", "/echo", 1001), ("close", "/echo", 1001)]

    events.clear()
    with client.websocket_connect("/server-ends") as ws:
        assert ws.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    wait_until(lambda: len(events) == 1)
    time.sleep(0.05)  # an on_disconnect, wrongly run, would be in by now
    assert events == [("close", "/server-ends", 1000)]

    # A connection that never opened has nothing to close.
    events.clear()
    assert denied(client, "/refused").status_code == 403
    time.sleep(0.05)
    assert events == []


# ---------------------------------------------------------------------------------- R6


def test_R6_before_request_runs_before_each_http_request_and_HTTPError_denies(connect):
    app = App()
    seen: list[str] = []

    @app.on_request  # Tremolo's spelling (seed 001)
    async def middleware_handler(request):
        seen.append(request.path)
        if "<" in request.headers.get("x-name", ""):
            raise BadRequest("illegal name")

    @app.before_request
    async def short_cut(request):
        if request.path == "/cached":
            return {"from": "hook"}

    @app.get("/hello")
    async def hello():
        return "hello"

    @app.get("/cached")
    async def cached():
        raise AssertionError("the hook answered in the handler's place")

    client = connect(app)
    assert client.get("/hello").text == "hello"
    response = client.get("/hello", headers={"x-name": "<script>"})
    assert response.status_code == 400
    assert response.text == "illegal name"
    response = client.get("/cached")
    assert (response.status_code, response.json()) == (200, {"from": "hook"})
    assert seen == ["/hello", "/hello", "/cached"]


def test_R6_after_request_can_modify_or_replace_the_response(connect):
    app = App()

    @app.after_request
    async def stamp(request, response):
        response.headers["x-after"] = request.path
        if request.path == "/replace":
            return PlainTextResponse("replaced", 202)

    @app.get("/keep")
    async def keep():
        return {"kept": True}

    @app.get("/replace")
    async def replace():
        return "original"

    client = connect(app)
    response = client.get("/keep")
    assert response.json() == {"kept": True}
    assert response.headers["x-after"] == "/keep"
    response = client.get("/replace")
    assert (response.status_code, response.text) == (202, "replaced")
    assert "x-after" not in response.headers


def test_R6_websocket_before_request_hook_denies_with_Forbidden_or_accepts(connect):
    # Seed 004's auth hook: it calls accept(), and so does the handler.
    app = App()
    http_hook_runs: list[str] = []
    ws_hook_runs: list[str] = []

    @app.before_request
    async def http_only(request):
        http_hook_runs.append(request.path)

    @app.before_request(websocket=True)
    async def ws_auth(ws):
        ws_hook_runs.append(ws.path)
        if ws.query_params.get("token") != "s3kr3t":
            raise Forbidden("bad token")
        await ws.accept()

    @app.route("/ws", websocket=True)
    async def echo(ws):
        await ws.accept()
        while True:
            data = await ws.receive_text()
            await ws.send_text(f"Echo: {data}")

    @app.get("/page")
    async def page():
        return "page"

    client = connect(app)
    exc = denied(client, "/ws?token=guess")
    assert exc.status_code == 403
    assert bytes(exc.body) == b"bad token"
    with client.websocket_connect("/ws?token=s3kr3t") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "Echo: hello"
    assert client.get("/page").text == "page"
    assert ws_hook_runs == ["/ws", "/ws"]
    assert http_hook_runs == ["/page"]


# ---------------------------------------------------------------------------------- R7


def test_R7_upgrade_to_a_path_without_websocket_route_is_denied_404_http_still_served(
        connect):
    app = App()

    @app.get("/page")
    async def page():
        return "the page"

    @app.websocket("/ws")
    async def socket(ws):
        await ws.send_text("ws")

    client = connect(app)
    assert denied(client, "/page").status_code == 404
    assert denied(client, "/nowhere").status_code == 404
    assert client.get("/page").text == "the page"
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "ws"


# ---------------------------------------------------------------------------------- R8


def test_R8_with_websocket_false_an_upgrade_request_is_served_as_plain_http(connect):
    app = App(websocket=False)
    calls: list[Any] = []

    @app.route("/")
    async def hybrid(request, websocket=None):
        calls.append(websocket)
        return f"plain HTTP {request.method}, websocket={websocket}"

    client = connect(app)
    response = client.get("/")
    assert response.text == "plain HTTP GET, websocket=None"
    # The client asked for an upgrade and got an ordinary 200 page instead.
    exc = denied(client, "/")
    assert exc.status_code == 200
    assert bytes(exc.body) == b"plain HTTP GET, websocket=None"
    assert calls == [None, None]


# ---------------------------------------------------------------------------------- R9


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute

    async def hello(request):
        return JSONResponse({"url": str(request.url), "path": request.url.path,
                             "root_path": request.scope.get("root_path"),
                             "name": request.path_params["name"]})

    async def echo(websocket):
        await websocket.accept()
        message = await websocket.receive_text()
        await websocket.send_text(f"starlette: {message}")
        await websocket.close()

    return Starlette(routes=[Route("/hello/{name}", hello), WebSocketRoute("/ws", echo)])


def relative(scope: dict[str, Any]) -> str:
    """The path below the mount point (ASGI: ``path`` is full, ``root_path`` the mount)."""
    return route_path(scope)


async def raw_asgi_app(scope, receive, send):
    facts = f"{scope['type']} root_path={scope.get('root_path')} below={relative(scope)}"
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": facts.encode()})
    else:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": facts})
        await send({"type": "websocket.close", "code": 4000})


def mounting_app() -> App:
    app = App()
    app.mount("/star", starlette_app())
    app.mount("/raw", raw_asgi_app)

    @app.get("/own")
    async def own():
        return "own route"

    return app


def test_R9_mount_serves_a_starlette_app_under_its_prefix_over_http_and_websocket(connect):
    client = connect(mounting_app())
    response = client.get("/star/hello/ann")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["root_path"]) == ("ann", "/star")
    with client.websocket_connect("/star/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "starlette: hi"
    assert client.get("/star/missing").status_code == 404
    assert client.get("/own").text == "own route"
    assert client.get("/starry").status_code == 404


def test_R9_mount_serves_a_raw_asgi_app_with_root_path_set_over_http_and_websocket(connect):
    client = connect(mounting_app())
    assert client.get("/raw/a/b?q=1").text == "http root_path=/raw below=/a/b"
    assert client.get("/raw").text == "http root_path=/raw below=/"
    with client.websocket_connect("/raw/sock") as ws:
        assert ws.receive_text() == "websocket root_path=/raw below=/sock"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 4000


def test_R9_mounted_app_sees_the_full_path_in_scope_path_as_asgi_says(connect):
    client = connect(mounting_app())
    body = client.get("/star/hello/ann").json()
    assert body["path"] == "/star/hello/ann"
    assert body["url"].endswith("/star/hello/ann")


# --------------------------------------------------------------------------------- R10


def test_R10_app_scoped_provider_is_created_once_at_startup_and_shared(connect):
    app = App()
    made: list[str] = []
    started: list[bool] = []

    @app.on_startup
    async def mark():
        started.append(True)

    @app.provider(scope="app")
    async def clients() -> set[str]:
        made.append("clients")
        return set()

    @app.provider(scope="app")
    def history() -> list[str]:
        made.append("history")
        return []

    @app.websocket("/chat")
    async def chat(ws, clients, history):
        clients.add(ws.headers["user"])
        async for message in ws:
            history.append(message)
            await ws.send_json({"clients": sorted(clients), "history": history,
                                "ids": [id(clients), id(history)]})

    @app.get("/state")
    async def shared_state(clients, history):
        return {"clients": sorted(clients), "history": history,
                "ids": [id(clients), id(history)]}

    client = connect(app)
    # Made at startup, before any request used them.
    assert sorted(made) == ["clients", "history"] and started == [True]
    with client.websocket_connect("/chat", headers={"user": "ann"}) as ws:
        ws.send_text("one")
        first = ws.receive_json()
    with client.websocket_connect("/chat", headers={"user": "bob"}) as ws:
        ws.send_text("two")
        second = ws.receive_json()
    state = client.get("/state").json()
    assert second["clients"] == ["ann", "bob"] and second["history"] == ["one", "two"]
    assert first["ids"] == second["ids"] == state["ids"]
    assert state["history"] == ["one", "two"]
    assert sorted(made) == ["clients", "history"]


def test_R10_request_scoped_provider_is_made_once_per_request_and_shared_with_hooks(
        connect):
    app = App()
    made: list[int] = []

    @app.provider  # scope="request" is the default
    def token(request) -> dict[str, Any]:
        made.append(len(made))
        return {"n": len(made), "path": request.path}

    @app.before_request
    async def hook(request, token):
        request.state.hook_token = id(token)

    @app.get("/a")
    async def a(request, token):
        return {"same": request.state.hook_token == id(token), **token}

    @app.before_request(websocket=True)
    async def ws_hook(ws, token):
        ws.scope["hook_token"] = id(token)

    @app.websocket("/ws")
    async def socket(ws, token):
        await ws.send_json({"same": ws.scope["hook_token"] == id(token), **token})

    client = connect(app)
    assert client.get("/a").json() == {"same": True, "n": 1, "path": "/a"}
    assert client.get("/a").json() == {"same": True, "n": 2, "path": "/a"}
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"same": True, "n": 3, "path": "/ws"}
    assert made == [0, 1, 2]


def test_R10_async_generator_provider_tears_down_after_the_response_or_connection(
        connect):
    app = App()
    log: list[str] = []

    @app.provider
    async def resource(request):
        log.append(f"open {request.path}")
        yield "resource"
        log.append(f"close {request.path}")

    @app.get("/use")
    async def use(resource):
        log.append("handler")
        return resource

    @app.websocket("/ws")
    async def socket(ws, resource):
        await ws.send_text(resource)
        await ws.receive_text()
        log.append("ws handler done")

    client = connect(app)
    assert client.get("/use").text == "resource"
    wait_until(lambda: len(log) == 3)
    assert log == ["open /use", "handler", "close /use"]
    log.clear()
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "resource"
        time.sleep(0.05)
        assert log == ["open /ws"]  # still in use while the connection is open
        ws.send_text("done")
    wait_until(lambda: len(log) == 3)
    assert log == ["open /ws", "ws handler done", "close /ws"]


def test_R10_providers_depend_on_providers_and_a_cycle_is_an_error(connect, mode):
    app = App(debug=True)

    @app.provider(scope="app")
    def settings() -> dict[str, str]:
        return {"greeting": "hello"}

    @app.provider
    def greeter(settings, request) -> str:
        return f"{settings['greeting']} from {request.path}"

    @app.provider
    def chicken(egg):
        return "chicken"

    @app.provider
    def egg(chicken):
        return "egg"

    @app.get("/greet")
    async def greet(greeter):
        return greeter

    @app.get("/cycle")
    async def cycle(chicken):
        return chicken

    client = connect(app)
    assert client.get("/greet").text == "hello from /greet"
    cycle_message = "cycle: chicken -> egg -> chicken"
    if mode == "testclient":  # the TestClient re-raises what the app raised
        with pytest.raises(RuntimeError, match=cycle_message):
            client.get("/cycle")
    else:
        response = client.get("/cycle")
        assert response.status_code == 500
        assert html.escape(cycle_message) in response.text  # the debug traceback page


def test_R1_legato_serves_a_websocket_route_without_the_apps_own_frame_but_honours_overrides(
        connect: Callable[[Any], Any]) -> None:
    """legato's server asks an App for the coroutine of a WebSocket connection
    (App.websocket_call: one frame less per open connection); a subclass that overrides
    __call__, and a wrapper that forwards attributes to an App, are still called."""
    calls: list[str] = []

    class Recording(App):
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            calls.append(scope["type"])
            await super().__call__(scope, receive, send)

    class Forwarding:
        def __init__(self, app: App) -> None:
            self.app = app

        def __getattr__(self, name: str) -> Any:
            return getattr(self.app, name)

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            calls.append("wrapper " + scope["type"])
            await self.app(scope, receive, send)

    def echo_app(app: App) -> App:
        @app.websocket("/ws")
        async def echo(ws: legato.WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        return app

    plain = echo_app(App())
    assert plain.websocket_call is not None
    for app, expected in ((plain, []), (echo_app(Recording()), ["websocket"]),
                          (Forwarding(echo_app(App())), ["wrapper websocket"])):
        calls.clear()
        client = connect(app)
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
        assert [c for c in calls if "websocket" in c] == expected


def test_R1_websocket_routes_match_in_the_order_added_static_or_not(
        connect: Callable[[Any], Any]) -> None:
    """A static path is found by one lookup (every connection starts with one), which must
    give what trying the routes in order gives: a parameter route added earlier wins for
    a static path it also matches, the first of two identical routes wins, and a route
    wins over a mount at the same path; a route added after the first connection counts."""
    app = App()

    def add(path: str, tag: str) -> None:
        async def handler(ws: legato.WebSocket) -> None:
            await ws.accept()
            await ws.send_json([tag, dict(ws.path_params)])
        app.websocket(path)(handler)

    async def mounted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '["mount", {}]'})
        await send({"type": "websocket.close", "code": 1000})

    add("/a", "first /a")
    add("/a", "second /a")
    add("/{name}", "param")
    add("/b", "static /b after /{name}")
    add("/m/x", "route /m/x")
    app.mount("/m", mounted)
    client = connect(app)

    def served(path: str) -> Any:
        with client.websocket_connect(path) as ws:
            return ws.receive_json()

    assert served("/a") == ["first /a", {}]
    assert served("/b") == ["param", {"name": "b"}]
    assert served("/m/x") == ["route /m/x", {}]
    assert served("/m/y") == ["mount", {}]
    add("/c", "added later")  # after connections were served
    assert served("/c") == ["param", {"name": "c"}]
    add("/d/e", "added later, static")
    assert served("/d/e") == ["added later, static", {}]


def test_R10_a_provider_registered_after_the_first_connection_is_injected_on_the_next(
        connect: Callable[[Any], Any]) -> None:
    """A WebSocket route is prepared for serving on its first connection; registering a
    provider afterwards makes the next connections resolve it (not a query parameter)."""
    app = App()

    @app.websocket("/ws")
    async def handler(ws: legato.WebSocket, greeting: str = "query default") -> None:
        await ws.accept()
        await ws.send_text(greeting)

    client = connect(app)
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "query default"

    @app.provider(name="greeting")
    def make_greeting() -> str:
        return "from the provider"

    with client.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "from the provider"
