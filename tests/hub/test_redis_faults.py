"""The Redis backend when Redis fails: each test runs a redis-server of its own, which it
kills, pauses or restarts (never the shared one)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from recording import running
from redis_servers import RedisServer

from legato.hub.backend import HubUnavailable
from legato.hub.redis import RedisBackend


async def kill_pubsub_connection(url: str, backend: RedisBackend) -> None:
    """CLIENT KILL the backend's pub/sub connection: its messages stop, Redis stays up."""
    client = aioredis.Redis.from_url(url)
    try:
        clients = await client.client_list(_type="pubsub")
        mine = [c["id"] for c in clients if backend.process_id[:12] in c["name"]]
        assert len(mine) == 1, clients
        await client.client_kill_filter(_id=mine[0])
    finally:
        await client.aclose()


async def test_a_process_that_lost_pubsub_refills_what_it_missed_in_order_exactly_once(
        redis_server: RedisServer) -> None:
    # A waits 1-2 s before reconnecting: time enough for b to publish into the gap.
    a = RedisBackend(redis_server.url, prefix="t", reconnect_backoff=(2.0, 2.0))
    b = RedisBackend(redis_server.url, prefix="t")
    async with running(a) as hub_a, running(b):
        await a.listen("room")
        await a.listen("quiet")
        before = await b.publish("room", "before")
        await hub_a.wait_for_payloads("room", 1)

        await kill_pubsub_connection(redis_server.url, a)
        missed = [await b.publish("room", p) for p in ("m1", b"m2", "m3")]
        await hub_a.wait_until(lambda: hub_a.event("reconnected"), timeout=5)

        assert hub_a.messages == [("room", i, p) for i, p in
                                  zip([before, *missed], ["before", "m1", b"m2", "m3"],
                                      strict=True)]
        assert hub_a.event("disconnected") is not None
        reconnected = hub_a.event("reconnected")
        assert reconnected is not None and reconnected["refilled"] == 3
        assert 0.9 < reconnected["downtime"] < 4
        assert (a.reconnects, a.messages_refilled) == (1, 3)
        assert hub_a.event("gap") is None  # the stream still held the last id delivered

        # A live copy of a refilled message (it was in flight) is not delivered twice.
        a._feed._deliver(a.channel("room"), f"{missed[-1]} tm3".encode())
        live = await b.publish("room", "live")
        await hub_a.wait_for_payloads("room", 5)
        assert hub_a.ids("room") == [before, *missed, live]


async def test_a_gap_longer_than_the_stream_keeps_is_reported(
        redis_server: RedisServer) -> None:
    a = RedisBackend(redis_server.url, prefix="t", reconnect_backoff=(2.0, 2.0))
    b = RedisBackend(redis_server.url, prefix="t", gap_window=2)  # the publisher trims
    async with running(a) as hub_a, running(b):
        await a.listen("room")
        before = await b.publish("room", "before", history=0)
        await hub_a.wait_for_payloads("room", 1)
        await kill_pubsub_connection(redis_server.url, a)
        for n in range(150):  # the stream keeps ~2 (it trims whole nodes of 100 entries)
            await b.publish("room", f"m{n}")
        await hub_a.wait_until(lambda: hub_a.event("reconnected"), timeout=5)
        assert hub_a.event("gap") == {"topic": "room", "after": before, "reason": "trimmed"}
        refilled = hub_a.payloads("room")[1:]
        assert 2 <= len(refilled) < 150
        assert refilled == [f"m{n}" for n in range(150 - len(refilled), 150)]


async def test_publish_fails_fast_while_redis_is_down_and_all_resumes_after_a_restart(
        redis_server: RedisServer) -> None:
    options = dict(prefix="t", presence_ttl=0.5, reconnect_backoff=(0.1, 0.3))
    a, b = RedisBackend(redis_server.url, **options), RedisBackend(redis_server.url, **options)
    async with running(a) as hub_a, running(b) as hub_b:
        await a.listen("room")
        await b.listen("room")
        await a.join("room", "alice", {"on": "a"})
        await b.publish("room", "before")
        await hub_a.wait_for_payloads("room", 1)

        redis_server.kill()
        started = time.monotonic()
        with pytest.raises(HubUnavailable):
            await a.publish("room", "lost")
        assert time.monotonic() - started < 2.0
        await hub_a.wait_until(lambda: hub_a.event("disconnected"), timeout=3)
        await a.join("room", "carol", None)  # while down: written once Redis is back
        await b.listen("later")  # while down: subscribed once Redis is back
        await asyncio.sleep(0.5)  # a few reconnection attempts fail meanwhile

        await asyncio.to_thread(redis_server.start)  # same port, empty: no persistence
        for hub in (hub_a, hub_b):
            await hub.wait_until(lambda hub=hub: hub.event("reconnected"), timeout=5)
        assert a.reconnects == b.reconnects == 1
        after = await b.publish("room", "after")  # both resubscribed: delivered live
        for hub in (hub_a, hub_b):
            await hub.wait_until(lambda hub=hub: after in hub.ids("room"))
        assert hub_a.payloads("room") == ["before", "after"]
        await a.publish("later", "listened while down")
        await hub_b.wait_for_payloads("later", 1)

        # The heartbeat rewrote a's presence into the empty Redis.
        deadline = time.monotonic() + 2
        while await b.members("room") != {"alice": {"on": "a"}, "carol": None}:
            assert time.monotonic() < deadline, await b.members("room")
            await asyncio.sleep(0.05)


async def test_a_silent_pubsub_connection_is_declared_dead_after_an_unanswered_ping(
        redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix="t", ping_interval=0.2,
                           reconnect_backoff=(0.1, 0.3))
    async with running(backend) as hub:
        await backend.listen("room")
        redis_server.pause()  # the TCP connection stays open, nothing answers
        try:
            await hub.wait_until(lambda: hub.event("disconnected"), timeout=3)
        finally:
            redis_server.resume()
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=5)
        other = RedisBackend(redis_server.url, prefix="t")
        async with running(other):
            await other.publish("room", "after the pause")
        await hub.wait_for_payloads("room", 1)
