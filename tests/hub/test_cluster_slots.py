"""Redis Cluster groundwork (issue 16): the hub's slot arithmetic agrees with a real
cluster's, a topic's keys share one slot, and the test harness builds a real local
cluster (three masters with a replica each) from redis-server and redis-cli."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterator

import pytest
from redis_cluster import RedisCluster

from legato.hub.slots import SLOTS, crc16, key_slot, topic_tag


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    running = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    try:
        running.start()
        yield running
    finally:
        running.stop()


def test_crc16_is_the_xmodem_checksum_the_cluster_specification_gives() -> None:
    assert crc16(b"123456789") == 0x31C3  # the specification's check value


def test_key_slot_agrees_with_the_cluster_for_keys_and_hash_tags(cluster: RedisCluster) -> None:
    rng = random.Random(17)
    alphabet = string.ascii_letters + string.digits + "{}:._-~ é"
    keys = ["", "{", "}", "{}", "{}x", "x{}", "{a}", "a{b}c", "{a}{b}", "{{a}}", "a{b",
            "foo{bar}{zap}", "{user1000}.following", "é{ü}"]
    keys += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
             for _ in range(300)]
    node = cluster.client(cluster.ports[0])
    for key in keys:
        assert key_slot(key) == node.execute_command("CLUSTER", "KEYSLOT", key), key


@pytest.mark.parametrize("topic", ["room:1", "room:{1}", "a}b{c", "{", "é"])
def test_every_key_of_a_topic_shares_one_slot(topic: str, cluster: RedisCluster) -> None:
    tag = topic_tag("legato", topic)
    names = [f"{tag}:stream", f"{tag}:epoch", f"{tag}:presence", f"{tag}:pcount",
             f"{tag}:topic"]
    node = cluster.client(cluster.ports[0])
    slots = {node.execute_command("CLUSTER", "KEYSLOT", name) for name in names}
    assert slots == {key_slot(names[0])}
    assert 0 <= key_slot(names[0]) < SLOTS


def test_topics_spread_over_the_slots() -> None:
    slots = {key_slot(topic_tag("legato", f"room:{n}")) for n in range(2000)}
    assert len(slots) > 1800  # 2,000 topics land on ~1,890 distinct slots


def test_the_local_cluster_has_three_masters_each_with_a_replica(
        cluster: RedisCluster) -> None:
    assert len(cluster.master_ports()) == 3
    assert all(cluster.state_ok(port) for port in cluster.ports)
    shards = cluster.client(cluster.ports[0]).execute_command("CLUSTER", "SLOTS")
    covered = sum(int(s[1]) - int(s[0]) + 1 for s in shards)
    assert covered == SLOTS and all(len(s) >= 4 for s in shards)  # a master + a replica


def test_a_killed_master_is_replaced_by_its_replica(cluster: RedisCluster) -> None:
    """The failover the hub's cluster tests will exercise: kill -9 of a master, its
    replica takes its slots (cluster-node-timeout 1 s) and the cluster is whole again.
    Last in this module: it changes the cluster."""
    masters = cluster.master_ports()
    victim = masters[0]
    node = cluster.client(next(p for p in cluster.ports if p != victim))
    owned = {(int(s[0]), int(s[1])) for s in node.execute_command("CLUSTER", "SLOTS")
             if int(s[2][1]) == victim}
    cluster.kill(victim)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = node.execute_command("CLUSTER", "SLOTS")
        if all(int(s[2][1]) != victim for s in now) and cluster.state_ok(node_port(node)):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no replica took the killed master's slots")
    assert len(cluster.master_ports()) == 3  # the replica is a master now
    now = {(int(s[0]), int(s[1])): int(s[2][1]) for s in node.execute_command("CLUSTER", "SLOTS")}
    assert all(rng in now and now[rng] != victim for rng in owned)


def node_port(client: object) -> int:
    return int(client.connection_pool.connection_kwargs["port"])  # type: ignore[attr-defined]
