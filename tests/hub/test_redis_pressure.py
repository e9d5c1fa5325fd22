"""The Redis hub under pressure (issue 18): never a false failure, never a double, never
silence. Each test talks to a real Redis: the shared one for load, a redis-server of its
own for faults (killed, or hung with SIGSTOP: never the shared one)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import redis.asyncio as aioredis
from recording import Recorder, running
from redis_servers import RedisServer

from legato import App, TestClient, WebSocket
from legato.hub import Hub, SubscribeUnavailable, backend_for
from legato.hub.backend import HubUnavailable, PublishOutcomeUnknown, id_key
from legato.hub.redis import RedisBackend, State
from legato.exceptions import WebSocketDenied, WebSocketDisconnect


def ordered(ids: list[str]) -> bool:
    return [id_key(i) for i in ids] == sorted(id_key(i) for i in ids)


def local_deliveries(hub: Hub) -> list[tuple[str, str, Any]]:
    """Record what ``hub`` hands its local subscribers, from Redis or on its own (the
    hub's one entry point for both: ``_deliver``); set before the hub starts."""
    seen: list[tuple[str, str, Any]] = []
    deliver = hub._deliver

    def recording(topic: str, message_id: str, payload: Any, key: str | None = None) -> None:
        seen.append((topic, message_id, payload))
        deliver(topic, message_id, payload, key)

    hub._deliver = recording  # type: ignore[method-assign]
    return seen


# ----------------------------------------------------------------- item 1: no false failure


async def test_18_1_twenty_thousand_concurrent_publishes_all_succeed_on_a_healthy_redis(
        redis_url: str, prefix: str) -> None:
    publisher = RedisBackend(redis_url, prefix=prefix)
    listener = RedisBackend(redis_url, prefix=prefix)
    async with running(publisher), running(listener) as hub:
        await listener.listen("room")
        ids = await asyncio.gather(*(publisher.publish("room", f"m{n}")
                                     for n in range(20_000)))
        assert len(set(ids)) == 20_000
        assert ordered(ids)  # issued in this order, run by Redis in this order
        await hub.wait_for_payloads("room", 20_000, timeout=10)
        assert hub.payloads("room") == [f"m{n}" for n in range(20_000)]
        assert hub.ids("room") == ids


async def test_18_1_past_max_pending_publishes_wait_for_room_and_all_succeed(
        redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, max_pending=100)
    async with running(backend):
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, backend.pipeline.pending)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        ids = await asyncio.gather(*(backend.publish("room", f"m{n}") for n in range(3_000)))
        watcher.cancel()
        assert len(set(ids)) == 3_000 and ordered(ids)
        assert 0 < peak <= 100  # the bound holds: the rest waited for room


async def test_18_1_publishes_waiting_for_room_fail_as_unavailable_when_redis_is_gone(
        redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix="t", max_pending=10, timeout=0.5)
    async with running(backend):
        await backend.publish("room", "first")
        redis_server.kill()
        done = await asyncio.gather(*(backend.publish("room", f"m{n}") for n in range(200)),
                                    return_exceptions=True)
        assert all(isinstance(d, HubUnavailable) for d in done), done
        assert backend.pipeline.pending == 0  # nothing left waiting


async def test_18_1_a_hub_publish_burst_during_a_fan_out_never_reports_redis_unavailable(
        redis_url: str, prefix: str) -> None:
    hub = Hub(f"{redis_url}/0?prefix={prefix}")
    seen = local_deliveries(hub)
    await hub.start()
    try:
        hub._subscribers["room"] = set()  # a subscribed topic: the backend listens to it
        await hub.backend.listen("room")
        done = await asyncio.gather(*(hub.publish("room", {"n": n}) for n in range(5_000)),
                                    return_exceptions=True)
        assert [d for d in done if not isinstance(d, str)] == []
        for _ in range(200):
            if len(seen) == 5_000:
                break
            await asyncio.sleep(0.02)
        assert [s[1] for s in seen] == done
    finally:
        await hub.stop()


# ----------------------------------------------------------------- item 2: never a double


