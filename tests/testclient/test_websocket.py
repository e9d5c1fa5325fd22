"""TestClient WebSockets: the protocol core's client role against legato's server,
handshake (RFC 6455 §4), messages, permessage-deflate (RFC 7692), closing (§7)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from apps import (
    DISCONNECTS,
    Failure,
    silent_app,
    ws_close_before_accept_app,
    ws_deny_app,
    ws_echo_app,
    ws_failing_app,
    ws_failing_before_accept_app,
    ws_kinds_app,
    ws_mute_app,
    ws_scope_app,
    ws_server_close_app,
)

from legato.exceptions import WebSocketDenied, WebSocketDisconnect
from legato.server import ServerConfig
from legato.testclient import TestClient


@pytest.fixture
def client() -> Any:
    with TestClient(ws_echo_app) as client:
        yield client


# ---------------------------------------------------------------------- messages


def test_text_and_binary_messages_are_echoed_in_kind(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text("héllo")
        assert ws.receive_text() == "héllo"
        ws.send_bytes(b"\x00\xff")
        assert ws.receive_bytes() == b"\x00\xff"


def test_json_goes_as_text_or_binary_as_asked(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_json({"a": [1, 2]})
        assert ws.receive() == {"type": "websocket.send", "text": '{"a":[1,2]}'}
        ws.send_json({"b": None}, mode="binary")
        assert ws.receive_json(mode="binary") == {"b": None}


def test_asgi_style_events_can_be_sent_and_received(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send({"type": "websocket.send", "text": "a"})
        ws.send({"type": "websocket.receive", "bytes": b"b"})  # Starlette's spelling
        assert ws.receive() == {"type": "websocket.send", "text": "a"}
        assert ws.receive() == {"type": "websocket.send", "bytes": b"b"}


def test_receiving_the_wrong_kind_of_message_is_a_clear_error() -> None:
    with TestClient(ws_kinds_app) as client, client.websocket_connect("/") as ws:
        with pytest.raises(TypeError, match=r"expected a text message, received a binary"):
            ws.receive_text()
        with pytest.raises(TypeError, match=r"expected a binary message, received a text"):
            ws.receive_bytes()


@pytest.mark.parametrize("deflate", [True, False])
def test_one_mebibyte_messages_go_both_ways_with_and_without_compression(
        client: TestClient, deflate: bool) -> None:
    text = "legato " * (1 << 20 // 7)
    data = bytes(range(256)) * 4096  # 1 MiB, the server's default message limit
    with client.websocket_connect("/ws", deflate=deflate) as ws:
        extensions = ws.extra_headers.get("sec-websocket-extensions", "")
        assert extensions.startswith("permessage-deflate") is deflate
        ws.send_text(text)
        assert ws.receive_text() == text
        ws.send_bytes(data)
        assert ws.receive_bytes() == data


def test_the_client_offers_permessage_deflate_as_a_browser_does() -> None:
    with TestClient(ws_scope_app) as client, client.websocket_connect("/") as ws:
        headers = ws.receive_json()["headers"]
    assert headers["sec-websocket-extensions"] == "permessage-deflate; client_max_window_bits"


# --------------------------------------------------------------------- handshake


def test_the_scope_carries_path_query_subprotocols_headers_and_cookies() -> None:
    with TestClient(ws_scope_app, headers={"x-client": "1"}, cookies={"s": "abc"}) as client:
        with client.websocket_connect("/chat/room?user=ann", subprotocols=["v1", "v2"],
                                      headers={"x-request": "2"}) as ws:
            scope = ws.receive_json()
    assert scope["path"] == "/chat/room"
    assert scope["query"] == "user=ann"
    assert scope["scheme"] == "ws"
    assert scope["subprotocols"] == ["v1", "v2"]
    assert scope["headers"]["x-client"] == "1"
    assert scope["headers"]["x-request"] == "2"
    assert scope["headers"]["cookie"] == "s=abc"
    assert scope["headers"]["host"] == "testserver"


def test_an_https_base_url_gives_the_wss_scheme() -> None:
    with TestClient(ws_scope_app, base_url="https://testserver") as client:
        with client.websocket_connect("/") as ws:
            assert ws.receive_json()["scheme"] == "wss"


def test_the_subprotocol_the_app_chose_and_its_headers_are_reported(
        client: TestClient) -> None:
    with client.websocket_connect("/ws", subprotocols=["chat", "superchat"]) as ws:
        assert ws.accepted_subprotocol == "superchat"
        assert ws.extra_headers["x-accepted"] == "yes"
        assert ws.extra_headers["sec-websocket-protocol"] == "superchat"


def test_a_denial_response_raises_websocket_denied_with_status_body_and_headers() -> None:
    with TestClient(ws_deny_app) as client:
        with pytest.raises(WebSocketDenied) as caught:
            with client.websocket_connect("/"):
                pass  # pragma: no cover - never reached
    denied = caught.value
    assert denied.status_code == 401
    assert denied.body == b"no token, no entry"
    assert ("www-authenticate", "Token") in denied.headers
    assert isinstance(denied, WebSocketDisconnect)


def test_closing_before_accepting_denies_with_403() -> None:
    # ASGI: websocket.close before websocket.accept refuses the handshake with 403.
    with TestClient(ws_close_before_accept_app) as client:
        with pytest.raises(WebSocketDenied) as caught:
            with client.websocket_connect("/"):
                pass  # pragma: no cover - never reached
    assert caught.value.status_code == 403


def test_an_app_that_never_accepts_times_out_on_entry() -> None:
    client = TestClient(silent_app, timeout=0.2)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"handshake for /late"):
        with client.websocket_connect("/late"):
            pass  # pragma: no cover - never reached
    client.close()
    assert time.monotonic() - start < 2


# -------------------------------------------------------------------------- close


def test_a_server_close_raises_websocket_disconnect_with_its_code_and_reason() -> None:
    with TestClient(ws_server_close_app) as client, client.websocket_connect("/") as ws:
        assert ws.receive_text() == "bye"
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive_text()
        assert (caught.value.code, caught.value.reason) == (4001, "go away")
        # receive() reports the end as an event, every time it is asked.
        assert ws.receive() == {"type": "websocket.close", "code": 4001, "reason": "go away"}
        with pytest.raises(WebSocketDisconnect):
            ws.send_text("too late")


def test_leaving_the_block_closes_with_1000_and_waits_for_the_app(
        client: TestClient) -> None:
    DISCONNECTS.clear()
    with client.websocket_connect("/ws") as ws:
        ws.send_text("x")
        ws.receive_text()
    assert DISCONNECTS == [1000]


def test_close_sends_its_code_to_the_app(client: TestClient) -> None:
    DISCONNECTS.clear()
    with client.websocket_connect("/ws") as ws:
        ws.close(4000, "done")
        assert DISCONNECTS == [4000]
        with pytest.raises(RuntimeError, match="after close"):
            ws.send_text("x")


def test_close_with_1005_sends_a_close_frame_without_status_code(client: TestClient) -> None:
    # RFC 6455 §7.1.5: a Close frame without a status code is reported as 1005.
    DISCONNECTS.clear()
    with client.websocket_connect("/ws") as ws:
        ws.close(1005)
    assert DISCONNECTS == [1005]


def test_close_with_a_code_not_allowed_on_the_wire_is_refused_and_closes_nothing(
        client: TestClient) -> None:
    DISCONNECTS.clear()
    with client.websocket_connect("/ws") as ws:
        with pytest.raises(ValueError):
            ws.close(1006)
        ws.send_text("still open")
        assert ws.receive_text() == "still open"
    assert DISCONNECTS == [1000]


def test_drop_ends_the_connection_without_close_frame_and_the_app_sees_1006(
        client: TestClient) -> None:
    DISCONNECTS.clear()
    with client.websocket_connect("/ws") as ws:
        ws.drop()
        assert DISCONNECTS == [1006]
        assert ws.receive() == {"type": "websocket.close", "code": 1006, "reason": ""}


def test_a_receive_with_nothing_coming_times_out_quickly() -> None:
    with TestClient(ws_mute_app, timeout=0.2) as client, client.websocket_connect("/ws") as ws:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no message from the server on WebSocket /ws"):
            ws.receive_text()
        assert time.monotonic() - start < 1


# ------------------------------------------------------------------- app failures


def test_an_exception_after_accept_is_raised_from_the_next_receive() -> None:
    with TestClient(ws_failing_app) as client, client.websocket_connect("/") as ws:
        ws.send_text("one")
        assert ws.receive_text() == "one"  # what was sent before the failure still arrives
        ws.send_text("two")
        with pytest.raises(Failure, match="after accept"):
            ws.receive_text()


def test_an_exception_after_accept_is_raised_on_leaving_the_block() -> None:
    with TestClient(ws_failing_app) as client:
        with pytest.raises(Failure, match="after accept"):
            with client.websocket_connect("/") as ws:
                ws.send_text("one")
                ws.send_text("two")


def test_without_raise_server_exceptions_a_failing_app_closes_with_1011() -> None:
    with TestClient(ws_failing_app, raise_server_exceptions=False) as client:
        with client.websocket_connect("/") as ws:
            ws.send_text("one")
            ws.send_text("two")
            assert ws.receive_text() == "one"
            with pytest.raises(WebSocketDisconnect) as caught:
                ws.receive_text()
    assert caught.value.code == 1011


def test_an_exception_before_accept_is_raised_on_entry() -> None:
    with TestClient(ws_failing_before_accept_app) as client:
        with pytest.raises(Failure, match="before accept"):
            with client.websocket_connect("/"):
                pass  # pragma: no cover - never reached


def test_without_raise_server_exceptions_an_exception_before_accept_is_a_500_denial() -> None:
    with TestClient(ws_failing_before_accept_app, raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as caught:
            with client.websocket_connect("/"):
                pass  # pragma: no cover - never reached
    assert caught.value.status_code == 500


def test_a_message_over_the_server_limit_closes_with_1009() -> None:
    config = ServerConfig(ws_max_message_size=1000)
    with TestClient(ws_echo_app, config=config) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_bytes(b"x" * 1001)
            with pytest.raises(WebSocketDisconnect) as caught:
                ws.receive_bytes()
    assert caught.value.code == 1009


def test_two_sessions_talk_to_each_other_through_the_app() -> None:
    room: list[Any] = []

    async def relay(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        room.append(send)
        while (message := await receive())["type"] == "websocket.receive":
            for member in room:
                if member is not send:
                    await member({"type": "websocket.send", "text": message["text"]})
        room.remove(send)

    with TestClient(relay) as client:
        with client.websocket_connect("/") as ann, client.websocket_connect("/") as bob:
            ann.send_text("hi bob")
            assert bob.receive_text() == "hi bob"
            bob.send_text("hi ann")
            assert ann.receive_text() == "hi ann"
    assert room == []


def test_the_server_state_survives_many_sessions(client: TestClient) -> None:
    for n in range(50):
        with client.websocket_connect("/ws") as ws:
            ws.send_text(json.dumps(n))
            assert ws.receive_json() == n
