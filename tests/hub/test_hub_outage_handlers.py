"""Issue 18 item 5: the handler shape docs/hub.md and the chat example show (publish in
the receive loop, no ``except HubUnavailable``) keeps its client during an outage.

The App's hub is not strict: a publish the broker cannot take reaches this process's
subscribers, logs one warning, and returns None instead of raising out of the handler
(which closed the client with 1011). ``App(hub_strict=True)`` raises, for handlers that
answer an outage themselves. A bare ``Hub`` is strict (tests/hub/test_redis*.py).
Against a real redis-server this test starts and kills.
"""

from __future__ import annotations

import logging

import pytest
from redis_servers import RedisServer

from legato import App, TestClient, WebSocket
from legato.exceptions import WebSocketDisconnect
from legato.hub import HubUnavailable


def chat_app(url: str, **options: object) -> App:
    app = App(hub=url, **options)  # type: ignore[arg-type]

    @app.websocket("/room")
    async def room(ws: WebSocket) -> None:
        await app.hub.subscribe(ws, "room")
        await ws.send_json({"ready": True})
        async for text in ws:  # the documented shape: no try/except around publish
            message_id = await app.hub.publish("room", {"text": text})
            await ws.send_json({"published": message_id is not None})

    return app


def test_18_5_a_handler_that_does_not_catch_keeps_its_client_through_an_outage(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    app = chat_app(f"{redis_server.url}?prefix=outage&timeout=0.5")
    with TestClient(app) as client, client.websocket_connect("/room") as ws:
        assert ws.receive_json() == {"ready": True}
        ws.send_text("before")
        got = [ws.receive_json(), ws.receive_json()]
        assert {"published": True} in got
        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="legato.hub"):
            for text in ("during 1", "during 2"):
                ws.send_text(text)
                got = [ws.receive_json(), ws.receive_json()]
                # This process's subscribers still get it; the handler learns it was
                # not published everywhere, and goes on.
                assert {"published": False} in got
                assert any(m.get("data") == {"text": text} for m in got)
        warnings = [r for r in caplog.records if r.name == "legato.hub"
                    and "not published to every process" in r.getMessage()]
        assert len(warnings) == 1  # one warning, not one per message
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        assert app.hub.stats()["published_locally"] == 2


def test_18_5_hub_strict_makes_the_publish_raise_for_handlers_that_answer_it(
        redis_server: RedisServer) -> None:
    app = App(hub=f"{redis_server.url}?prefix=strict&timeout=0.5", hub_strict=True)

    @app.websocket("/room")
    async def room(ws: WebSocket) -> None:
        await app.hub.subscribe(ws, "room")
        await ws.send_json({"ready": True})
        async for text in ws:
            try:
                await app.hub.publish("room", text)
            except HubUnavailable as exc:
                await ws.send_json({"error": "not sent", "local": exc.delivered_locally})

    with TestClient(app) as client, client.websocket_connect("/room") as ws:
        assert ws.receive_json() == {"ready": True}
        redis_server.kill()
        ws.send_text("during")
        got = [ws.receive_json(), ws.receive_json()]
        assert {"error": "not sent", "local": True} in got


def test_18_5_a_strict_publish_that_escapes_the_handler_closes_with_1013_not_1011(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """The old shape under ``hub_strict=True``: the client is closed, but with 1013 (try
    again later: an outage, not a bug) and a warning, no ERROR traceback."""
    app = chat_app(f"{redis_server.url}?prefix=escape&timeout=0.5", hub_strict=True)
    with TestClient(app, raise_server_exceptions=False) as client, \
            client.websocket_connect("/room") as ws:
        assert ws.receive_json() == {"ready": True}
        redis_server.kill()
        with caplog.at_level(logging.WARNING):
            ws.send_text("during")
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    ws.receive_json()
        assert closed.value.code == 1013
        assert closed.value.reason == "hub unavailable: try again later"
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_18_5_the_same_handler_runs_unchanged_on_the_memory_hub() -> None:
    with TestClient(chat_app("memory://")) as client, \
            client.websocket_connect("/room") as ws:
        assert ws.receive_json() == {"ready": True}
        ws.send_text("hi")
        got = [ws.receive_json(), ws.receive_json()]
        assert {"published": True} in got