async def test_18_2_a_publish_to_a_hung_redis_raises_outcome_unknown_and_is_delivered_once(
        redis_server: RedisServer) -> None:
    url = f"{redis_server.url}?prefix=t&timeout=0.5&ping_interval=0.3"
    hub = Hub(url)
    seen = local_deliveries(hub)
    other = RedisBackend(redis_server.url, prefix="t", timeout=0.5, ping_interval=0.3)
    await hub.start()
    try:
        async with running(other) as elsewhere:
            hub._subscribers["room"] = set()
            await hub.backend.listen("room")
            await other.listen("room")
            redis_server.pause()
            try:
                with pytest.raises(PublishOutcomeUnknown) as unknown:
                    await hub.publish("room", "sent, never answered")
                assert unknown.value.delivered_locally is False
                assert seen == []  # not delivered locally: Redis may still deliver it
                with pytest.raises(HubUnavailable) as unsent:
                    await hub.publish("room", "never sent")  # the reconnection hangs
                assert not isinstance(unsent.value, PublishOutcomeUnknown)
                assert unsent.value.delivered_locally is True
            finally:
                redis_server.resume()
            after = await hub.publish("room", "after")
            await elsewhere.wait_until(lambda: after in elsewhere.ids("room"), timeout=8)
            for _ in range(100):
                if after in [s[1] for s in seen]:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # time for any late copy to show up
        payloads = [json.loads(s[2]) for s in seen]
        # Each message once: the unknown one (if Redis ran it) under Redis's id, the
        # unsent one locally only, under a local id; no message twice, nowhere.
        assert payloads.count("never sent") == 1 and payloads.count("after") == 1
        there = [json.loads(p) for p in elsewhere.payloads("room")]
        assert payloads.count("sent, never answered") == \
            there.count("sent, never answered") <= 1
        assert "never sent" not in there
        assert len(set(s[1] for s in seen)) == len(seen)
        # The local one's id is of a range Redis never gives: no id means two messages.
        local = next(s[1] for s in seen if json.loads(s[2]) == "never sent")
        assert id_key(local)[1] >= 2**63
    finally:
        await hub.stop()


# ----------------------------------------------------------------- item 3: since= in an outage


def resume_app(url: str) -> App:
    app = App(hub=url)

    async def room(ws: WebSocket, room: str, since: str | None = None) -> None:
        async with app.hub.subscribe(ws, f"room:{room}", since=since):
            await ws.send_json({"ready": True})
            async for message in ws:
                await app.hub.publish(f"room:{room}", message)

    app.websocket("/rooms/{room}")(room)  # accepted before the handler runs
    app.websocket("/held/{room}", auto_accept=False)(room)  # subscribe() accepts
    return app


