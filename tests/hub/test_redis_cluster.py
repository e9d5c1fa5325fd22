"""The hub over Redis Cluster (issue 16) on a real local cluster: a topic lives on its
slot's master (keys, channel, one round trip per publish), a process holds one pub/sub
connection per shard, and a slot migration or the failover of a master is a pause for
subscribers and publishers, never a lost acknowledged message."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from recording import running
from redis_cluster import RedisCluster
from test_hub_processes import Client, legato_processes, publish

from legato.hub import backend_for
from legato.hub.backend import HubUnavailable, PublishOutcomeUnknown
from legato.hub.redis_cluster import RedisClusterBackend, parse_cluster_url
from legato.hub.redis_feed import State
from legato.hub.slots import key_slot

PEER = Path(__file__).with_name("peer_process.py")


def new_prefix() -> str:
    return f"legato-test-{uuid.uuid4().hex[:12]}"


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def topics_on_every_master(backend: RedisClusterBackend, cluster: RedisCluster,
                           count: int) -> list[str]:
    """``count`` topic names, at least one on each master."""
    topics = [f"room:{n}" for n in range(count)]
    owners = {cluster.owner(backend._topic_slot(t)) for t in topics}
    assert owners == set(cluster.master_ports())
    return topics


# ------------------------------------------------------------------------- URLs


def test_a_cluster_url_names_its_seeds_and_options() -> None:
    seeds = parse_cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2:7001?x=1")
    assert [(s["host"], s["port"]) for s in seeds] == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert seeds[0]["username"] == "u" and seeds[1]["password"] == "p@ss"
    assert parse_cluster_url("rediss+cluster://h:7000")[0]["connection_class"].__name__ == \
        "SSLConnection"
    for bad in ("redis://h:7000", "redis+cluster://", "redis+cluster://h",
                "redis+cluster://h:port"):
        with pytest.raises(ValueError, match="cluster"):
            parse_cluster_url(bad)
    backend = backend_for("redis+cluster://127.0.0.1:7000?prefix=chat&wait_replicas=0"
                          "&failover_timeout=3&replica_timeout=0.05")
    assert isinstance(backend, RedisClusterBackend)
    assert (backend.prefix, backend.wait_replicas, backend.failover_timeout,
            backend.replica_timeout) == ("chat", 0, 3.0, 0.05)
    with pytest.raises(ValueError, match="unknown hub option 'shards'"):
        backend_for("redis+cluster://127.0.0.1:7000?shards=3")
    with pytest.raises(ValueError, match="wait_replicas='many'.* is not a number"):
        backend_for("redis+cluster://127.0.0.1:7000?wait_replicas=many")
    with pytest.raises(ValueError, match="replica_timeout must be shorter than timeout"):
        RedisClusterBackend("redis+cluster://127.0.0.1:7000", replica_timeout=2.0)


# ------------------------------------------------------------------------- one shard per topic


async def test_a_publish_is_one_round_trip_to_its_topics_master_where_its_keys_live(
        redis_cluster: RedisCluster) -> None:
    backend = RedisClusterBackend(redis_cluster.url, prefix=new_prefix())
    async with running(backend) as hub:
        await backend.listen("room")
        await backend.epoch("room")
        master = backend.router.master(backend._topic_slot("room"))
        assert master is not None
        pipes = {s.address: backend.router.pipeline(s.address) for s in backend.router.shards}
        before = {a: (p.written if p else 0) for a, p in pipes.items()}
        message_id = await backend.publish("room", "hello", history=3)
        after = {a: (p.written if p else 0) for a, p in pipes.items()}
        assert {a: after[a] - before[a] for a in after} == {
            a: (1 if a == master else 0) for a in after}  # no replicas here: no WAIT
        await hub.wait_for_payloads("room", 1)
        assert hub.ids("room") == [message_id]
        node = redis_cluster.client(port_of(master))
        for key in (backend._stream("room"), backend._epoch_key("room")):
            assert key_slot(key) == backend._topic_slot("room")
            assert node.exists(key) == 1
        assert await backend.history("room") == [(message_id, "hello", None)]
        assert backend.router.moved == backend.router.asked == 0


async def test_a_process_holds_one_pubsub_connection_per_shard_whatever_its_topics(
        redis_cluster: RedisCluster) -> None:
    backend = RedisClusterBackend(redis_cluster.url, prefix=new_prefix())
    async with running(backend) as hub:
        topics = topics_on_every_master(backend, redis_cluster, 40)
        await asyncio.gather(*(backend.listen(t) for t in topics))
        name = backend._client_name + ":sub"
        for port in redis_cluster.master_ports():
            listing = redis_cluster.client(port).execute_command("CLIENT", "LIST",
                                                                 "TYPE", "pubsub")
            mine = [line for line in listing.decode().splitlines() if f"name={name} " in line]
            assert len(mine) == 1, (port, mine)
            here = sum(1 for t in topics if redis_cluster.owner(backend._topic_slot(t)) == port)
            assert f" ssub={here} " in mine[0]
        ids = await asyncio.gather(*(backend.publish(t, t) for t in topics))
        await hub.wait_until(lambda: len(hub.messages) == len(topics))
        assert sorted(hub.messages) == sorted(zip(topics, ids, topics, strict=True))
        assert backend.state is State.CONNECTED
        stats = backend.shard_stats()
        assert sorted(port_of(s["shard"]) for s in stats) == redis_cluster.master_ports()
        assert all(s["up"] and s["topics"] > 0 and 0 <= s["lag"] < 1 for s in stats)
        assert sum(s["topics"] for s in stats) == len(topics)


async def test_presence_spans_processes_and_a_killed_ones_members_expire(
        redis_cluster: RedisCluster) -> None:
    prefix = new_prefix()
    peer = subprocess.Popen([sys.executable, str(PEER), redis_cluster.url, prefix],
                            stdout=subprocess.PIPE)
    try:
        assert peer.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(peer.stdout.readline), 10)
        assert line == b"ready\n"
        backend = RedisClusterBackend(redis_cluster.url, prefix=prefix, presence_ttl=0.5)
        async with running(backend) as hub:
            await backend.listen("pong")
            await backend.join("room", "me", {"n": 1})
            await backend.publish("ping", "text ☃")
            await hub.wait_for_payloads("pong", 1, timeout=5)
            assert await backend.members("room") == {"peer": {"pid": peer.pid}, "me": {"n": 1}}
            assert await backend.count("room") == 2
            await asyncio.sleep(0.8)  # past the TTL: the heartbeats keep both alive
            assert await backend.count("room") == 2
            peer.kill()  # no stop(): its entries can only expire
            peer.wait(timeout=5)
            killed = time.monotonic()
            while await backend.count("room") != 1:
                assert time.monotonic() - killed < 2.0, "dead process still counted"
                await asyncio.sleep(0.05)
            assert await backend.members("room") == {"me": {"n": 1}}
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(timeout=5)


# ------------------------------------------------------------------------- slots move


async def test_a_slot_migrated_while_publishing_moves_its_topic_without_a_loss(
        redis_cluster: RedisCluster) -> None:
    prefix = new_prefix()
    subscriber = RedisClusterBackend(redis_cluster.url, prefix=prefix)
    publisher = RedisClusterBackend(redis_cluster.url, prefix=prefix)
    async with running(subscriber) as hub, running(publisher):
        await subscriber.listen("room")
        slot = subscriber._topic_slot("room")
        source = redis_cluster.owner(slot)
        target = next(p for p in redis_cluster.master_ports() if p != source)
        acked: list[str] = []

        async def publish(count: int) -> None:
            for n in range(count):
                acked.append(await publisher.publish("room", str(n), history=1000))
                await asyncio.sleep(0.001)

        publishing = asyncio.create_task(publish(400))
        await hub.wait_until(lambda: len(acked) >= 100)
        await asyncio.to_thread(redis_cluster.migrate, slot, target)
        migrated = len(acked)
        await publishing
        assert migrated < 400  # the migration happened while publishing went on
        await hub.wait_until(lambda: len(hub.ids("room")) >= 400, timeout=10)
        assert hub.ids("room") == acked  # every one, once, in order
        assert hub.payloads("room") == [str(n) for n in range(400)]
        feed = subscriber.feed_of("room")
        assert feed is not None and feed.label == f"127.0.0.1:{target}"
        assert subscriber.rehomed == 1
        assert publisher.router.moved + publisher.router.asked + \
            publisher.router.retries >= 1  # it met the move
        assert [m[0] for m in await publisher.history("room")][-1] == acked[-1]


async def test_a_topic_released_by_a_node_the_map_still_names_is_subscribed_there_again(
        redis_cluster: RedisCluster) -> None:
    """A node's word that a channel is no longer its own, while the slot map says it is
    (a slot that moved and came back): after failover_timeout the topic is subscribed on
    the same node again, refilled from its last id, instead of waiting for ever."""
    backend = RedisClusterBackend(redis_cluster.url, prefix=new_prefix(),
                                  failover_timeout=0.5)
    async with running(backend) as hub:
        await backend.listen("room")
        feed = backend.feed_of("room")
        assert feed is not None
        first = await backend.publish("room", "before")
        await hub.wait_for_payloads("room", 1)
        backend.released(feed, [backend.channel("room")])  # what a sunsubscribe does
        assert "room" in backend._released
        during = await backend.publish("room", "while released")
        await hub.wait_until(lambda: "room" not in backend._released, timeout=5)
        assert backend.feed_of("room") is feed and backend.rehomed == 0
        later = await backend.publish("room", "after")
        await hub.wait_until(lambda: later in hub.ids("room"), timeout=5)
        assert hub.ids("room") == [first, during, later]  # each once, in order


# ------------------------------------------------------------------------- failover


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three masters with a replica each: a killed master's replica takes over."""
    cluster = RedisCluster(tmp_path_factory.mktemp("replicated"), masters=3, replicas=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_a_killed_master_fails_over_and_no_acknowledged_message_is_lost(
        replicated: RedisCluster) -> None:
    """kill -9 of the master of the topic's slot while a publisher publishes: its
    replica takes over; the publisher pauses (no error), the subscriber's topic moves to
    the new master and is refilled from the stream, so every acknowledged message
    arrives once and in order. What clients see is recorded and bounded."""
    prefix = new_prefix()
    subscriber = RedisClusterBackend(replicated.url, prefix=prefix)
    publisher = RedisClusterBackend(replicated.url, prefix=prefix)
    async with running(subscriber) as hub, running(publisher):
        await subscriber.listen("room")
        slot = subscriber._topic_slot("room")
        victim = replicated.owner(slot)
        acked: list[tuple[float, str, str]] = []  # (when, id, payload)
        unknown: list[str] = []  # payloads whose publish outcome is unknown
        failed: list[str] = []
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def publish() -> None:
            n = 0
            while not stop.is_set():
                payload = str(n)
                try:
                    acked.append((loop.time(), await publisher.publish("room", payload,
                                                                       history=10_000),
                                  payload))
                except PublishOutcomeUnknown:
                    unknown.append(payload)
                except HubUnavailable:
                    failed.append(payload)
                n += 1
                await asyncio.sleep(0.002)

        publishing = asyncio.create_task(publish())
        await hub.wait_until(lambda: len(acked) >= 100)
        killed_at = loop.time()
        await asyncio.to_thread(replicated.kill, victim)
        await hub.wait_until(lambda: bool(hub.event("reconnected")), timeout=15)
        await hub.wait_until(lambda: len(acked) > 0 and acked[-1][0] > loop.time() - 0.1
                             and len([a for a in acked if a[0] > killed_at]) >= 100,
                             timeout=15)
        stop.set()
        await publishing
        await hub.wait_until(lambda: acked[-1][1] in hub.ids("room"), timeout=10)

        delivered = hub.ids("room")
        acked_ids = [message_id for _, message_id, _ in acked]
        assert len(delivered) == len(set(delivered))  # none twice
        assert [i for i in delivered if i in set(acked_ids)] == acked_ids  # all, in order
        extra = [p for i, p in zip(delivered, hub.payloads("room"), strict=True)
                 if i not in set(acked_ids)]
        assert set(extra) <= set(unknown)  # only a publish whose outcome was unknown
        assert failed == []  # the failover fit in failover_timeout: a pause, no error
        # What the clients saw, reported: the publisher's longest pause, the events.
        times = [when for when, _, _ in acked]
        pause = max(b - a for a, b in zip(times, times[1:], strict=False))
        lost = hub.event("disconnected")
        back = hub.event("reconnected")
        assert lost is not None and lost["shard"] == f"127.0.0.1:{victim}"
        assert back is not None and back["shard"] == f"127.0.0.1:{victim}"
        new_master = subscriber.router.master(slot)
        assert back["moved_to"] == [new_master] and new_master != f"127.0.0.1:{victim}"
        assert pause < subscriber.failover_timeout
        feed = subscriber.feed_of("room")
        assert feed is not None and feed.label == new_master and feed.state is State.CONNECTED
        print(f"\nfailover: publisher paused {pause:.2f}s; subscriber down "
              f"{back['downtime']:.2f}s, {back['refilled']} refilled; "
              f"{len(unknown)} outcome unknown, {subscriber.unreplicated + publisher.unreplicated}"
              f" unreplicated; {len(acked)} acked, all delivered once in order")


def topic_with_a_replica(backend: RedisClusterBackend, cluster: RedisCluster) -> str:
    masters = set(cluster.replicated_masters())
    return next(t for t in (f"room:{n}" for n in range(100))
                if cluster.owner(backend._topic_slot(t)) in masters)


async def test_through_legato_run_a_failover_is_a_pause_for_websocket_clients(
        replicated: RedisCluster, tmp_path: Path) -> None:
    """The App on the cluster, two ``legato run`` processes, a WebSocket subscriber on
    each, a publisher posting to one: kill -9 of the topic's master. The clients' view:
    their connections stay open, messages pause, then every acknowledged one arrives,
    once, in order."""
    prefix = new_prefix()
    topic = topic_with_a_replica(RedisClusterBackend(replicated.url, prefix=prefix),
                                 replicated)
    probe = RedisClusterBackend(replicated.url, prefix=prefix)
    victim = replicated.owner(probe._topic_slot(topic))
    with legato_processes(f"{replicated.url}?prefix={prefix}&presence_ttl=1", 2,
                          tmp_path) as (first, second):
        clients = [await Client.join(first, topic, "a"), await Client.join(second, topic, "b")]
        acked: list[tuple[float, str, str]] = []
        refused: list[tuple[str, str]] = []  # (text, the app's 503 body)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        async def post(http: httpx.AsyncClient) -> None:
            n = 0
            while not stop.is_set():
                response = await publish(http, first, topic, str(n))
                if response.status_code == 200:
                    acked.append((loop.time(), response.json()["id"], str(n)))
                else:
                    refused.append((str(n), response.text))
                n += 1
                await asyncio.sleep(0.005)

        async with httpx.AsyncClient(timeout=20) as http:
            posting = asyncio.create_task(post(http))
            await clients[0].wait_until(lambda: len(acked) >= 50)
            killed_at = loop.time()
            await asyncio.to_thread(replicated.kill, victim)
            await clients[0].wait_until(
                lambda: len([a for a in acked if a[0] > killed_at]) >= 50)
            stop.set()
            await posting
        acked_ids = [message_id for _, message_id, _ in acked]
        for client in clients:
            await client.wait_until(lambda c=client: acked_ids[-1] in c.ids)
            assert len(client.ids) == len(set(client.ids))  # none twice
            assert [i for i in client.ids if i in set(acked_ids)] == acked_ids
            extra = [t for i, t in zip(client.ids, client.texts, strict=True)
                     if i not in set(acked_ids)]
            assert set(extra) <= {text for text, _ in refused}
            assert not client.reader.done()  # the connection never closed
        assert len(refused) <= 1, refused  # at most the publish in flight at the kill
        times = [when for when, _, _ in acked]
        pause = max(b - a for a, b in zip(times, times[1:], strict=False))
        print(f"\nthrough legato run: publisher paused {pause:.2f}s at the failover; "
              f"{len(acked)} acked, each delivered once, in order, to both clients; "
              f"refused {refused}")
        for client in clients:
            await client.close()
