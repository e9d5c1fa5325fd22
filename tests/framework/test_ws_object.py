"""The WebSocket object and WebSocket routes, as a handler and a client see them
(SPEC §3: W1-W13, W15, W16; W14 and W17 are in test_ws_typed.py).

Every test that takes ``connect`` runs three times: in-process TestClient, legato's
built-in server, uvicorn (conftest.py). Handlers run on the server's event loop, in
another thread than the test; what they see comes back either in messages to the client
or through a :class:`Probe` (a thread-safe list the test waits on, never a sleep).
"""

import asyncio
import base64
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from live import client_for, serve_legato

import legato
from legato import (
    App,
    InvalidMessage,
    WebSocket,
    WebSocketClientClosed,
    WebSocketDenied,
    WebSocketDisconnect,
    WebSocketState,
    status,
)

#: Seconds a test waits for a handler to report; generous, only reached on failure.
WAIT = 5.0


# --------------------------------------------------------------------------- helpers


class Probe:
    """What handlers saw, appended on the server's loop, read by the test thread."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def add(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, count: int = 1, timeout: float = WAIT) -> list[Any]:
        """The items once there are ``count`` of them (fails after ``timeout``)."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.items) >= count, timeout)
            assert len(self.items) >= count, f"handlers reported only {self.items!r}"
            return list(self.items)