def test_18_3_a_since_subscribe_during_an_outage_is_refused_with_503_and_leaves_nothing(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    app = resume_app(f"{redis_server.url}?prefix=t&timeout=0.5")
    with TestClient(app) as client:
        with client.websocket_connect("/rooms/a") as ws:
            assert ws.receive_json() == {"ready": True}
            ws.send_text("kept")
            last = ws.receive_json()["id"]
        redis_server.kill()
        with caplog.at_level(logging.INFO):
            # Not accepted yet: subscribe() reads the history first, so a 503.
            with pytest.raises(WebSocketDenied) as denied:
                with client.websocket_connect(f"/held/a?since={last}"):
                    pass
            assert denied.value.status_code == 503
            # Accepted before: closed with 1013 (try again later) and the reason, no
            # traceback.
            with client.websocket_connect(f"/rooms/a?since={last}") as ws, \
                    pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.reason == "hub unavailable: try again later"
            assert closed.value.code == 1013
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        hub = app.hub
        assert "room:a" not in hub._subscribers and not hub._outboxes
        backend = hub.backend
        assert backend._feed.topics == []  # nothing for the reconnection to subscribe
        redis_server.start()
        with client.websocket_connect(f"/rooms/a?since={last}") as ws:
            assert ws.receive_json() == {"ready": True}  # Redis back (empty): works again


async def test_18_3_a_since_subscribe_during_an_outage_raises_subscribe_unavailable(
        redis_server: RedisServer) -> None:
    hub = Hub(f"{redis_server.url}?prefix=t&timeout=0.5")
    await hub.start()
    try:
        redis_server.kill()

        class Open:  # an accepted WebSocket, as the channel layer has
            state = type("S", (), {"name": "OPEN"})()
            scope: dict[str, Any] = {}

        with pytest.raises(SubscribeUnavailable) as refused:
            await hub.subscribe(Open(), "room", since="1-0")  # type: ignore[arg-type]
        assert isinstance(refused.value, HubUnavailable) and refused.value.status_code == 503
        assert hub._subscribers == {} and hub._outboxes == {}
        assert hub.backend._feed.topics == []
    finally:
        await hub.stop()


# ----------------------------------------------------------------- item 4: no holding back


async def test_18_4_after_redis_returns_the_subscription_reconnects_at_once_not_after_backoff(
        redis_server: RedisServer) -> None:
    # A backoff of 4 s: without the wake-up, the reconnection would wait that long.
    a = RedisBackend(redis_server.url, prefix="t", reconnect_backoff=(4.0, 4.0),
                     timeout=0.5)
    async with running(a) as hub:
        await a.listen("room")
        redis_server.kill()
        await hub.wait_until(lambda: hub.event("disconnected"), timeout=3)
        await asyncio.to_thread(redis_server.start)
        loop = asyncio.get_running_loop()
        started = loop.time()
        first = await a.publish("room", "after the restart")  # Redis answers a command
        # This process's own subscribers need not wait for the subscription.
        assert hub.ids("room") == [first]
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=1.5)
        assert loop.time() - started < 1.5  # not the 2-4 s of the backoff
        b = RedisBackend(redis_server.url, prefix="t")
        async with running(b):
            second = await b.publish("room", "from elsewhere")
        await hub.wait_until(lambda: second in hub.ids("room"))
        assert hub.ids("room") == [first, second]  # the first once: not refilled again


async def test_18_4_a_process_that_publishes_nothing_reconnects_once_redis_listens_again(
        redis_server: RedisServer) -> None:
    # Its backoff would be 4 s; the probe of the refused port finds Redis back sooner.
    quiet = RedisBackend(redis_server.url, prefix="t", reconnect_backoff=(4.0, 4.0))
    async with running(quiet) as hub:
        await quiet.listen("room")
        redis_server.kill()
        await hub.wait_until(lambda: hub.event("disconnected"), timeout=3)
        await asyncio.sleep(4.5)  # one full attempt refused: the probing starts
        await asyncio.to_thread(redis_server.start)
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=1.5)
        other = RedisBackend(redis_server.url, prefix="t")
        async with running(other):
            sent = await other.publish("room", "to the quiet one")
        await hub.wait_until(lambda: sent in hub.ids("room"))


async def test_18_4_what_a_process_publishes_while_its_subscription_is_down_reaches_it_once(
        redis_server: RedisServer) -> None:
    a = RedisBackend(redis_server.url, prefix="t", reconnect_backoff=(1.0, 1.0))
    async with running(a) as hub:
        await a.listen("room")
        # Its pub/sub connection alone dies; commands still work.
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            mine = [c["id"] for c in await client.client_list(_type="pubsub")]
            await client.client_kill_filter(_id=mine[0])
        finally:
            await client.aclose()
        await hub.wait_until(lambda: a.state is not State.CONNECTED, timeout=2)
        ids = [await a.publish("room", f"m{n}") for n in range(3)]
        assert hub.ids("room") == ids  # at once, while the subscription is down
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=3)
        late = await a.publish("room", "live")
        await hub.wait_until(lambda: late in hub.ids("room"))
        assert hub.ids("room") == [*ids, late]  # the refill skipped what it had


# ----------------------------------------------------------------- item 7: idle topics expire


async def test_18_7_an_idle_topics_history_and_epoch_expire_after_history_ttl(
        redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, history_ttl=0.4)
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with running(backend):
            epoch = await backend.epoch("room")
            kept = await backend.publish("room", "kept", history=5)
            for key in ("stream", "epoch"):
                assert 0 < await client.pttl(f"{prefix}:{key}:room") <= 400
            await asyncio.sleep(0.6)
            assert await client.exists(f"{prefix}:stream:room", f"{prefix}:epoch:room") == 0
            missed, gap = await backend.replay("room", kept)
            assert missed == [] and gap is not None and gap.reason == "lost"
            assert await backend.epoch("room") != epoch  # a new history, a new epoch
    finally:
        await client.aclose()


