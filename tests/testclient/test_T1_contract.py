"""SPEC T1, point by point, with a legato App (the other files here pin the TestClient
against raw ASGI apps)."""

from __future__ import annotations

import time

import pytest

from legato import App, Forbidden, TestClient, WebSocket, WebSocketDenied, WebSocketDisconnect


def t1_app() -> App:
    app = App()

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    @app.post("/echo")
    async def echo(request) -> bytes:  # type: ignore[no-untyped-def]
        return await request.body()

    @app.websocket("/ws", subprotocols=["chat.v2", "chat.v1"])
    async def ws_echo(ws: WebSocket) -> None:
        await ws.send_json({"subprotocol": ws.subprotocol, "token": ws.headers.get("x-token")})
        async for message in ws:
            if isinstance(message, bytes):
                await ws.send_bytes(message[::-1])
            else:
                await ws.send_text(message.upper())

    @app.websocket("/private", auto_accept=False)
    async def private(ws: WebSocket) -> None:
        raise Forbidden("members only")  # before accept: the handshake is denied

    @app.websocket("/silent")
    async def silent(ws: WebSocket) -> None:
        await ws.wait_closed()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.websocket("/ws-boom")
    async def ws_boom(ws: WebSocket) -> None:
        await ws.receive()
        raise RuntimeError("ws boom")

    return app


def test_T1_http_methods_without_a_socket() -> None:
    client = TestClient(t1_app())
    assert client.get("/hello/ann").json() == {"hello": "ann"}
    assert client.post("/echo", content=b"\x00body").content == b"\x00body"
    assert client.get("/nowhere").status_code == 404


def test_T1_websocket_connect_with_subprotocols_and_headers() -> None:
    client = TestClient(t1_app())
    with client.websocket_connect("/ws", subprotocols=["chat.v1", "chat.v2"],
                                  headers={"x-token": "t0k"}) as ws:
        assert ws.accepted_subprotocol == "chat.v2"  # the route's preference wins
        assert ws.receive_json() == {"subprotocol": "chat.v2", "token": "t0k"}
        ws.send_text("hi")
        assert ws.receive_text() == "HI"
        ws.send_bytes(b"abc")
        assert ws.receive_bytes() == b"cba"
        ws.send_json({"a": 1})
        assert ws.receive_text() == '{"A":1}'
        ws.close(1000)


def test_T1_a_denied_handshake_raises_on_entry_with_the_status() -> None:
    client = TestClient(t1_app())
    with pytest.raises(WebSocketDenied) as denied:
        with client.websocket_connect("/private"):
            pytest.fail("entered a denied connection")
    assert denied.value.status_code == 403
    assert b"members only" in denied.value.body
    assert isinstance(denied.value, WebSocketDisconnect)
    with pytest.raises(WebSocketDenied) as missing:
        with client.websocket_connect("/no-such-route"):
            pass
    assert missing.value.status_code == 404


def test_T1_app_exceptions_are_reraised_by_default() -> None:
    client = TestClient(t1_app())
    with pytest.raises(RuntimeError, match="boom"):
        client.get("/boom")
    with pytest.raises(RuntimeError, match="ws boom"):
        with client.websocket_connect("/ws-boom") as ws:
            ws.send_text("go")
            ws.receive_text()


def test_T1_without_raising_the_test_sees_what_a_client_would() -> None:
    client = TestClient(t1_app(), raise_server_exceptions=False)
    response = client.get("/boom")
    assert response.status_code == 500
    assert "boom" not in response.text  # no traceback outside debug mode
    with client.websocket_connect("/ws-boom") as ws:
        ws.send_text("go")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1011


def test_T1_receives_time_out_instead_of_hanging() -> None:
    client = TestClient(t1_app(), timeout=0.3)
    with client.websocket_connect("/silent") as ws:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="within 0.3 s"):
            ws.receive_text()
        assert time.monotonic() - started < 5  # bounded, whatever the machine's speed