class Outcome:
    """Wraps an App to record how each WebSocket call of it ended: ``"returned"`` or the
    name of the exception that escaped to the server (what the server logs, W8/W9)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.calls = Probe()

    def __getattr__(self, name: str) -> Any:  # configure_server() and friends
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.calls.add(type(exc).__name__)
            raise
        self.calls.add("returned")


@pytest.fixture
def connect_quiet(mode: str) -> Iterator[Callable[[Any], Any]]:
    """Like ``connect``, but an exception escaping the app is not re-raised in the test
    (TestClient's ``raise_server_exceptions=False``, T1): the client sees what a real
    client would (1011, a 500 denial). Servers never re-raise, so live modes are as is."""
    with ExitStack() as stack:
        def make(app: Any) -> Any:
            if mode == "testclient":
                from legato import TestClient

                return stack.enter_context(TestClient(app, raise_server_exceptions=False))
            return stack.enter_context(client_for(mode, app))

        yield make


def frame(session: Any) -> tuple[str, Any]:
    """The next message as ("text", str) or ("bytes", bytes): which frame type it was."""
    message = session.receive()
    assert message["type"] == "websocket.send", message
    if message.get("text") is not None:
        return "text", message["text"]
    return "bytes", bytes(message["bytes"])


def closed_by_server(session: Any) -> WebSocketDisconnect:
    """Read until the server's close; return it (fails if a message comes instead)."""
    with pytest.raises(WebSocketDisconnect) as info:
        message = session.receive_text()
        pytest.fail(f"expected a close, got the message {message!r}")
    return info.value


def header(headers: Any, name: str) -> str | None:
    """A response header from whichever form a client gives (mapping or raw pairs)."""
    if hasattr(headers, "get") and not isinstance(headers, (list, tuple)):
        value = headers.get(name)
        return None if value is None else str(value)
    for key, value in headers:
        key = key.decode("latin-1") if isinstance(key, (bytes, bytearray)) else key
        if key.lower() == name:
            return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value
    return None


def echo_app(**options: Any) -> App:
    app = App()

    @app.websocket("/echo", **options)
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    return app


# ------------------------------------------------------------------- W1: accept, state


def test_W1_accept_with_a_subprotocol_and_extra_response_headers(connect):
    app = App()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        await ws.accept(subprotocol="chat.v2", headers={"X-Room": "lobby"})
        await ws.send_text(str(ws.subprotocol))

    client = connect(app)
    with client.websocket_connect("/ws", subprotocols=["chat.v1", "chat.v2"]) as session:
        assert session.accepted_subprotocol == "chat.v2"
        assert header(session.extra_headers, "x-room") == "lobby"
        assert session.receive_text() == "chat.v2"


def test_W1_auto_accept_picks_the_routes_preferred_subprotocol_and_accept_again_is_a_no_op(
        connect):
    app = App()

    @app.websocket("/ws", subprotocols=["chat.v2", "chat.v1"])  # best first
    async def handler(ws: WebSocket) -> None:
        await ws.accept()  # already accepted (Starlette habit): nothing happens
        await ws.accept(ws.subprotocol)  # the same subprotocol: nothing either
        try:
            await ws.accept("chat.v1")
        except RuntimeError:
            await ws.send_text("RuntimeError for another subprotocol")

    client = connect(app)
    with client.websocket_connect("/ws", subprotocols=["chat.v1", "chat.v2"]) as session:
        assert session.accepted_subprotocol == "chat.v2"
        assert session.receive_text() == "RuntimeError for another subprotocol"
    with client.websocket_connect("/ws", subprotocols=["mqtt"]) as session:
        assert session.accepted_subprotocol is None  # nothing in common: none chosen
        assert session.receive_text() == "RuntimeError for another subprotocol"


def test_W1_accepting_a_subprotocol_the_client_did_not_offer_is_a_value_error(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        try:
            await ws.accept(subprotocol="mqtt")
        except ValueError as exc:
            probe.add(str(exc))
        await ws.accept()
        await ws.send_text("accepted without one")

    client = connect(app)
    with client.websocket_connect("/ws", subprotocols=["chat.v1"]) as session:
        assert session.receive_text() == "accepted without one"
        assert session.accepted_subprotocol is None
    assert "mqtt" in probe.wait_for()[0]


def test_W1_state_moves_from_connecting_to_open_to_closed(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        before = ws.state
        await ws.accept()
        await ws.send_json([before.name, ws.state.name])
        await ws.receive_text()
        await ws.close(4000)
        probe.add(ws.state)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_json() == ["CONNECTING", "OPEN"]
        session.send_text("close now")
        assert closed_by_server(session).code == 4000
    assert probe.wait_for() == [WebSocketState.CLOSED]


def test_W1_state_is_closed_once_the_peer_has_closed(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except WebSocketDisconnect:
            probe.add(ws.state)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.close(1000)
    assert probe.wait_for() == [WebSocketState.CLOSED]


def test_W1_websocket_state_names_the_four_states():
    assert [s.name for s in WebSocketState] == ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]
    assert legato.WebSocketState is WebSocketState


# --------------------------------------------------------------------- W2: receiving


def test_W2_receive_gives_str_for_text_frames_and_bytes_for_binary_ones(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        for _ in range(2):
            message = await ws.receive()
            await ws.send_json([type(message).__name__, len(message)])

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_text("héllo")
        assert session.receive_json() == ["str", 5]
        session.send_bytes(b"\x00\xff")
        assert session.receive_json() == ["bytes", 2]


def test_W2_route_receive_type_decodes_every_message(connect):
    app = App()

    def report(route: str, **options: Any) -> None:
        @app.websocket(route, **options)
        async def handler(ws: WebSocket) -> None:
            async for message in ws:
                shown = message.hex() if isinstance(message, bytes) else message
                await ws.send_json([type(message).__name__, shown])

    report("/text", receive_type="text")
    report("/bytes", receive_type="bytes")
    report("/json", receive_type="json")
    client = connect(app)
    with client.websocket_connect("/text") as session:
        session.send_text("plain")
        assert session.receive_json() == ["str", "plain"]
    with client.websocket_connect("/bytes") as session:
        session.send_bytes(b"\x01\x02")
        assert session.receive_json() == ["bytes", "0102"]
    with client.websocket_connect("/json") as session:
        session.send_text('{"a": [1, 2]}')
        assert session.receive_json() == ["dict", {"a": [1, 2]}]
        session.send_bytes(b"[true]")  # JSON may come in a binary frame too
        assert session.receive_json() == ["list", [True]]


def test_W2_receive_text_bytes_json_and_a_type_argument_force_the_decoding(connect):
    app = App()

    @app.websocket("/ws", receive_type="bytes")  # the forcing methods override the route
    async def handler(ws: WebSocket) -> None:
        text = await ws.receive_text()
        raw = await ws.receive_bytes()
        value = await ws.receive_json()
        binary_json = await ws.receive_json()
        as_json = await ws.receive("json")
        await ws.send_json([text, raw.hex(), value, binary_json, as_json])

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_text("t")
        session.send_bytes(b"\xfe")
        session.send_text('{"k": 1}')
        session.send_bytes(b'"in binary"')
        session.send_text("[3]")
        assert session.receive_json() == ["t", "fe", {"k": 1}, "in binary", [3]]


@pytest.mark.parametrize(("method", "send", "expected"), [
    ("receive_bytes", "send_text", "expected a binary message, got a text one"),
    ("receive_text", "send_bytes", "expected a text message, got a binary one"),
])
def test_W2_the_wrong_frame_type_is_a_clear_error_and_uncaught_closes_1003(
        connect, method, send, expected):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            await getattr(ws, method)()
        except InvalidMessage as exc:
            await ws.send_text(f"{exc.close_code} {exc}")
        await getattr(ws, method)()  # not caught this time: the route closes 1003

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        payload = "x" if send == "send_text" else b"x"
        getattr(session, send)(payload)
        assert session.receive_text() == f"1003 {expected}"
        getattr(session, send)(payload)
        closed = closed_by_server(session)
    assert closed.code == status.WS_1003_UNSUPPORTED_DATA
    assert expected in closed.reason


def test_W2_a_route_receive_type_bytes_closes_1003_on_a_text_message(connect):
    client = connect(echo_app(receive_type="bytes"))
    with client.websocket_connect("/echo") as session:
        session.send_bytes(b"ok")
        assert session.receive_bytes() == b"ok"
        session.send_text("not bytes")
        closed = closed_by_server(session)
    assert closed.code == 1003
    assert "binary" in closed.reason


# ----------------------------------------------------------------------- W3: sending


def test_W3_send_encodes_str_as_text_bytes_as_binary_and_the_rest_as_json(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        for value in ("s", b"\x00b", bytearray(b"ba"), {"k": [1]}, [1, 2], 5, None):
            await ws.send(value)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert frame(session) == ("text", "s")
        assert frame(session) == ("bytes", b"\x00b")
        assert frame(session) == ("bytes", b"ba")
        for expected in ({"k": [1]}, [1, 2], 5, None):
            kind, data = frame(session)
            assert kind == "text"
            assert json.loads(data) == expected


def test_W3_route_send_type_encodes_every_message(connect):
    app = App()

    def route(path: str, send_type: str, good: Any, bad: Any) -> None:
        @app.websocket(path, send_type=send_type)
        async def handler(ws: WebSocket) -> None:
            await ws.send(good)
            try:
                await ws.send(bad)
            except TypeError as exc:
                await ws.send_text(f"TypeError: {exc}")

    route("/text", "text", "hé", b"not text")
    route("/bytes", "bytes", b"\x00\x01", "not bytes")
    route("/json", "json", "a string", {1j})
    client = connect(app)
    with client.websocket_connect("/text") as session:
        assert frame(session) == ("text", "hé")
        assert session.receive_text().startswith("TypeError")
    with client.websocket_connect("/bytes") as session:
        assert frame(session) == ("bytes", b"\x00\x01")
        assert session.receive_text().startswith("TypeError")
    with client.websocket_connect("/json") as session:
        assert frame(session) == ("text", '"a string"')  # a str is JSON-encoded too
        assert session.receive_text().startswith("TypeError")


def test_W3_send_text_bytes_json_force_the_encoding(connect):
    app = App()

    @app.websocket("/ws", send_type="json")  # the forcing methods override the route
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("t")
        await ws.send_bytes(b"b")
        await ws.send_bytes(memoryview(b"mv"))
        await ws.send_json({"j": "é"})
        await ws.send_json([2], mode="binary")
        errors = []
        for method, value in ((ws.send_text, b"x"), (ws.send_bytes, "x")):
            try:
                await method(value)
            except TypeError:
                errors.append(method.__name__)
        await ws.send_json(errors)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert frame(session) == ("text", "t")
        assert frame(session) == ("bytes", b"b")
        assert frame(session) == ("bytes", b"mv")
        kind, data = frame(session)
        assert (kind, json.loads(data)) == ("text", {"j": "é"})
        kind, data = frame(session)
        assert (kind, json.loads(data)) == ("bytes", [2])
        assert session.receive_json() == ["send_text", "send_bytes"]


def test_W3_value_type_json_sets_both_receive_and_send(connect):
    app = App()

    @app.websocket("/ws", value_type="json")
    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send({"got": message, "type": type(message).__name__})

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_json({"a": 1})
        assert session.receive_json() == {"got": {"a": 1}, "type": "dict"}
        session.send_text('"s"')
        assert session.receive_json() == {"got": "s", "type": "str"}
        session.send_bytes(b"[1]")
        kind, data = frame(session)
        assert (kind, json.loads(data)) == ("text", {"got": [1], "type": "list"})


def test_W3_value_type_must_name_a_known_type():
    with pytest.raises(ValueError, match="receive_type"):
        App().websocket("/ws", value_type="yaml")


# ---------------------------------------------------------------- W4: async iteration


@pytest.mark.parametrize("code", [1000, 1001, 1005], ids=["1000", "1001", "no-code-1005"])
def test_W4_async_for_accepts_then_ends_quietly_on_a_normal_close(connect, mode, code):
    # A Close frame without a status code reaches the app as 1005 and counts as 1000
    # (websocket.py docstring): it is what browsers send for ws.close() without a code.
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)  # iteration must accept by itself
    async def handler(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send_text(message)
        probe.add(("ended quietly", ws.close_code))

    wrapped = Outcome(app)
    client = connect(wrapped)
    with client.websocket_connect("/ws") as session:
        session.send_text("ping")
        assert session.receive_text() == "ping"
        session.close(code)  # 1005: a Close frame without a status code
    assert probe.wait_for() == [("ended quietly", code)]
    assert wrapped.calls.wait_for() == ["returned"]


def test_W4_a_close_without_status_code_counts_as_normal():
    # The same over a bare ASGI pair, for every client: RFC 6455 §7.1.5 reports a Close
    # without a status code as 1005; `async for` and caught_close_codes treat it as 1000.
    async def run(caught: Any) -> list[Any]:
        events = iter([{"type": "websocket.connect"},
                       {"type": "websocket.receive", "text": "hi"},
                       {"type": "websocket.disconnect", "code": 1005}])

        async def receive() -> dict[str, Any]:
            return next(events)

        async def send(event: dict[str, Any]) -> None:
            pass

        ws = WebSocket({"type": "websocket", "path": "/", "headers": []}, receive, send,
                       caught_close_codes=caught)
        seen: list[Any] = []
        try:
            async for message in ws:
                seen.append(message)
            seen.append("ended")
        except WebSocketDisconnect as exc:
            seen.append(f"raised {exc.code}")
        return seen + [ws.close_code]

    assert asyncio.run(run((1000, 1001))) == ["hi", "ended", 1005]
    assert asyncio.run(run((1001,))) == ["hi", "raised 1005", 1005]


# --------------------------------------------------------------- W5: async with, close


def test_W5_async_with_accepts_on_entry_and_closes_1000_on_exit(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        async with ws:
            await ws.send_text(ws.state.name)
        probe.add((ws.state.name, ws.close_code, ws.client_closed))

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "OPEN"
        assert closed_by_server(session).code == 1000
    assert probe.wait_for() == [("CLOSED", 1000, False)]


@pytest.mark.parametrize(("code", "expected"), [
    (1001, ["after the block"]),
    (4000, ["raised 4000"]),
])
def test_W5_async_with_swallows_only_a_caught_close_code(connect, code, expected):
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        try:
            async with ws:
                await ws.send_text("in")
                await ws.receive()
            probe.add("after the block")
        except WebSocketDisconnect as exc:
            probe.add(f"raised {exc.code}")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "in"
        session.close(code)
    assert probe.wait_for() == expected


def test_W5_close_twice_raises_runtime_error_and_ensure_closed_never_raises(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.close(4000, "first")
        try:
            await ws.close()
        except RuntimeError:
            probe.add("second close: RuntimeError")
        await ws.ensure_closed()
        await ws.ensure_closed(4001)
        probe.add("ensure_closed: no error")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        closed = closed_by_server(session)
    assert (closed.code, closed.reason) == (4000, "first")
    assert probe.wait_for(2) == ["second close: RuntimeError", "ensure_closed: no error"]


def test_W5_ensure_closed_closes_an_open_connection_and_is_quiet_after_the_peer_left(
        connect):
    app = App()
    probe = Probe()

    @app.websocket("/closer")
    async def closer(ws: WebSocket) -> None:
        await ws.ensure_closed(4002, "done")

    @app.websocket("/left")
    async def left(ws: WebSocket) -> None:
        async for _ in ws:
            pass
        await ws.ensure_closed()
        probe.add("no error")

    client = connect(app)
    with client.websocket_connect("/closer") as session:
        closed = closed_by_server(session)
        assert (closed.code, closed.reason) == (4002, "done")
    with client.websocket_connect("/left") as session:
        session.close(1000)
    assert probe.wait_for() == ["no error"]


# ------------------------------------------------------------ W6: close codes, status


def test_W6_close_sends_the_code_and_reason_to_the_peer(connect):
    codes = [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1014, 3000, 4999]
    app = App()

    @app.websocket("/close/{code}")
    async def handler(ws: WebSocket, code: int) -> None:
        await ws.close(code, f"bye {code}")

    client = connect(app)
    for code in codes:
        with client.websocket_connect(f"/close/{code}") as session:
            closed = closed_by_server(session)
        assert (closed.code, closed.reason) == (code, f"bye {code}")


def test_W6_close_refuses_codes_not_allowed_on_the_wire_with_value_error(connect):
    # RFC 6455 §7.4: 1004 is reserved, 1005/1006/1015 are only reported, <1000 unused,
    # 1016-2999 unassigned to applications, 5000+ out of range.
    bad = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        refused = []
        for code in bad:
            try:
                await ws.close(code)
            except ValueError:
                refused.append(code)
        try:
            await ws.close(1000, "é" * 62)  # 124 bytes: over the 123 a close frame holds
        except ValueError:
            refused.append("long reason")
        probe.add(refused)
        await ws.send_text(ws.state.name)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "OPEN"  # nothing was sent for the bad codes
    assert probe.wait_for() == [[*bad, "long reason"]]


def test_W6_status_holds_named_close_codes():
    assert status.WS_1000_NORMAL_CLOSURE == 1000
    assert status.WS_1001_GOING_AWAY == 1001
    assert status.WS_1003_UNSUPPORTED_DATA == 1003
    assert status.WS_1005_NO_STATUS_RCVD == 1005
    assert status.WS_1006_ABNORMAL_CLOSURE == 1006
    assert status.WS_1007_INVALID_FRAME_PAYLOAD_DATA == 1007
    assert status.WS_1008_POLICY_VIOLATION == 1008
    assert status.WS_1009_MESSAGE_TOO_BIG == 1009
    assert status.WS_1011_INTERNAL_ERROR == 1011
    assert legato.status.HTTP_403_FORBIDDEN == 403


# ------------------------------------------------------------------------ W7: reject


def test_W7_reject_denies_the_handshake_with_status_body_and_headers(connect):
    # Both servers here implement the ASGI websocket.http.response extension (legato's,
    # uvicorn >= 0.30), and the TestClient runs legato's, so the body and headers reach
    # the client in every mode. A server without it answers its own 403, without them.
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        await ws.reject(401, body="log in first", headers={"WWW-Authenticate": "Bearer"})
        probe.add("ran after reject")  # never: reject() ends the handler

    @app.websocket("/default", auto_accept=False)
    async def default(ws: WebSocket) -> None:
        await ws.reject()

    client = connect(app)
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 401
    assert bytes(info.value.body) == b"log in first"
    assert header(info.value.headers, "www-authenticate") == "Bearer"
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/default"):
            pass
    assert info.value.status_code == 403
    assert probe.items == []


def test_W7_reject_after_accept_is_a_runtime_error(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            await ws.reject(403)
        except RuntimeError as exc:
            await ws.send_text(f"RuntimeError: {exc}")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text().startswith("RuntimeError: reject() is only possible")


def test_W7_close_before_accept_denies_with_403(connect):
    app = App()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        await ws.close()

    client = connect(app)
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 403


# ------------------------------------------------------- W8: disconnects, caught codes


def test_W8_receive_raises_disconnect_with_peer_code_and_reason(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except WebSocketClientClosed as exc:
            probe.add((type(exc).__name__, exc.code, exc.reason))

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.close(4321, "gone fishing")
    assert probe.wait_for() == [("WebSocketDisconnect", 4321, "gone fishing")]


def test_W8_websocket_client_closed_is_the_same_class_as_websocket_disconnect():
    assert WebSocketClientClosed is WebSocketDisconnect
    assert legato.WebSocketClientClosed is legato.WebSocketDisconnect
    exc = WebSocketDisconnect(1001, "going")
    assert (exc.code, exc.reason) == (1001, "going")


#: route option → {client close code: how `async for` ended}
CAUGHT_CASES: dict[str, tuple[Any, dict[int, str]]] = {
    "default": (None, {1000: "ended", 1001: "ended", 4000: "raised 4000"}),
    "listed": ((1000, 4000), {4000: "ended", 1001: "raised 1001"}),
    "all": ("all", {4000: "ended", 1011: "ended"}),
    "none": ((), {1000: "raised 1000", 1001: "raised 1001"}),
}


def test_W8_caught_close_codes_decide_which_closes_end_async_for_quietly(connect):
    app = App()
    probe = Probe()

    def route(name: str, caught: Any) -> None:
        options = {} if caught is None else {"caught_close_codes": caught}

        @app.websocket(f"/{name}", **options)
        async def handler(ws: WebSocket) -> None:
            try:
                async for _ in ws:
                    pass
                probe.add((name, ws.close_code, "ended"))
            except WebSocketDisconnect as exc:
                probe.add((name, ws.close_code, f"raised {exc.code}"))

    for name, (caught, _) in CAUGHT_CASES.items():
        route(name, caught)
    client = connect(app)
    expected = []
    for name, (_, closes) in CAUGHT_CASES.items():
        for code, how in closes.items():
            with client.websocket_connect(f"/{name}") as session:
                session.close(code)
            expected.append((name, code, how))
            assert probe.wait_for(len(expected)) == expected


def test_W8_a_dropped_connection_is_1006_and_caught_only_where_listed(connect, mode):
    app = App()
    probe = Probe()

    def route(name: str, **options: Any) -> None:
        @app.websocket(f"/{name}", **options)
        async def handler(ws: WebSocket) -> None:
            try:
                async for _ in ws:
                    pass
                probe.add((name, ws.close_code, "ended"))
            except WebSocketDisconnect as exc:
                probe.add((name, ws.close_code, f"raised {exc.code}"))

    route("default")
    route("listed", caught_close_codes=(1000, 1006))
    client = connect(app)
    for path in ("/default", "/listed"):
        if mode == "testclient":
            with client.websocket_connect(path) as session:
                session.drop()  # the connection ends without a Close frame
        else:
            with dead_peer(client.port, path):
                pass  # the socket closes without a Close frame
    assert sorted(probe.wait_for(2)) == [("default", 1006, "raised 1006"),
                                         ("listed", 1006, "ended")]


def test_W8_caught_close_codes_decide_what_the_server_sees_escape(connect_quiet):
    # A handler that does not catch the disconnect: a caught code ends the connection
    # quietly; any other escapes to the server (which logs it) like any exception.
    app = App()

    @app.websocket("/default")
    async def default(ws: WebSocket) -> None:
        await ws.receive()

    @app.websocket("/all", caught_close_codes="all")
    async def all_codes(ws: WebSocket) -> None:
        await ws.receive()

    @app.websocket("/none", caught_close_codes=())
    async def no_codes(ws: WebSocket) -> None:
        await ws.receive()

    wrapped = Outcome(app)
    client = connect_quiet(wrapped)
    cases = [("/default", 1001, "returned"), ("/default", 4000, "WebSocketDisconnect"),
             ("/all", 4000, "returned"), ("/none", 1000, "WebSocketDisconnect")]
    for n, (path, code, _) in enumerate(cases, 1):
        with client.websocket_connect(path) as session:
            session.close(code)
        wrapped.calls.wait_for(n)
    assert wrapped.calls.items == [outcome for _, _, outcome in cases]


def test_W8_the_app_default_for_caught_close_codes_applies_to_every_route(connect):
    app = App(caught_close_codes=(4000,))
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        try:
            async for _ in ws:
                pass
            probe.add("ended")
        except WebSocketDisconnect as exc:
            probe.add(f"raised {exc.code}")

    client = connect(app)
    for code in (4000, 1000):
        with client.websocket_connect("/ws") as session:
            session.close(code)
    assert probe.wait_for(2) == ["ended", "raised 1000"]


# ------------------------------------------------------------------ W9: handler errors


class Boom(Exception):
    """The handler bug of W9's tests."""


def crash_app() -> App:
    app = App()

    @app.websocket("/crash")
    async def crash(ws: WebSocket) -> None:
        async for message in ws:
            if message == "boom":
                raise Boom("handler bug")
            await ws.send_text(f"fine: {message}")

    @app.websocket("/crash-before-accept", auto_accept=False)
    async def crash_early(ws: WebSocket) -> None:
        raise Boom("bug before accept")

    return app


def test_W9_a_handler_exception_closes_1011_and_the_server_keeps_serving(
        connect_quiet, caplog):
    caplog.set_level(logging.ERROR)
    wrapped = Outcome(crash_app())
    client = connect_quiet(wrapped)
    # uvicorn logs to "uvicorn.error", which does not propagate to the root logger (and
    # its logging setup, done when it starts, drops handlers added before).
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with client.websocket_connect("/crash") as session:
            session.send_text("boom")
            closed = closed_by_server(session)
        assert closed.code == status.WS_1011_INTERNAL_ERROR
        assert wrapped.calls.wait_for() == ["Boom"]  # re-raised for the server to log
        with client.websocket_connect("/crash") as session:  # the next one is served
            session.send_text("hello")
            assert session.receive_text() == "fine: hello"
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    # Logged with its traceback by the server.
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is Boom]
    assert logged, [r.getMessage() for r in caplog.records]


def test_W9_a_handler_exception_before_accept_denies_with_500(connect_quiet):
    client = connect_quiet(crash_app())
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/crash-before-accept"):
            pass
    assert info.value.status_code == 500
    with client.websocket_connect("/crash") as session:
        session.send_text("still up")
        assert session.receive_text() == "fine: still up"


# ------------------------------------------------------------------ W10: auto_accept


def test_W10_auto_accept_accepts_before_the_handler_and_closes_after_it(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text(ws.state.name)

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "OPEN"
        assert closed_by_server(session).code == 1000


def test_W10_without_auto_accept_the_handler_accepts_and_may_close(connect):
    app = App()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        before = ws.state.name
        errors = []
        for attempt in (ws.receive, lambda: ws.send_text("too early")):
            try:
                await attempt()
            except RuntimeError:
                errors.append("RuntimeError")
        await ws.accept()
        await ws.send_json([before, errors])
        await ws.close(4010, "handler closed")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_json() == ["CONNECTING", ["RuntimeError", "RuntimeError"]]
        closed = closed_by_server(session)
    assert (closed.code, closed.reason) == (4010, "handler closed")


def test_W10_returning_without_accepting_denies_with_403(connect):
    app = App()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        return None

    client = connect(app)
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws"):
            pass
    assert info.value.status_code == 403


# ------------------------------------------------------------ W11: connection facts


def test_W11_connection_facts_are_available_before_accept(connect, mode):
    app = App()

    @app.websocket("/facts/{room}/{n:int}", auto_accept=False)
    async def facts(ws: WebSocket, room: str, n: int) -> None:
        try:
            ws.headers["x-new"] = "1"  # type: ignore[index]
            writable = True
        except TypeError:
            writable = False
        seen = {
            "state": ws.state.name, "url": str(ws.url), "path": ws.path,
            "token": ws.headers["X-Token"], "token_lower": ws.headers.get("x-token"),
            "headers_writable": writable,
            "query_a": ws.query_params["a"], "query_all_a": ws.query_params.getlist("a"),
            "query_b": ws.query_params.get("b"),
            "path_params": ws.path_params, "n_type": type(ws.path_params["n"]).__name__,
            "cookies": ws.cookies, "client": list(ws.client) if ws.client else None,
            "scheme": ws.scheme, "host": ws.host, "host_header": ws.headers.get("host"),
            "subprotocols": ws.subprotocols,
        }
        await ws.accept()
        await ws.send_json(seen)

    client = connect(app)
    with client.websocket_connect("/facts/lobby/7?a=1&a=2&b=x%20y",
                                  subprotocols=["p1", "p2"],
                                  headers={"X-Token": "abc", "Cookie": "c1=v1; c2=v2"}
                                  ) as session:
        seen = session.receive_json()
    assert seen["state"] == "CONNECTING"
    assert seen["path"] == "/facts/lobby/7"
    assert seen["token"] == seen["token_lower"] == "abc"
    assert seen["headers_writable"] is False
    assert (seen["query_a"], seen["query_all_a"], seen["query_b"]) == ("2", ["1", "2"],
                                                                      "x y")
    assert seen["path_params"] == {"room": "lobby", "n": 7}
    assert seen["n_type"] == "int"
    assert seen["cookies"] == {"c1": "v1", "c2": "v2"}
    assert seen["scheme"] == "ws"
    assert seen["subprotocols"] == ["p1", "p2"]
    assert seen["host"] == seen["host_header"] and seen["host"]
    assert seen["url"] == f"ws://{seen['host']}/facts/lobby/7?a=1&a=2&b=x%20y"
    host, port = seen["client"]
    assert isinstance(port, int)
    if mode == "testclient":
        assert host == "testclient"  # no socket: the TestClient's name, as Starlette's
    else:
        assert (host, seen["host"]) == ("127.0.0.1", f"127.0.0.1:{client.port}")


def test_W11_path_params_are_filled_even_when_the_handler_does_not_name_them(connect):
    app = App()

    @app.websocket("/rooms/{room}/{n:int}")
    async def handler(ws: WebSocket) -> None:
        await ws.send_json([ws.path_params, type(ws.path_params.get("n")).__name__])

    client = connect(app)
    with client.websocket_connect("/rooms/lobby/3") as session:
        assert session.receive_json() == [{"room": "lobby", "n": 3}, "int"]


def test_W11_session_is_there_when_sessions_are_on(connect):
    app = App(secret_key="test secret")
    plain = App()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        session = ws.session  # before accept
        await ws.accept()
        await ws.send_json(session)

    @plain.websocket("/ws")
    async def no_sessions(ws: WebSocket) -> None:
        try:
            ws.session  # noqa: B018 - the access is the test
        except RuntimeError as exc:
            await ws.send_text(f"RuntimeError: {exc}")

    with connect(app).websocket_connect("/ws") as session:
        assert session.receive_json() == {}
    with connect(plain).websocket_connect("/ws") as session:
        assert "secret_key" in session.receive_text()


# ---------------------------------------------------------------- W12: raw ASGI events


def test_W12_receive_event_and_send_event_exchange_raw_dicts(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws", auto_accept=False)
    async def handler(ws: WebSocket) -> None:
        await ws.send_event({"type": "websocket.accept", "subprotocol": None,
                             "headers": [(b"x-raw", b"yes")]})
        seen = []
        for _ in range(2):
            event = await ws.receive_event()
            data = event.get("bytes")
            seen.append([event["type"], event.get("text"), data.hex() if data else None])
        await ws.send_event({"type": "websocket.send", "text": json.dumps(seen)})
        await ws.send_event({"type": "websocket.send", "bytes": b"\x01\x02"})
        await ws.send_event(legato.ws_send("from the helper"))
        event = await ws.receive_event()
        probe.add([event["type"], event.get("code"), event.get("reason")])
        try:
            await ws.receive_event()
        except WebSocketDisconnect as exc:
            probe.add(f"then WebSocketDisconnect {exc.code}")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert header(session.extra_headers, "x-raw") == "yes"
        session.send_text("hi")
        session.send_bytes(b"\xab")
        assert json.loads(session.receive_text()) == [
            ["websocket.receive", "hi", None], ["websocket.receive", None, "ab"]]
        assert frame(session) == ("bytes", b"\x01\x02")
        assert frame(session) == ("text", "from the helper")
        session.close(4001, "raw bye")
    assert probe.wait_for(2) == [["websocket.disconnect", 4001, "raw bye"],
                                 "then WebSocketDisconnect 4001"]


def test_W12_send_event_closes_with_a_raw_close_event(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_event(legato.ws_close(4005, "raw close"))

    @app.websocket("/bad")
    async def bad(ws: WebSocket) -> None:
        try:
            await ws.send_event({"type": "http.response.start"})
        except ValueError:
            await ws.send_text("ValueError")

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        closed = closed_by_server(session)
    assert (closed.code, closed.reason) == (4005, "raw close")
    with client.websocket_connect("/bad") as session:
        assert session.receive_text() == "ValueError"


# ------------------------------------------------------------------ W13: invalid JSON


@pytest.mark.parametrize("send", ["send_text", "send_bytes"])
def test_W13_invalid_json_closes_1007_with_a_reason(connect, send):
    client = connect(echo_app(receive_type="json"))
    with client.websocket_connect("/echo") as session:
        session.send_json({"ok": 1})
        assert session.receive_json() == {"ok": 1}
        getattr(session, send)("{not json" if send == "send_text" else b"{not json")
        closed = closed_by_server(session)
    assert closed.code == status.WS_1007_INVALID_FRAME_PAYLOAD_DATA
    assert "JSON" in closed.reason
    assert len(closed.reason.encode()) <= 123


def test_W13_a_handler_that_catches_invalid_message_keeps_the_connection(connect):
    app = App()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        while True:
            try:
                value = await ws.receive_json()
            except InvalidMessage as exc:
                assert isinstance(exc, ValueError)
                await ws.send_json({"error": str(exc), "code": exc.close_code})
                continue
            await ws.send_json({"value": value})

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        session.send_text("nope")
        reply = session.receive_json()
        assert reply["code"] == 1007
        assert "not valid JSON" in reply["error"]
        session.send_text("[1]")
        assert session.receive_json() == {"value": [1]}


# ------------------------------------------------------------------------ W15: limits


def test_W15_max_message_size_per_route_closes_1009_above_it(connect):
    app = App(max_message_size=8)
    probe = Probe()

    def route(path: str, **options: Any) -> None:
        @app.websocket(path, **options)
        async def handler(ws: WebSocket) -> None:
            try:
                async for message in ws:
                    await ws.send(message)
            except WebSocketDisconnect as exc:
                probe.add((path, exc.code))

    route("/small", max_message_size=16)
    route("/large", max_message_size=64)
    route("/app-default")
    client = connect(app)
    for path, limit in (("/small", 16), ("/large", 64), ("/app-default", 8)):
        with client.websocket_connect(path) as session:
            session.send_bytes(b"x" * limit)
            assert session.receive_bytes() == b"x" * limit
            session.send_text("é" * limit)  # 2 bytes each: the limit counts UTF-8 bytes
            assert closed_by_server(session).code == status.WS_1009_MESSAGE_TOO_BIG
    assert probe.wait_for(3) == [("/small", 1009), ("/large", 1009), ("/app-default", 1009)]


def test_W15_the_default_message_limit_is_one_mebibyte(connect):
    client = connect(echo_app())
    with client.websocket_connect("/echo") as session:
        session.send_bytes(b"a" * (1 << 20))
        assert len(session.receive_bytes()) == 1 << 20
        session.send_bytes(b"a" * ((1 << 20) + 1))
        assert closed_by_server(session).code == 1009


def test_W15_allowed_origins_deny_a_foreign_origin_with_403(connect):
    app = App(allowed_origins=["https://app.example"])

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("welcome")

    @app.websocket("/open", allowed_origins=["https://app.example", "https://other.example"])
    async def other(ws: WebSocket) -> None:
        await ws.send_text("welcome too")

    client = connect(app)
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}):
            pass
    assert info.value.status_code == 403
    with client.websocket_connect("/ws", headers={"Origin": "https://app.example"}) as s:
        assert s.receive_text() == "welcome"
    with client.websocket_connect("/ws") as s:  # no Origin: not a browser, not hijacking
        assert s.receive_text() == "welcome"
    with client.websocket_connect("/open", headers={"Origin": "https://other.example"}) as s:
        assert s.receive_text() == "welcome too"


def own_origin(client: Any) -> str:
    """The Origin of a page served by the same server as ``client`` talks to."""
    port = getattr(client, "port", None)
    return f"http://127.0.0.1:{port}" if port is not None else "http://testserver"


def assert_denied_403(client: Any, path: str, headers: dict[str, str]) -> None:
    with pytest.raises(WebSocketDenied) as info:
        with client.websocket_connect(path, headers=headers):
            pass
    assert info.value.status_code == 403


def test_W15_a_cross_site_handshake_with_cookies_is_refused_by_default(connect):
    # Cross-site WebSocket hijacking: a browser sends the user's cookies whichever page
    # opens the socket; without allowed_origins legato refuses a foreign Origin then.
    app = App()

    @app.websocket("/ws")
    async def direct(ws: WebSocket) -> None:
        await ws.send_text("welcome")

    @app.websocket("/with-context")
    async def with_context(ws: WebSocket, room: str = "lobby") -> None:
        await ws.send_text(room)

    client = connect(app)
    for path in ("/ws", "/with-context"):
        assert_denied_403(client, path, {"Origin": "https://evil.example", "Cookie": "id=1"})
        assert_denied_403(client, path, {"Origin": "null", "Cookie": "id=1"})
        with client.websocket_connect(path, headers={"Origin": own_origin(client),
                                                     "Cookie": "id=1"}) as s:
            assert s.receive_text() in ("welcome", "lobby")
        # No cookie: nothing of the user's to abuse; no Origin: not a browser.
        with client.websocket_connect(path, headers={"Origin": "https://evil.example"}) as s:
            assert s.receive_text() in ("welcome", "lobby")
        with client.websocket_connect(path, headers={"Cookie": "id=1"}) as s:
            assert s.receive_text() in ("welcome", "lobby")


def test_W15_with_sessions_any_cross_site_handshake_is_refused(connect):
    app = App(secret_key="s3cret")

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("welcome")

    client = connect(app)
    assert_denied_403(client, "/ws", {"Origin": "https://evil.example"})
    with client.websocket_connect("/ws", headers={"Origin": own_origin(client)}) as s:
        assert s.receive_text() == "welcome"


def test_W15_allowed_origins_star_switches_the_cross_site_check_off(connect):
    app = App(allowed_origins="*")

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("welcome")

    @app.websocket("/strict", allowed_origins=["https://app.example"])
    async def strict(ws: WebSocket) -> None:
        await ws.send_text("strict")

    client = connect(app)
    with client.websocket_connect("/ws", headers={"Origin": "https://evil.example",
                                                  "Cookie": "id=1"}) as s:
        assert s.receive_text() == "welcome"
    assert_denied_403(client, "/strict", {"Origin": "https://evil.example"})


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://example.com", "example.com", True),
    ("https://example.com", "example.com", True),  # TLS ended by a proxy
    ("http://example.com:8000", "example.com:8000", True),
    ("http://EXAMPLE.com:8000", "example.com:8000", True),
    ("https://example.com", "example.com:443", True),
    ("http://example.com", "example.com:8000", False),
    ("http://example.com:9000", "example.com:8000", False),
    ("http://evil.example", "example.com", False),
    ("http://example.com.evil.example", "example.com", False),
    ("http://[::1]:8000", "[::1]:8000", True),
    ("null", "example.com", False),
    ("file://", "example.com", False),
    ("http://example.com:notaport", "example.com", False),
])
def test_W15_same_origin_compares_host_and_port(origin: str, host: str, same: bool) -> None:
    from legato.origins import same_origin

    assert same_origin(origin, host, "ws") is same


def test_W15_keepalive_defaults_are_twenty_seconds():
    app = App()
    assert (app.ping_interval, app.ping_timeout) == (20.0, 20.0)
    assert app.max_message_size == 1 << 20


# --------------------------------------------------------------------- W16: liveness


def test_W16_send_after_the_peer_left_raises_websocket_disconnect(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ticker")
    async def ticker(ws: WebSocket) -> None:
        # Never receives: only a failing send can tell it the peer has gone.
        try:
            for _ in range(int(WAIT / 0.01)):
                await ws.send_text("tick")
                await asyncio.sleep(0.01)
            probe.add("sent to the end without noticing")
        except Exception as exc:
            probe.add((type(exc).__name__, getattr(exc, "code", None)))

    client = connect(app)
    with client.websocket_connect("/ticker") as session:
        assert session.receive_text() == "tick"
        session.close(4003, "leaving")
    assert probe.wait_for() == [("WebSocketDisconnect", 4003)]


def test_W16_wait_closed_returns_the_close_code_and_keeps_unread_messages(connect):
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("ready")
        code = await ws.wait_closed()
        kept = [await ws.receive(), await ws.receive()]
        try:
            await ws.receive()
        except WebSocketDisconnect as exc:
            kept.append(exc.code)
        try:
            await ws.send_text("too late")
        except Exception as exc:
            kept.append(type(exc).__name__)
        probe.add((code, kept))

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "ready"
        session.send_text("first")
        session.send_bytes(b"second")
        session.close(4004)
    assert probe.wait_for() == [(4004, ["first", b"second", 4004, "WebSocketDisconnect"])]


def test_W16_unread_messages_never_keep_a_waiting_handler_past_the_peers_close(connect):
    # A send-only handler in wait_closed(), a client that sends far more than the 256
    # messages wait_closed() keeps, then closes: the handler returns with the peer's code
    # (it does not hang behind unread messages), the first 256 stay readable, the rest
    # are discarded.
    app = App()
    probe = Probe()

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        await ws.send_text("ready")
        code = await ws.wait_closed()
        kept = []
        try:
            while True:
                kept.append(await ws.receive_text())
        except WebSocketDisconnect as exc:
            probe.add((code, len(kept), kept[0], kept[-1], exc.code))

    client = connect(app)
    with client.websocket_connect("/ws") as session:
        assert session.receive_text() == "ready"
        for n in range(1000):
            session.send_text(f"m{n}")
        session.close(4001)
    assert probe.wait_for() == [(4001, 256, "m0", "m255", 4001)]


def test_W16_a_send_only_handler_learns_of_a_dead_peer_through_keepalive():
    # Built-in server only: it is the one that takes ping_interval/ping_timeout from the
    # App (uvicorn has its own --ws-ping-* options; the TestClient's peer always answers
    # pings). The dead peer is a raw socket that completes the handshake and then reads
    # nothing, so it never answers a ping; the TCP connection itself stays up.
    app = App(ping_interval=0.2, ping_timeout=0.2)
    probe = Probe()

    @app.websocket("/waiter")
    async def waiter(ws: WebSocket) -> None:
        probe.add(("waiter", "open"))
        probe.add(("waiter", "wait_closed", await ws.wait_closed()))

    @app.websocket("/sender")
    async def sender(ws: WebSocket) -> None:
        try:
            for _ in range(int(WAIT / 0.02)):
                await ws.send_text("tick")
                await asyncio.sleep(0.02)
            probe.add(("sender", "never noticed"))
        except Exception as exc:
            probe.add(("sender", type(exc).__name__, getattr(exc, "code", None)))

    with serve_legato(app) as port, ExitStack() as sockets:
        for path in ("/waiter", "/sender"):
            sockets.enter_context(dead_peer(port, path))
        seen = probe.wait_for(3, timeout=10)
    assert ("waiter", "wait_closed", 1006) in seen
    assert ("sender", "WebSocketDisconnect", 1006) in seen


@contextmanager
def dead_peer(port: int, path: str) -> Iterator[socket.socket]:
    """A WebSocket client that opens the connection, then never reads or answers."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: nothing past the 101 is read
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock
