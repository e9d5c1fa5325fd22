"""The cluster router (issue 16): it reads a real cluster's slot map, sends each command
to its slot's master, follows MOVED and ASK while a slot migrates, and fails with a
clear HubUnavailable when no master answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from ports import free_port
from redis_cluster import RedisCluster

from legato.hub.backend import HubUnavailable
from legato.hub.cluster_router import (ClusterRouter, Redirect, State, parse_redirect,
                                       parse_slots, slot_owners)
from legato.hub.resp import ReplyError
from legato.hub.slots import SLOTS, key_slot


def seeds(cluster: RedisCluster) -> list[dict[str, object]]:
    return [{"host": "127.0.0.1", "port": port} for port in cluster.ports[:2]]


def router_for(cluster: RedisCluster, **options: object) -> ClusterRouter:
    return ClusterRouter(seeds(cluster), client_name="legato-test:router", **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- pure parts


def test_parse_slots_groups_ranges_by_master_and_fills_empty_hosts() -> None:
    reply = [
        [0, 99, [b"", 7000, b"id-a"], [b"10.0.0.2", 7003, b"id-d"]],
        [100, 199, [b"10.0.0.1", 7001, b"id-b"]],
        [200, 16383, [b"", 7000, b"id-a"]],
        [5, 1, [b"", 7009, b"bad-range"]],  # start > end: skipped
        [300, 400, [b"?", 7010, b"unknown-endpoint"]],  # no endpoint: skipped
        "garbage",
    ]
    shards = parse_slots(reply, "10.0.0.1")
    assert [(s.address, s.slots, s.replicas) for s in shards] == [
        ("10.0.0.1:7000", ((0, 99), (200, 16383)), ("10.0.0.2:7003",)),
        ("10.0.0.1:7001", ((100, 199),), ()),
    ]
    owners = slot_owners(shards)
    assert owners[0] == owners[16383] == "10.0.0.1:7000" and owners[150] == "10.0.0.1:7001"
    assert parse_slots(ReplyError("ERR This instance has cluster support disabled"), "h") == []


@pytest.mark.parametrize(("reply", "expected"), [
    (ReplyError("MOVED 3999 127.0.0.1:6381"), Redirect("MOVED", 3999, "127.0.0.1:6381")),
    (ReplyError("ASK 12 :7002"), Redirect("ASK", 12, "node:7002")),
    (ReplyError("ASK 12 ::1:7002"), Redirect("ASK", 12, "::1:7002")),
    (ReplyError("TRYAGAIN Multiple keys request during rehashing of slot"), Redirect("RETRY")),
    (ReplyError("CLUSTERDOWN The cluster is down"), Redirect("RETRY")),
    (ReplyError("LOADING Redis is loading the dataset in memory"), Redirect("RETRY")),
    (ReplyError("ERR unknown command"), None),
    (ReplyError("MOVED nonsense"), None),
    (b"MOVED 1 h:1", None),  # a value, not an error
])
def test_parse_redirect_reads_what_an_error_reply_asks(reply: object,
                                                       expected: Redirect | None) -> None:
    assert parse_redirect(reply, "node") == expected  # type: ignore[arg-type]


def test_a_router_needs_a_seed() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        ClusterRouter([], client_name="x")


# ------------------------------------------------------------------------- a real cluster


async def test_the_router_maps_every_slot_and_sends_commands_to_their_master(
        redis_cluster: RedisCluster) -> None:
    router = router_for(redis_cluster)
    await router.start()
    try:
        assert router.state is State.READY
        assert sorted(int(s.address.rsplit(":", 1)[1]) for s in router.shards) == \
            redis_cluster.master_ports()
        assert all(router.master(slot) is not None for slot in range(SLOTS))
        tag = uuid.uuid4().hex
        keys = [f"{tag}:{n}" for n in range(60)]
        replies = await asyncio.gather(*(router.call(key_slot(k), "SET", k, k) for k in keys))
        assert all(r == b"OK" for r in replies)
        values = await asyncio.gather(*(router.call(key_slot(k), "GET", k) for k in keys))
        assert values == [k.encode() for k in keys]
        assert router.moved == router.asked == 0  # the map was right: no redirect
        # Each key is on its slot's master, as the cluster itself says.
        for key in keys[:10]:
            port = redis_cluster.owner(key_slot(key))
            assert redis_cluster.client(port).get(key) == key.encode()
    finally:
        await router.close()
    assert router.state is State.CLOSED
    with pytest.raises(HubUnavailable, match="closed"):
        await router.call(0, "PING")


async def test_a_moved_slot_is_followed_and_the_map_takes_its_new_master(
        redis_cluster: RedisCluster) -> None:
    router = router_for(redis_cluster, refresh_interval=60)  # only redirects update it
    await router.start()
    try:
        key = f"{uuid.uuid4().hex}:moved"
        slot = key_slot(key)
        await router.call(slot, "SET", key, "before")
        source = redis_cluster.owner(slot)
        target = next(p for p in redis_cluster.master_ports() if p != source)
        await asyncio.to_thread(redis_cluster.migrate, slot, target)
        assert await router.call(slot, "GET", key) == b"before"  # MOVED, then the target
        assert router.moved == 1
        assert router.master(slot) == f"127.0.0.1:{target}"
        assert await router.call(slot, "SET", key, "after") == b"OK"
        assert router.moved == 1  # no second redirect
        await asyncio.to_thread(redis_cluster.migrate, slot, source)  # leave it whole
        assert await router.call(slot, "GET", key) == b"after"
    finally:
        await router.close()


async def test_a_migrating_slot_is_served_through_ask_until_it_moves(
        redis_cluster: RedisCluster) -> None:
    router = router_for(redis_cluster, refresh_interval=60)
    await router.start()
    tag = uuid.uuid4().hex
    moved_key, stay_key = f"{{{tag}}}:moved", f"{{{tag}}}:stays"
    slot = key_slot(moved_key)
    source = redis_cluster.owner(slot)
    target = next(p for p in redis_cluster.master_ports() if p != source)
    try:
        await router.call_many(slot, [("SET", moved_key, "m"), ("SET", stay_key, "s")])
        await asyncio.to_thread(redis_cluster.begin_migration, slot, target)
        redis_cluster.client(source).execute_command(
            "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", moved_key)
        # One batch: the key still on the source answers there; the moved one gets ASK
        # and is asked of the importing node; a new key of the slot too (ASK).
        replies = await router.call_many(slot, [("GET", stay_key), ("GET", moved_key),
                                                ("SET", f"{{{tag}}}:new", "n")])
        assert replies == [b"s", b"m", b"OK"]
        assert router.asked == 1 and router.moved == 0
        assert router.master(slot) == f"127.0.0.1:{source}"  # ASK leaves the map alone
        await asyncio.to_thread(redis_cluster.move_keys, slot, source, target)
        await asyncio.to_thread(redis_cluster.finish_migration, slot, target)
        assert await router.call_many(slot, [("GET", stay_key), ("GET", f"{{{tag}}}:new")]
                                      ) == [b"s", b"n"]
        assert router.moved == 1
        assert redis_cluster.client(target).get(stay_key) == b"s"
    finally:
        await router.close()  # the slot stays on the target: the cluster is whole


async def test_calls_wait_for_a_master_then_fail_with_a_clear_error() -> None:
    router = ClusterRouter([{"host": "127.0.0.1", "port": free_port()}],
                           client_name="legato-test:router", failover_timeout=0.3,
                           timeout=0.2)
    await router.start()  # never raises for an unreachable cluster
    try:
        assert router.state is State.SEEKING
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(HubUnavailable, match=r"slot 7: no master answered within 0.3s"):
            await router.call(7, "PING")
        assert 0.25 < loop.time() - began < 2.0
        assert router.retries >= 1
    finally:
        await router.close()
