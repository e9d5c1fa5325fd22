"""The Redis backend across processes: two backends in one test stand for two worker
processes (each with its own sink), and one test runs a peer in a real OS process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from recording import running
from ports import free_port

from legato.hub.backend import HubUnavailable
from legato.hub.redis import RedisBackend, State

PEER = Path(__file__).with_name("peer_process.py")


async def test_a_message_published_in_one_process_reaches_every_listening_process(
        redis_url: str, prefix: str) -> None:
    a, b, c = (RedisBackend(redis_url, prefix=prefix) for _ in range(3))
    async with running(a) as hub_a, running(b) as hub_b, running(c) as hub_c:
        await a.listen("room")
        await b.listen("room")
        first = await a.publish("room", "from a")
        second = await b.publish("room", b"from b")
        for hub in (hub_a, hub_b):
            await hub.wait_for_payloads("room", 2)
        await asyncio.sleep(0.05)  # time for a duplicate or a stray delivery to show
        expected = [("room", first, "from a"), ("room", second, b"from b")]
        assert hub_a.messages == expected
        assert hub_b.messages == expected
        assert hub_c.messages == []  # c never listened


async def test_what_is_published_once_listen_returned_is_delivered(
        redis_url: str, prefix: str) -> None:
    a, b = RedisBackend(redis_url, prefix=prefix), RedisBackend(redis_url, prefix=prefix)
    async with running(a), running(b) as hub_b:
        topics = [f"room-{n}" for n in range(20)]
        for topic in topics:
            await b.listen(topic)
            await a.publish(topic, topic)
        await hub_b.wait_until(lambda: len(hub_b.messages) == len(topics))
        assert [payload for _, _, payload in hub_b.messages] == topics


async def test_a_process_stops_receiving_a_topic_it_unlistened(
        redis_url: str, prefix: str) -> None:
    a, b = RedisBackend(redis_url, prefix=prefix), RedisBackend(redis_url, prefix=prefix)
    async with running(a) as hub_a, running(b) as hub_b:
        await a.listen("room")
        await b.listen("room")
        await a.unlisten("room")
        await a.publish("room", "only b")
        await hub_b.wait_for_payloads("room", 1)
        await asyncio.sleep(0.05)
        assert hub_a.messages == []


@pytest.mark.parametrize("garbage", [b"1-1 x", b"1-1 T9:ab", b"1-1 T-1:ab", b"1-1 Tx:ab",
                                     b"no id", b"1-1 t\xff"])
async def test_a_malformed_message_on_the_channel_is_ignored_and_later_ones_arrive(
        redis_url: str, prefix: str, garbage: bytes,
        caplog: pytest.LogCaptureFixture) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    async with running(backend) as hub:
        await backend.listen("room")
        raw = aioredis.from_url(redis_url)
        try:
            await raw.publish(backend._channel("room"), garbage)
        finally:
            await raw.aclose()
        good = await backend.publish("room", "fine", key="k")
        await hub.wait_for_payloads("room", 1)
        assert hub.messages == [("room", good, "fine")]
        assert hub.keys == ["k"]
    assert "ignored a malformed message" in caplog.text


async def test_messages_of_one_publisher_arrive_in_publish_order(
        redis_url: str, prefix: str) -> None:
    a, b = RedisBackend(redis_url, prefix=prefix), RedisBackend(redis_url, prefix=prefix)
    async with running(a), running(b) as hub_b:
        await b.listen("room")
        ids = await asyncio.gather(*(a.publish("room", f"m{n}") for n in range(200)))
        await hub_b.wait_for_payloads("room", 200)
        assert hub_b.ids("room") == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_presence_spans_processes_and_stop_removes_this_processes_members(
        redis_url: str, prefix: str) -> None:
    a = RedisBackend(redis_url, prefix=prefix, presence_ttl=1.0)
    b = RedisBackend(redis_url, prefix=prefix, presence_ttl=1.0)
    async with running(a):
        async with running(b):
            await a.join("room", "alice", {"via": "a"})
            await b.join("room", "bob", {"via": "b"})
            expected = {"alice": {"via": "a"}, "bob": {"via": "b"}}
            assert await a.members("room") == expected
            assert await b.members("room") == expected
            await asyncio.sleep(1.3)  # past the TTL: the heartbeats keep both alive
            assert await a.members("room") == expected
        assert await a.members("room") == {"alice": {"via": "a"}}


async def test_stop_leaves_only_the_streams_behind(redis_url: str, prefix: str) -> None:
    backend = RedisBackend(redis_url, prefix=prefix, presence_ttl=0.5)
    async with running(backend):
        await backend.listen("room")
        await backend.join("room", "alice", None)
        await backend.publish("room", "kept", history=5)
        await backend.publish("chat", "not kept")
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = sorted([k async for k in client.scan_iter(match=f"{prefix}:*")])
        assert keys == [f"{prefix}:stream:chat".encode(), f"{prefix}:stream:room".encode()]
        # A topic without history keeps its stream only for gap refills, then it expires.
        assert 0 < await client.pttl(f"{prefix}:stream:chat") <= 60_000
        # A topic with history keeps it until it is idle for history_ttl (a day).
        assert 86_000_000 < await client.pttl(f"{prefix}:stream:room") <= 86_400_000
    finally:
        await client.aclose()


async def test_publish_to_an_unreachable_redis_raises_hub_unavailable_within_two_seconds(
        ) -> None:
    backend = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    async with running(backend) as hub:
        # start() does not raise: it reports and keeps trying in the background.
        assert backend.state in (State.DISCONNECTED, State.CONNECTING)
        assert hub.event("disconnected") is not None
        for call in (lambda: backend.publish("room", "lost?"),
                     lambda: backend.history("room"),
                     lambda: backend.members("room")):
            started = time.monotonic()
            with pytest.raises(HubUnavailable):
                await call()
            assert time.monotonic() - started < 2.0
        await backend.join("room", "alice", None)  # kept, written once Redis is back
        await backend.listen("room")  # subscribed once Redis is back


async def test_backends_in_two_os_processes_exchange_messages_and_a_killed_ones_members_expire(
        redis_url: str, prefix: str) -> None:
    peer = subprocess.Popen([sys.executable, str(PEER), redis_url, prefix],
                            stdout=subprocess.PIPE)
    try:
        assert peer.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(peer.stdout.readline), 10)
        assert line == b"ready\n"
        backend = RedisBackend(redis_url, prefix=prefix, presence_ttl=0.5)
        async with running(backend) as hub:
            await backend.listen("pong")
            await backend.publish("ping", "text ☃")
            await backend.publish("ping", b"\x00bytes")
            await hub.wait_for_payloads("pong", 2, timeout=5)
            assert hub.payloads("pong") == ["text ☃", b"\x00bytes"]
            assert await backend.members("room") == {"peer": {"pid": peer.pid}}

            peer.kill()  # no stop(): its entries can only expire
            peer.wait(timeout=5)
            killed = time.monotonic()
            while await backend.members("room"):
                assert time.monotonic() - killed < 2.0, "dead process still present"
                await asyncio.sleep(0.05)
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(timeout=5)
