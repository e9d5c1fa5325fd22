"""The hub through the App (SPEC §6), with the memory backend and with Redis: the same
handler code for both (P4), driven through the TestClient."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from legato import App, HTTPError, TestClient, WebSocket
from legato.hub import Hub, HubUnavailable


@pytest.fixture(params=["memory", "redis", "nats"])
def hub_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
    elif request.param == "nats":
        url = request.getfixturevalue("nats_url")
        yield f"{url}?prefix={request.getfixturevalue('nats_prefix')}&presence_ttl=2"
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("prefix")
        yield f"{url}/0?prefix={prefix}&presence_ttl=2"


def room_app(hub_url: str, **options: Any) -> App:
    app = App(hub=hub_url, **options)

    @app.websocket("/rooms/{room}")
    async def room(ws: WebSocket, room: str, since: str | None = None,
                   name: str | None = None) -> None:
        presence = {"name": name} if name else None
        async with app.hub.subscribe(ws, f"room:{room}", since=since, presence=presence):
            await ws.send_json({"ready": True})
            async for message in ws:
                await app.hub.publish(f"room:{room}", {"from": name, "text": message})

    @app.websocket("/forever/{room}")
    async def forever(ws: WebSocket, room: str) -> None:
        await app.hub.subscribe(ws, f"room:{room}")  # awaited: until the connection ends
        await ws.send_json({"ready": True})
        await ws.wait_closed()

    @app.post("/rooms/{room}")
    async def say(room: str, text: str) -> dict[str, str]:
        try:
            return {"id": await app.hub.publish(f"room:{room}", {"from": "http",
                                                                 "text": text})}
        except HubUnavailable:
            raise HTTPError(503, "hub unavailable") from None

    @app.get("/rooms/{room}/presence")
    async def presence(room: str) -> list[Any]:
        return sorted(m["name"] for m in await app.hub.presence(f"room:{room}"))

    @app.get("/rooms/{room}/history")
    async def history(room: str, since: str | None = None) -> list[Any]:
        return await app.hub.history(f"room:{room}", since)

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return app.hub.stats()

    @app.post("/later/{room}")
    async def later(room: str) -> dict[str, bool]:
        # A background task publishes after this request has been answered.
        async def publish_soon() -> None:
            await asyncio.sleep(0.01)
            await app.hub.publish(f"room:{room}", {"from": "background", "text": "tick"})

        background.add(asyncio.get_running_loop().create_task(publish_soon()))
        return {"scheduled": True}

    background: set[asyncio.Task[None]] = set()
    return app


def test_P1_P4_subscribers_get_what_handlers_http_and_background_tasks_publish(
        hub_url: str) -> None:
    with TestClient(room_app(hub_url)) as client:
        with client.websocket_connect("/rooms/a?name=ann") as ann, \
                client.websocket_connect("/rooms/a?name=bob") as bob, \
                client.websocket_connect("/rooms/b?name=eve") as eve:
            for ws in (ann, bob, eve):
                assert ws.receive_json() == {"ready": True}
            ann.send_text("hello")
            for ws in (ann, bob):
                envelope = ws.receive_json()
                assert envelope["topic"] == "room:a"
                assert envelope["data"] == {"from": "ann", "text": "hello"}
            published = client.post("/rooms/a?text=from-http").json()["id"]
            for ws in (ann, bob):
                envelope = ws.receive_json()
                assert (envelope["id"], envelope["data"]["text"]) == (published, "from-http")
            eve.send_text("only b")
            assert eve.receive_json()["data"]["text"] == "only b"
            client.post("/later/b")
            assert eve.receive_json()["data"] == {"from": "background", "text": "tick"}


def test_P1_a_closed_connection_leaves_all_its_topics(hub_url: str) -> None:
    app = room_app(hub_url)
    with TestClient(app) as client:
        with client.websocket_connect("/forever/a") as a, \
                client.websocket_connect("/rooms/b") as b:
            a.receive_json()
            b.receive_json()
            assert client.get("/stats").json()["subscriptions"] == 2
        for _ in range(100):  # the server notices the closes
            if client.get("/stats").json()["subscriptions"] == 0:
                break
        stats = client.get("/stats").json()
        assert (stats["subscriptions"], stats["connections"], stats["topics"]) == (0, 0, 0)


def test_P2_a_message_is_encoded_once_for_all_local_subscribers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import legato.hub.outbox as outbox

    calls = []
    real = outbox.encode_server_frame

    def counting(opcode: int, payload: bytes) -> bytes:
        calls.append(len(payload))
        return real(opcode, payload)

    monkeypatch.setattr(outbox, "encode_server_frame", counting)
    app = room_app("memory://")
    with TestClient(app) as client:
        sessions = [client.websocket_connect("/forever/all").__enter__() for _ in range(20)]
        try:
            for ws in sessions:
                ws.receive_json()
            tasks_before = client.get("/stats").json()  # warm
            assert tasks_before["subscriptions"] == 20
            client.post("/rooms/all?text=once")
            for ws in sessions:
                assert ws.receive_json()["data"]["text"] == "once"
        finally:
            for ws in sessions:
                ws.__exit__(None, None, None)
    assert len(calls) == 1  # one frame for twenty subscribers (RFC 6455 §5.1)


def test_P2_publishing_starts_no_task_per_subscriber() -> None:
    app = App()
    counts: list[int] = []

    @app.websocket("/sub")
    async def sub(ws: WebSocket) -> None:
        await app.hub.subscribe(ws, "t")
        await ws.send_text("ready")
        await ws.wait_closed()

    @app.post("/pub")
    async def pub() -> dict[str, int]:
        before = len(asyncio.all_tasks())
        await app.hub.publish("t", "x")
        counts.append(len(asyncio.all_tasks()) - before)
        return {}

    with TestClient(app) as client:
        sessions = [client.websocket_connect("/sub").__enter__() for _ in range(30)]
        try:
            for ws in sessions:
                assert ws.receive_text() == "ready"
            client.post("/pub")
            for ws in sessions:
                ws.receive_json()
        finally:
            for ws in sessions:
                ws.__exit__(None, None, None)
    assert counts == [0]


def test_P5_a_client_resumes_with_since_and_gets_what_it_missed_in_order(
        hub_url: str) -> None:
    with TestClient(room_app(hub_url, hub_history=50)) as client:
        with client.websocket_connect("/rooms/r") as first:
            first.receive_json()
            first.send_text("one")
            last_seen = first.receive_json()["id"]
        ids = [client.post(f"/rooms/r?text=missed-{n}").json()["id"] for n in range(3)]
        with client.websocket_connect(f"/rooms/r?since={last_seen}") as again:
            got = [again.receive_json() for _ in range(3)]
            assert [g["id"] for g in got] == ids
            assert [g["data"]["text"] for g in got] == ["missed-0", "missed-1", "missed-2"]
            assert again.receive_json() == {"ready": True}
            client.post("/rooms/r?text=live")
            assert again.receive_json()["data"]["text"] == "live"
        history = client.get("/rooms/r/history", params={"since": last_seen}).json()
        assert [h["data"]["text"] for h in history] == ["missed-0", "missed-1", "missed-2",
                                                         "live"]


def test_P5_a_malformed_since_is_refused_clearly(hub_url: str) -> None:
    from legato import WebSocketDisconnect

    with TestClient(room_app(hub_url, hub_history=5)) as client:
        with client.websocket_connect("/rooms/r?since=yesterday") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1008


def test_P6_presence_lists_the_members_of_a_topic(hub_url: str) -> None:
    with TestClient(room_app(hub_url)) as client:
        with client.websocket_connect("/rooms/p?name=ann") as ann, \
                client.websocket_connect("/rooms/p?name=bob") as bob:
            ann.receive_json()
            bob.receive_json()
            assert client.get("/rooms/p/presence").json() == ["ann", "bob"]
        assert client.get("/rooms/p/presence").json() == []


async def test_P6_presence_spans_hubs_sharing_a_backend(redis_url: str, prefix: str) -> None:
    # Two hubs on one Redis are two processes as far as presence is concerned.
    url = f"{redis_url}/0?prefix={prefix}&presence_ttl=1"
    hubs = [Hub(url), Hub(url)]
    for hub in hubs:
        await hub.start()
    try:
        await hubs[0].backend.join("room", "a-1", {"name": "ann"})
        await hubs[1].backend.join("room", "b-1", {"name": "bob"})
        names = sorted(m["name"] for m in await hubs[0].presence("room"))
        assert names == ["ann", "bob"]
    finally:
        for hub in hubs:
            await hub.stop()


def test_P7_metrics_show_hub_drops_and_depths() -> None:
    app = room_app("memory://", metrics=True)
    with TestClient(app) as client:
        with client.websocket_connect("/rooms/m?name=ann") as ann:
            ann.receive_json()
            ann.send_text("hi")
            ann.receive_json()
            text = client.get("/metrics").text
    assert 'legato_websocket_open{route="/rooms/{room}"} 1' in text
    assert "legato_hub_published_total 1" in text
    assert "legato_hub_dropped_total 0" in text
    assert "legato_hub_max_queue_depth" in text


def test_P1_the_hub_delivers_under_uvicorn_too() -> None:
    # Under other ASGI servers writes need a coroutine: one sender task per connection
    # with queued messages (outbox.py). Same handler code, clients nobody here wrote.
    import sys
    from pathlib import Path

    from websockets.sync.client import connect

    sys.path.insert(0, str(Path(__file__).parents[1] / "framework"))
    from live import serve_uvicorn

    app = room_app("memory://", hub_history=10)
    with serve_uvicorn(app) as port:
        url = f"ws://127.0.0.1:{port}/rooms/u"
        with connect(f"{url}?name=ann") as ann, connect(f"{url}?name=bob") as bob:
            for ws in (ann, bob):
                assert ws.recv(timeout=5) == '{"ready":true}'
            for n in range(50):
                ann.send(f"m{n}")
            for ws in (ann, bob):
                got = [json.loads(ws.recv(timeout=5))["data"]["text"] for _ in range(50)]
                assert got == [f"m{n}" for n in range(50)]
        with connect(f"{url}?since=0") as late:
            replayed = [json.loads(late.recv(timeout=5)) for _ in range(10)]
            assert [r["data"]["text"] for r in replayed] == [f"m{n}" for n in range(40, 50)]