def test_18_7_history_ttl_is_a_url_option_and_zero_keeps_history_for_ever() -> None:
    backend = backend_for("redis://127.0.0.1:6379/0?history_ttl=3600&max_pending=500")
    assert isinstance(backend, RedisBackend)
    assert (backend.history_ttl, backend.pipeline.max_pending) == (3600.0, 500)
    assert RedisBackend(history_ttl=0).history_ttl == 0
    assert RedisBackend().history_ttl == 86_400.0


async def test_18_7_history_ttl_zero_keeps_an_idle_topics_history(
        redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, history_ttl=0)
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with running(backend):
            await backend.publish("room", "kept", history=5)
            assert await client.pttl(f"{prefix}:stream:room") == -1
    finally:
        await client.aclose()


# ----------------------------------------------------------------- item 8: big rooms


async def test_18_8_a_ten_thousand_member_room_is_counted_without_the_list(
        redis_url: str, prefix: str) -> None:
    a = RedisBackend(redis_url, prefix=prefix)
    b = RedisBackend(redis_url, prefix=prefix)
    async with running(a), running(b):
        await asyncio.gather(*(a.join("room", f"m{n}", {"n": n}) for n in range(10_000)))
        await asyncio.gather(*(b.join("room", f"b{n}", None) for n in range(5)))
        assert await a.count("room") == await b.count("room") == 10_005
        assert len(await b.members("room")) == 10_005
        await b.leave("room", "b0")
        assert await a.count("room") == 10_004
    # b stopped: its members are gone from the count too.
    c = RedisBackend(redis_url, prefix=prefix)
    async with running(c):
        assert await c.count("room") == 0  # a stopped as well


async def test_18_8_the_count_forgets_a_process_that_died(redis_url: str, prefix: str) -> None:
    dead = RedisBackend(redis_url, prefix=prefix, presence_ttl=0.3)
    alive = RedisBackend(redis_url, prefix=prefix)
    async with running(alive):
        await dead.start(Recorder().sink, Recorder().on_event)
        await dead.join("room", "ghost", None)
        await alive.join("room", "me", None)
        assert await alive.count("room") == 2
        for task in dead._tasks:  # it dies: no heartbeat, no clean-up
            task.cancel()
        await dead.pipeline.close()
        await dead._feed.stop()
        await asyncio.sleep(0.5)
        assert await alive.count("room") == 1
        assert list(await alive.members("room")) == ["me"]


async def test_18_8_ten_thousand_leaving_at_once_are_gone_from_redis_when_leave_returns(
        redis_url: str, prefix: str) -> None:
    a = RedisBackend(redis_url, prefix=prefix)
    watcher = RedisBackend(redis_url, prefix=prefix)
    async with running(a), running(watcher):
        members = [f"m{n}" for n in range(10_000)]
        await asyncio.gather(*(a.join("room", m, None) for m in members))
        await a.join("room", "stays", None)
        assert await watcher.count("room") == 10_001
        await asyncio.gather(*(a.leave("room", m) for m in members))
        # Written when leave() returned, not at the next heartbeat.
        assert await watcher.members("room") == {"stays": None}
        assert await watcher.count("room") == 1
        assert a._presence._leaving == set()


async def test_18_8_the_hub_counts_presence_on_both_backends(hub_url: str) -> None:
    hub = Hub(hub_url)
    await hub.start()
    try:
        for n in range(3):
            await hub.backend.join("room", f"m{n}", {"n": n})
        assert await hub.presence_count("room") == 3
        assert len(await hub.presence("room")) == 3
    finally:
        await hub.stop()


# ----------------------------------------------------------------- item 9: a hung Redis


