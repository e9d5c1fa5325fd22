"""A Redis Cluster of a test's own (issue 16): ``masters`` redis-servers started with
``--cluster-enabled yes`` on free ports, ``replicas`` replicas of each, joined with
``redis-cli --cluster create``; stopped (and single nodes killed or paused) by PID only."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisCluster:
    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 0) -> None:
        self.workdir = Path(workdir)
        self.size = masters * (1 + replicas)
        self.masters = masters
        self.replicas = replicas
        self.ports: list[int] = []
        while len(self.ports) < self.size:
            port = _node_port()
            if port not in self.ports:
                self.ports.append(port)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The seed nodes, as ``App(hub="redis+cluster://...")`` will take them."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:3])

    def start(self, timeout: float = 20.0) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        while not (all(self.state_ok(port) for port in self.ports)
                   and self._replicated()):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok with "
                                   "every replica attached")
            time.sleep(0.1)

    def _replicated(self) -> bool:
        """Every slot range lists its master and all its replicas."""
        try:
            shards = self.client(self.ports[0]).execute_command("CLUSTER", "SLOTS")
        except (redis.RedisError, OSError):
            return False
        return len(shards) >= self.masters and all(
            len(shard) >= 3 + self.replicas for shard in shards)

    def start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "1000", "--save", "", "--appendonly", "no",
             "--dir", str(node_dir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while not self._answers(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server --cluster-enabled did not start on {port}")
            time.sleep(0.02)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.client(port).ping())
        except (redis.RedisError, OSError):
            return False

    def state_ok(self, port: int) -> bool:
        try:
            info = self.client(port).execute_command("CLUSTER", "INFO")
        except (redis.RedisError, OSError):
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    def master_ports(self) -> list[int]:
        """The ports of the nodes that are masters now (a failover changes them)."""
        found = []
        for port in self.processes:
            try:
                role = self.client(port).execute_command("ROLE")
            except (redis.RedisError, OSError):
                continue
            if role[0] in (b"master", "master"):
                found.append(port)
        return sorted(found)

    def node_id(self, port: int) -> str:
        raw = self.client(port).execute_command("CLUSTER", "MYID")
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def owner(self, slot: int) -> int:
        """The port of ``slot``'s master, as the first answering node has it."""
        for port in self.processes:
            try:
                shards = self.client(port).execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            for shard in shards:
                if int(shard[0]) <= slot <= int(shard[1]):
                    return int(shard[2][1])
        raise RuntimeError(f"no node knows the master of slot {slot}")

    # A slot migration in its three steps (what ``redis-cli --cluster reshard`` does),
    # so a test can act between them: begin (the importing node accepts ASKING, the
    # migrating one redirects missing keys with ASK), move the keys, finish (every
    # master learns the new owner: MOVED from then on).

    def begin_migration(self, slot: int, target: int) -> int:
        source = self.owner(slot)
        self.client(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                            self.node_id(source))
        self.client(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                            self.node_id(target))
        return source

    def move_keys(self, slot: int, source: int, target: int) -> int:
        moved = 0
        node = self.client(source)
        while keys := node.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            node.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        return moved

    def finish_migration(self, slot: int, target: int) -> None:
        target_id = self.node_id(target)
        for port in [target, *(p for p in self.master_ports() if p != target)]:
            self.client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    def migrate(self, slot: int, target: int) -> None:
        source = self.begin_migration(slot, target)
        self.move_keys(slot, source, target)
        self.finish_migration(slot, target)

    def replicated_masters(self) -> list[int]:
        """The masters that have a replica now (a failover leaves its shard without)."""
        for port in self.processes:
            try:
                shards = self.client(port).execute_command("CLUSTER", "SLOTS")
            except (redis.RedisError, OSError):
                continue
            return sorted({int(s[2][1]) for s in shards if len(s) >= 4})
        return []

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        process.kill()
        process.wait(5)

    def pause(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[port].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for port in list(self.processes):
            process = self.processes.pop(port)
            process.send_signal(signal.SIGCONT)
            process.kill()
            process.wait(5)


def _node_port() -> int:
    """A free port whose cluster bus port (port + 10000, at most 65535) is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 55000)
        if _free(port) and _free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