async def test_18_9_a_hung_redis_is_reported_as_an_outage_without_any_traffic(
        redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix="t", timeout=0.5, ping_interval=0.5)
    async with running(backend) as hub:
        await backend.listen("room")
        redis_server.pause()
        try:
            # ping_interval of silence, then timeout for the PONG: about 1 s.
            await hub.wait_until(lambda: hub.event("disconnected"), timeout=4)
            with pytest.raises(HubUnavailable):
                await backend.publish("room", "while hung")
        finally:
            redis_server.resume()
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=5)


async def test_18_9_a_publish_that_finds_redis_hung_reports_the_outage_at_once(
        redis_server: RedisServer) -> None:
    # A PING would take 30 s to notice: the command connection's silence tells first.
    backend = RedisBackend(redis_server.url, prefix="t", timeout=0.5, ping_interval=30)
    async with running(backend) as hub:
        await backend.listen("room")
        redis_server.pause()
        try:
            with pytest.raises(PublishOutcomeUnknown):
                await backend.publish("room", "into the silence")
            await hub.wait_until(lambda: hub.event("disconnected"), timeout=1)
            assert backend.pipeline.stalls == 1
        finally:
            redis_server.resume()
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=5)
        after = await backend.publish("room", "after")
        await hub.wait_until(lambda: after in hub.ids("room"), timeout=3)
        # If Redis ran it when it resumed (it had the bytes), it came once, first.
        assert hub.payloads("room") in (["into the silence", "after"], ["after"])


# ----------------------------------------------------------------- connection options


def test_rediss_options_of_the_url_shape_the_tls_context() -> None:
    import ssl  # noqa: PLC0415

    from redis.asyncio.connection import parse_url  # noqa: PLC0415

    from legato.hub.pipeline import tls_context  # noqa: PLC0415

    strict = tls_context(dict(parse_url("rediss://redis.example:6380/0")))
    assert strict.verify_mode is ssl.CERT_REQUIRED and strict.check_hostname
    loose = tls_context(dict(parse_url("rediss://redis.example:6380/0?ssl_cert_reqs=none")))
    assert loose.verify_mode is ssl.CERT_NONE and not loose.check_hostname


async def test_a_password_and_a_database_in_the_url_are_used(redis_server: RedisServer) -> None:
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.config_set("requirepass", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/3"
        backend = RedisBackend(url, prefix="t")
        async with running(backend) as hub:
            await backend.listen("room")
            message_id = await backend.publish("room", "hi", history=1)
            await hub.wait_for_payloads("room", 1)
        check = aioredis.Redis.from_url(url)
        try:
            assert await check.exists("t:stream:room") == 1  # in database 3
        finally:
            await check.aclose()
        assert hub.ids("room") == [message_id]
        wrong = RedisBackend(f"redis://:nope@127.0.0.1:{redis_server.port}/3", prefix="t")
        async with running(wrong):
            with pytest.raises(HubUnavailable):
                await wrong.publish("room", "refused")
    finally:
        await admin.aclose()


def test_18_1_five_thousand_publishes_during_a_fan_out_all_succeed_and_all_arrive(
        redis_url: str, prefix: str) -> None:
    app = App(hub=f"{redis_url}/0?prefix={prefix}", hub_envelope=False)

    @app.websocket("/sub")
    async def sub(ws: WebSocket) -> None:
        await app.hub.subscribe(ws, "fan")
        await ws.send_text("ready")
        await ws.wait_closed()

    @app.post("/burst")
    async def burst() -> dict[str, int]:
        done = await asyncio.gather(*(app.hub.publish("fan", f"m{n}", strict=True)
                                      for n in range(5_000)), return_exceptions=True)
        return {"ok": sum(1 for d in done if isinstance(d, str))}

    with TestClient(app) as client:
        subscribers = [client.websocket_connect("/sub").__enter__() for _ in range(10)]
        try:
            for ws in subscribers:
                assert ws.receive_text() == "ready"
            assert client.post("/burst").json() == {"ok": 5_000}
            for ws in subscribers:  # every one of them, in order, through Redis
                assert [ws.receive_text() for _ in range(5_000)] == \
                    [f"m{n}" for n in range(5_000)]
        finally:
            for ws in subscribers:
                ws.__exit__(None, None, None)
