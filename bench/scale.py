"""The figures docs/scale.md plans 1,000,000 WebSocket connections on 100 hosts from
(issue 16 item 3), and a load test scaled down with the same shape.

``inputs`` measures, each figure printed with the command that made it:

  a) memory     RSS per idle connection (bench/server.py's idle_rss: bench/loadgen.c
                opens N connections to one worker, RSS before and after), on /echo (not
                subscribed) and on /sub (subscribed to one topic), memory and Redis hub.
  b) delivery   server CPU per delivered message of a broadcast: loadgen's bcast (a
                publisher connection, N subscriber sockets, each broadcast checked to
                reach every socket once, in order) against one worker; the worker's
                /proc/<pid>/stat CPU over the window / deliveries in it. window=1: one
                broadcast in flight (one send() per delivery, what a slow topic costs);
                window=2: broadcasts coalesce into one send() per socket per loop turn.
  c) publish    publishes/s through the hub's real publish path (the backend's
                ``publish()``: one Lua script, XADD + PUBLISH, over its one pipelined
                connection) from 100 concurrent publishers in this process, with the
                redis-server's own CPU over the same window (INFO cpu), so the ceiling of
                one Redis core (1 / CPU per publish) is known even when this Python client
                is what limits the measured rate. Then the same from 50 connections (50
                backends in this process) with one publish in flight each: many hosts
                each publishing now and then, where Redis cannot batch a connection's
                commands, so each publish pays its own read() and write(). ``--cluster``
                adds the sharded form on
                one master of a local Redis Cluster (tests/hub/redis_cluster.py): the
                cluster backend when this checkout has one (``redis+cluster://``), else
                the same script with SPUBLISH driven over legato's Pipeline directly.
  d) redis-cpu  Redis CPU per published message (INFO cpu used_cpu_user + sys, delta over
                a counted number of publishes) with 0, 1, 10, 50, 100 pub/sub connections
                subscribed to the topic (raw sockets drained by a thread: Redis's cost is
                the same whoever reads), so the per-subscriber-connection fan-out cost
                inside Redis is the slope; gathered (1,000 in flight) and one at a time.
  e) handshake  WebSocket handshakes/s of one worker (loadgen hs, 50 concurrent
                clients: connect, upgrade, close): what a reconnect storm meets.
  f) history    Redis memory of one topic's stream (MEMORY USAGE ... SAMPLES 0) after
                enough 64 B publishes to fill what it keeps: history=0 (the gap window
                every active topic keeps for a minute), 100 and 1,000 messages.

``load`` is the scaled-down test: ``--procs`` worker processes (each a legato server,
its own port, App(hub=URL)), one hot topic with ``--hot-subs`` sockets spread over every
worker and ``--cold-topics`` cold topics with 1-3 sockets each on random workers; real
WebSocket connections from this process (an asyncio client of its own, on CPU 0). The
publishes go through the workers (a /pubt connection to each: the worker calls
``app.hub.publish``) at ``--hot-rate`` msg/s on the hot topic (round robin over the
workers) and ``--cold-rate`` msg/s in total on random cold topics (each from its own
worker). Every message carries its topic, publishing worker, a sequence number per
(topic, worker) and the send time: delivery latency p50/p99, deliveries/s, lost,
duplicated and out-of-order counts (each must be 0: a publisher's messages arrive in
order), Redis CPU (summed over the nodes), each worker's CPU, this client's CPU. This
client reads every copy of a hot message one socket after another, so its latencies are
mostly its own queue (p50 ~ half of --hot-subs x ~10 µs); ``first_*`` is the first copy
of each message, and ``probe_*`` come from a second client process with one hot socket
per worker and 16 cold ones: the delivery latency of a socket whose client is not busy.

CPUs: workers and redis-server(s) on CPU 1, loadgen and this process on CPU 0 (as
bench/hub.py). The machine may be shared: each result line carries the load average and
the CPU time other processes used during the window.

Usage: python bench/scale.py inputs [--only a,b,c,d,e,f] [--quick] [--cluster]
       python bench/scale.py load [--hub URL | --cluster] [--procs 6] [--hot-subs 1200]
           [--cold-topics 1000] [--hot-rate 20] [--cold-rate 300] [--duration 20]
       python bench/scale.py load --smoke      (a few seconds: the smoke test's run)
       A redis-server of its own is started unless --hub names one; inputs ~3 min,
       load ~1 min with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "hub"))
import hub as hubbench  # noqa: E402 - bench/hub.py: HubServer, RedisServer, Spec
import server as harness  # noqa: E402 - bench/server.py: loadgen, run_one, pinning

PY = sys.executable
SCRIPT = Path(__file__).resolve()
TICK = os.sysconf("SC_CLK_TCK")
PAYLOAD = 64  # bytes of every published message, as bench/hub.py's broadcasts


# ----------------------------------------------------------------- the worker app


def make_app(hub: str) -> Any:
    """One worker: /echo (the harness's readiness probe), /sub?topic=T (subscribe, then
    echo, so loadgen's idle mode can check it is alive; ack=1: say "subscribed" once the
    hub has the subscription), /pub (loadgen's publisher: every message to "bench"),
    /pubt ("<topic> ..." messages, each published to its topic). Bare messages
    (hub_envelope=False): what a subscriber gets is what was published."""
    from legato import App, WebSocket

    app = App(hub=hub, hub_envelope=False)

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket("/sub")
    async def sub(ws: WebSocket, topic: str = "bench", ack: int = 0) -> None:
        await app.hub.subscribe(ws, topic)
        if ack:
            await ws.send("subscribed")
        async for message in ws:
            await ws.send(message)

    @app.websocket("/pub")
    async def pub(ws: WebSocket) -> None:
        async for message in ws:
            await app.hub.publish("bench", message)

    @app.websocket("/pubt")
    async def pubt(ws: WebSocket) -> None:
        async for message in ws:
            await app.hub.publish(message.split(" ", 1)[0], message)

    return app


def serve(port: int) -> None:
    make_app(os.environ["LEGATO_SCALE_HUB"]).run(port=port, log_level="warning")


_specs: dict[str, str] = {}


def worker_name(hub: str, index: int = 0) -> str:
    """bench/hub.py's server name of a worker of this app on ``hub`` (registered once)."""
    safe = re.sub(r"[^\w]+", "_", hub)[:48]
    name = f"scale-{safe}-{index}"
    if name not in _specs:
        hubbench.SERVERS[name] = hubbench.Spec(
            [PY, str(SCRIPT), "serve", "--port", "{port}"], {"LEGATO_SCALE_HUB": hub},
            module="legato")
        _specs[name] = hub
    return name


# ------------------------------------------------------------ what a window cost


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class RedisCpu:
    """used_cpu_user + used_cpu_sys of some Redis nodes (INFO cpu), summed or per node."""

    def __init__(self, ports: list[int]) -> None:
        import redis  # noqa: PLC0415

        self.clients = {p: redis.Redis(host="127.0.0.1", port=p, socket_timeout=5)
                        for p in ports}

    def read(self) -> dict[int, float]:
        out = {}
        for port, client in self.clients.items():
            info = client.info("cpu")
            out[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        return out

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def machine() -> str:
    """The load average now: the conditions line of every figure."""
    return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


def others_cpu(since: tuple[float, float], own: float) -> float:
    """Cores other processes used since ``since`` (/proc/stat busy time and wall time),
    ``own`` being what this run's processes used (seconds of CPU)."""
    busy, wall = _busy()
    return max(0.0, (busy - since[0] - own) / max(1e-9, wall - since[1]))


def _busy() -> tuple[float, float]:
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in first[:8]]
    return (sum(values) - values[3] - values[4]) / TICK, time.monotonic()


def pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return values[min(len(values) - 1, int(p * len(values)))] / 1000  # ns -> µs


# ------------------------------------------------------------------------ inputs


class Inputs:
    """Parts a-f of the docstring; each result is a row (figure, value, command, conditions)."""

    def __init__(self, opts: argparse.Namespace, workdir: Path, loadgen: Path) -> None:
        self.opts, self.workdir, self.loadgen = opts, workdir, loadgen
        self.rows: list[tuple[str, str, str, str]] = []
        self.command = f"python bench/scale.py inputs{' --quick' if opts.quick else ''}"

    def row(self, figure: str, value: str, part: str, conditions: str) -> None:
        self.rows.append((figure, value, f"{self.command} --only {part}", conditions))
        print(f"  {figure:58} {value:>18}   [{conditions}]", flush=True)

    # a) and b): one worker under bench/loadgen.c, through bench/server.py's run_one
    def loadgen_run(self, hub: str, scen: harness.Scenario,
                    timing: dict[str, float]) -> dict[str, Any]:
        def make(name: str, where: Path) -> hubbench.HubServer:
            return hubbench.HubServer(name, where)
        return harness.run_one(self.loadgen, worker_name(hub), scen, timing, self.workdir,
                               make_server=make)

    def memory(self, hubs: dict[str, str]) -> None:
        conns = 1000 if self.opts.quick else 10_000  # the plan's connections per host
        print(f"a) RSS per idle connection, {conns:,} connections, one worker", flush=True)
        for label, hub in hubs.items():
            for path, what in (("/echo", "not subscribed"), ("/sub?topic=room", "subscribed")):
                if what == "not subscribed" and label != "memory":
                    continue  # the hub plays no part: once is enough
                scen = harness.Scenario("idle", "idle", dict(path=path, conns=conns, size=32),
                                        "idle")
                res = self.loadgen_run(hub, scen, {"warmup": 0, "duration": 0})
                value = f"{res['kib_per_conn']:.2f} KiB" if res.get("ok") else \
                    f"FAIL {res.get('error')}"
                self.row(f"a) RSS per idle connection, {what} ({label} hub)", value, "a",
                         f"{conns:,} conns, {machine()}")

    def delivery(self, hubs: dict[str, str]) -> None:
        print("b) worker CPU per delivered message (loadgen bcast, 64 B)", flush=True)
        timing = {"warmup": 0.5, "duration": 1.0} if self.opts.quick else \
            {"warmup": 1.0, "duration": 3.0}
        sizes = (200,) if self.opts.quick else (1000, 5000)
        for label, hub in hubs.items():
            for subs in sizes:
                for window in (1, 2):
                    if label != "memory" and subs != sizes[0]:
                        continue
                    scen = harness.Scenario("bcast", "bcast",
                                            dict(path="/sub", subs=subs, window=window), "b")
                    res = self.loadgen_run(hub, scen, timing)
                    if not res.get("ok"):
                        self.row(f"b) {subs} subs window {window} ({label})",
                                 f"FAIL {res.get('error')}", "b", machine())
                        continue
                    per = res["server_cpu"] * res["seconds"] / res["count"] * 1e6
                    rate = res["count"] / res["seconds"]
                    self.row(f"b) µs worker CPU/delivery, {subs:,} subs, window {window} "
                             f"({label})", f"{per:.2f} µs", "b",
                             f"{rate:,.0f} del/s, worker {res['server_cpu']:.2f} core, loadgen "
                             f"{res['loadgen_cpu']:.2f}, others {res.get('other_cpu', 0):.2f}, "
                             f"{machine()}")

    def handshakes(self) -> None:
        print("e) handshakes/s of one worker (loadgen hs: connect, upgrade, close)", flush=True)
        timing = {"warmup": 0.5, "duration": 1.0 if self.opts.quick else 3.0}
        scen = harness.Scenario("handshake", "hs", dict(path="/echo", conc=50), "e")
        res = self.loadgen_run("memory://", scen, timing)
        value = f"{res['count'] / res['seconds']:,.0f}/s" if res.get("ok") else \
            f"FAIL {res.get('error')}"
        self.row("e) WebSocket handshakes/s, one worker, 50 concurrent clients", value, "e",
                 f"worker {res.get('server_cpu', 0):.2f} core, loadgen "
                 f"{res.get('loadgen_cpu', 0):.2f}, p50 {res.get('p50_us', 0):.0f} µs; "
                 f"{machine()}")

    # c) and d): this process against a Redis (or one node of a cluster)
    async def publish_rate(self, publishers: list[Any], port: int, shape: str,
                           label: str) -> None:
        """Each of ``publishers`` (an async callable taking a topic number) in a loop of
        its own, one publish awaited at a time, for the window: publishes/s, and Redis's
        CPU per publish over the same window (the ceiling of one Redis core)."""
        duration = 1.0 if self.opts.quick else 3.0
        cpu = RedisCpu([port])
        count, failed = [0], [0]
        before, started = cpu.read()[port], time.perf_counter()
        end = started + duration

        async def loop(n: int, publisher: Any) -> None:
            while time.perf_counter() < end:
                try:
                    await publisher(n % 10)
                except Exception:  # noqa: BLE001 - counted: a figure with failures says so
                    failed[0] += 1
                else:
                    count[0] += 1
        await asyncio.gather(*(loop(n, pub) for n, pub in enumerate(publishers)))
        took = time.perf_counter() - started
        used = max(1e-9, cpu.read()[port] - before)
        cpu.close()
        bound = "Redis-bound" if used / took > 0.9 else "client-bound (this Python process)"
        self.row(f"c) publishes/s, {shape}, 10 topics ({label})",
                 f"{count[0] / took:,.0f}/s", "c",
                 f"{failed[0]} failed; Redis {used / took:.2f} core, {bound}; {machine()}")
        self.row(f"c) Redis CPU per publish, {shape} ({label})",
                 f"{used / max(1, count[0]) * 1e6:.2f} µs", "c", "the same window")
        self.row(f"c) Redis-bound ceiling, one core, {shape} ({label})",
                 f"{count[0] / used:,.0f}/s", "c", "1 / Redis CPU per publish")

    async def redis_cpu(self, publisher: Any, port: int, channel: bytes, subscribe: bytes,
                        label: str) -> None:
        """Gathered (1,000 in flight: Redis writes each subscriber once per event-loop
        turn, many messages at a time) and one at a time (each publish awaited: one write
        per subscriber per message, what a topic that is not busy costs)."""
        messages = 2000 if self.opts.quick else 20_000
        cpu = RedisCpu([port])
        for how, batch, count in (("gathered", 1000, messages),
                                  ("one at a time", 1, messages // 10)):
            for k in (0, 1, 10, 50, 100):
                with Listeners(port, channel, k, subscribe) as listeners:
                    before = cpu.read()[port]
                    for _ in range(0, count, batch):
                        await asyncio.gather(*(publisher(0) for _ in range(batch)))
                    listeners.drained()
                    used = cpu.read()[port] - before
                value = f"{used / count * 1e6:.2f} µs" if not listeners.dropped else \
                    f"FAIL: Redis dropped {listeners.dropped} of the {k} subscribers"
                self.row(f"d) Redis CPU/publish, {k:3} subscriber conns, {how} ({label})",
                         value, "d", f"{count:,} publishes, "
                         f"{listeners.received / max(1, k * count):.0f} B read per delivery; "
                         f"{machine()}")
        cpu.close()


class Listeners:
    """``k`` raw pub/sub connections to one Redis node, subscribed to ``channel``, read
    and discarded by a thread (Redis's cost of a delivery is the same whoever reads)."""

    def __init__(self, port: int, channel: bytes, k: int, command: bytes) -> None:
        self.socks: list[socket.socket] = []
        self.received = self.dropped = 0
        self.stopping = False
        for _ in range(k):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(command), command, len(channel), channel))
            if b"subscribe" not in sock.recv(4096):
                raise RuntimeError(f"{command!r} {channel!r} was not confirmed")
            sock.setblocking(False)
            self.socks.append(sock)
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        with selectors.DefaultSelector() as sel:
            for sock in self.socks:
                sel.register(sock, selectors.EVENT_READ)
            while not self.stopping:
                for key, _ in sel.select(0.05):
                    with suppress(BlockingIOError):
                        data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                        if not data:  # Redis closed it (output buffer limit): say so,
                            sel.unregister(key.fileobj)  # and do not spin on its EOF
                            self.dropped += 1
                        self.received += len(data)

    def drained(self) -> None:
        """Until nothing more arrives for 0.3 s: Redis has written every delivery."""
        last, quiet = -1, time.monotonic()
        while time.monotonic() - quiet < 0.3:
            if self.received != last:
                last, quiet = self.received, time.monotonic()
            time.sleep(0.02)

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


async def single_redis(inputs: Inputs, url: str, port: int, parts: str) -> None:
    """c) and d) on one redis-server through the RedisBackend's publish()."""
    from legato.hub import backend_for  # noqa: PLC0415

    url = f"{url}?prefix=scale{os.getpid()}"
    backend = backend_for(url)
    await backend.start(lambda *a: None, lambda *a: None)
    try:
        async def publisher(topic: int) -> None:
            await backend.publish(f"t{topic}", "x" * PAYLOAD)
        if "c" in parts:
            print("c) publishes/s, single Redis, the RedisBackend's publish()", flush=True)
            await inputs.publish_rate([publisher] * 100, port,
                                      "one connection, 100 in flight", "redis://")
            await many_connections(inputs, url, port)
        if "d" in parts:
            print("d) Redis CPU per publish against subscribing connections", flush=True)
            await inputs.redis_cpu(publisher, port, backend.channel("t0"), b"SUBSCRIBE",
                                   "redis://, PUBLISH")
        if "f" in parts:
            print("f) Redis memory of a topic's history (its stream)", flush=True)
            await history_memory(inputs, backend, port)
    finally:
        await backend.stop()


async def history_memory(inputs: Inputs, backend: Any, port: int) -> None:
    """f): what one topic's stream holds in Redis, by how many messages it keeps."""
    import redis  # noqa: PLC0415

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        for keep in (0, 100, 1000):
            topic = f"history{keep}"
            for _ in range(max(2 * keep, 400) // 100):  # more than it keeps: trimmed
                await asyncio.gather(*(backend.publish(topic, "x" * PAYLOAD, history=keep)
                                       for _ in range(100)))
            stream = backend._stream(topic)  # noqa: SLF001 - the key name is the backend's
            used = client.memory_usage(stream, samples=0) or 0
            entries = client.xlen(stream)
            inputs.row(f"f) Redis memory of a topic's stream, history={keep}",
                       f"{used / 1024:.1f} KiB", "f",
                       f"{entries} entries kept, {used / max(1, entries):.0f} B each, "
                       f"{PAYLOAD} B payloads")
    finally:
        client.close()


async def many_connections(inputs: Inputs, url: str, port: int) -> None:
    """c) from 50 backends (50 command connections) with one publish in flight each:
    what 50 processes publishing now and then cost Redis, without the pipelining one
    busy connection gets."""
    from legato.hub import backend_for  # noqa: PLC0415

    backends = [backend_for(url) for _ in range(50)]
    for backend in backends:
        await backend.start(lambda *a: None, lambda *a: None)
    try:
        def publisher_of(backend: Any) -> Any:
            async def publisher(topic: int) -> None:
                await backend.publish(f"t{topic}", "x" * PAYLOAD)
            return publisher
        await inputs.publish_rate([publisher_of(b) for b in backends], port,
                                  "50 connections, 1 in flight each", "redis://")
    finally:
        for backend in backends:
            await backend.stop()


# The sharded publish, as the cluster backend does it: the topic's stream, and its
# shard channel (declared as a key: both carry the topic's hash tag, one slot).
_SHARDED_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', '0', 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SPUBLISH', KEYS[2], id .. ' ' .. ARGV[3])
return id
"""


async def sharded(inputs: Inputs, parts: str) -> None:
    """c) and d) on one master of a local Redis Cluster: the cluster backend if this
    checkout has one, else the sharded script over legato's Pipeline, to that master."""
    from redis_cluster import RedisCluster  # noqa: PLC0415 - tests/hub/redis_cluster.py

    from legato.hub import backend_for  # noqa: PLC0415
    from legato.hub.pipeline import Pipeline  # noqa: PLC0415
    from legato.hub.slots import key_slot, topic_tag  # noqa: PLC0415

    replicas = 1 if inputs.opts.replicas else 0
    cluster = RedisCluster(inputs.workdir / "cluster", masters=3, replicas=replicas)
    cluster.start()
    try:
        for proc in cluster.processes.values():
            os.sched_setaffinity(proc.pid, {harness.SERVER_CPU})
        node = cluster.master_ports()[0]
        if replicas:
            await replicated_publish_rate(inputs, cluster, node)
        owned: set[int] = set()
        for first, last, master, *_ in cluster.client(node).execute_command("CLUSTER", "SLOTS"):
            if int(master[1]) == node:
                owned.update(range(int(first), int(last) + 1))
        prefix = f"scale{os.getpid()}"
        topics = [t for t in (f"t{n}" for n in range(1000))
                  if key_slot(topic_tag(prefix, t)) in owned][:10]
        try:
            backend = backend_for(cluster.url + f"?prefix={prefix}")
        except ValueError:
            backend = None
        if backend is not None:
            await backend.start(lambda *a: None, lambda *a: None)

            async def publisher(topic: int) -> None:
                await backend.publish(topics[topic], "x" * PAYLOAD)
            label, channel = "redis+cluster:// backend, one master", \
                backend.channel(topics[0])
        else:
            pipe = Pipeline({"host": "127.0.0.1", "port": node}, client_name="scale",
                            timeout=2.0)
            tags = [topic_tag(prefix, t) for t in topics]

            async def publisher(topic: int) -> None:
                reply = await pipe.call("EVAL", _SHARDED_PUBLISH, 2, f"{tags[topic]}:stream",
                                        f"{tags[topic]}:topic", 100, 60_000,
                                        "t" + "x" * PAYLOAD)
                if not isinstance(reply, bytes):
                    raise RuntimeError(f"the sharded publish said {reply!r}")
            label, channel = "SPUBLISH script over Pipeline, one master", \
                f"{tags[0]}:topic".encode()
        try:
            if "c" in parts:
                print(f"c) publishes/s, sharded ({label})", flush=True)
                await inputs.publish_rate([publisher] * 100, node,
                                          "one connection, 100 in flight", label)
            if "d" in parts:
                print(f"d) Redis CPU per publish, sharded ({label})", flush=True)
                await inputs.redis_cpu(publisher, node, channel, b"SSUBSCRIBE", label)
        finally:
            if backend is not None:
                await backend.stop()
            else:
                await pipe.close()
    finally:
        cluster.stop()


async def replicated_publish_rate(inputs: Inputs, cluster: Any, node: int) -> None:
    """c) with a replica per master: what WAIT for one replica (``wait_replicas=1``, the
    default: no acknowledged publish lost to a failover) costs against no WAIT."""
    from legato.hub.redis_cluster import RedisClusterBackend  # noqa: PLC0415
    from legato.hub.slots import key_slot, topic_tag  # noqa: PLC0415

    owned: set[int] = set()
    for first, last, master, *_ in cluster.client(node).execute_command("CLUSTER", "SLOTS"):
        if int(master[1]) == node:
            owned.update(range(int(first), int(last) + 1))
    for wait in (1, 0):
        prefix = f"scale{os.getpid()}w{wait}"
        topics = [t for t in (f"t{n}" for n in range(1000))
                  if key_slot(topic_tag(prefix, t)) in owned][:10]
        backend = RedisClusterBackend(cluster.url, prefix=prefix, wait_replicas=wait)
        await backend.start(lambda *a: None, lambda *a: None)
        try:
            async def publisher(topic: int, backend: Any = backend,
                                topics: list[str] = topics) -> None:
                await backend.publish(topics[topic], "x" * PAYLOAD)
            label = f"redis+cluster://, a replica per master, wait_replicas={wait}"
            print(f"c) publishes/s, sharded ({label})", flush=True)
            for shape, publishers in (("one connection, 100 in flight", 100),
                                      ("one publisher, 1 in flight", 1)):
                await inputs.publish_rate([publisher] * publishers, node, shape, label)
            if wait:
                print(f"   unreplicated publishes: {backend.unreplicated}", flush=True)
        finally:
            await backend.stop()


def inputs_main(opts: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="legato-scale-"))
    parts = opts.only or "abcdef"
    inputs = Inputs(opts, workdir, harness.build_loadgen(workdir))
    os.sched_setaffinity(0, {harness.LOADGEN_CPU})
    harness.raise_nofile()
    redis = hubbench.RedisServer(workdir, {harness.SERVER_CPU})
    print(f"legato at {git_head()}; redis-server on CPU {harness.SERVER_CPU} "
          f"(port {redis.port}); {machine()}", flush=True)
    try:
        hubs = {"memory": "memory://", "redis": redis.url}
        if "a" in parts:
            inputs.memory(hubs)
        if "b" in parts:
            inputs.delivery(hubs)
        if "e" in parts:
            inputs.handshakes()
        if "c" in parts or "d" in parts or "f" in parts:
            asyncio.run(single_redis(inputs, redis.url, redis.port, parts))
            if opts.cluster:
                asyncio.run(sharded(inputs, parts))
    finally:
        redis.stop()
    failed = any(v.startswith("FAIL") for _, v, _, _ in inputs.rows)
    keep_or_remove(workdir, failed)
    print("\n| figure | value | command | conditions |\n|---|---|---|---|")
    for figure, value, command, conditions in inputs.rows:
        print(f"| {figure} | {value} | `{command}` | {conditions} |")
    if opts.json:
        Path(opts.json).write_text(json.dumps(inputs.rows, indent=1))
    return 1 if failed else 0


def keep_or_remove(workdir: Path, failed: bool) -> None:
    """The run's directory (loadgen, server and Redis logs): kept when something failed,
    for its logs, else removed (runs do not pile up in /tmp)."""
    if failed:
        print(f"logs kept in {workdir}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def git_head() -> str:
    return subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


# -------------------------------------------------------------------- load test


class Conn(asyncio.Protocol):
    """One WebSocket client connection: the handshake, then unmasked server frames
    (RFC 6455 §5.1); our frames are masked with the zero key (valid, and no XOR here)."""

    def __init__(self, port: int, path: str) -> None:
        self.request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        self.buf = bytearray()
        self.upgraded = False
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"handshake refused: {bytes(buf[:40])!r}")
            del buf[:end + 4]
            self.upgraded = True
        now, i, n = time.monotonic_ns(), 0, len(buf)
        while n - i >= 2:
            size, head = buf[i + 1] & 127, 2
            if size == 126:
                size, head = int.from_bytes(buf[i + 2:i + 4], "big"), 4
            elif size == 127:
                size, head = int.from_bytes(buf[i + 2:i + 10], "big"), 10
            if n - i < head + size:
                break
            opcode, payload = buf[i] & 15, bytes(buf[i + head:i + head + size])
            i += head + size
            if opcode in (1, 2):
                self.message(payload, now)
            elif opcode == 9:
                self.send(payload, 10)  # Pong
            elif opcode == 8:
                self.closed = True
        del buf[:i]

    def message(self, payload: bytes, now: int) -> None:
        pass

    def send(self, payload: bytes, opcode: int = 1) -> None:
        n = len(payload)
        head = bytes((0x80 | opcode, 0x80 | n)) if n < 126 else \
            bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        assert self.transport is not None
        self.transport.write(head + b"\0\0\0\0" + payload)


class Sub(Conn):
    """A subscriber socket: checks every message is its topic's, once, in each
    publisher's order, and records its latency while the window is open."""

    def __init__(self, run: Tally, port: int, topic: str, worker: int) -> None:
        super().__init__(port, f"/sub?topic={topic}&ack=1")
        self.run, self.topic, self.worker = run, topic, worker
        self.topic_bytes = topic.encode()
        self.acked = asyncio.get_running_loop().create_future()
        self.marks: dict[int, bytearray] = {}  # publishing worker → seen, by sequence
        self.last: dict[int, int] = {}
        self.in_window = 0

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.acked.done():  # refused or dropped before subscribing: fail now,
            self.acked.set_exception(  # not after connect()'s 60 s
                ConnectionError(f"/sub?topic={self.topic} on worker {self.worker} closed "
                                f"before it was subscribed ({exc})"))

    def message(self, payload: bytes, now: int) -> None:
        if payload == b"subscribed":
            self.acked.set_result(None)
            return
        run = self.run
        topic, pub_b, seq_b, sent, _ = payload.split(b" ", 4)
        if topic != self.topic_bytes:
            run.wrong += 1
            return
        pub, seq = int(pub_b), int(seq_b)
        marks = self.marks.get(pub)
        if marks is None:
            marks = self.marks[pub] = bytearray()
        if len(marks) <= seq:
            marks.extend(bytes(seq + 64 - len(marks)))
        if marks[seq]:
            run.duplicated += 1
        marks[seq] = 1
        if seq < self.last.get(pub, -1):
            run.reordered += 1
        else:
            self.last[pub] = seq
        run.received += 1
        if run.measuring:
            self.in_window += 1
        sent_ns = int(sent)
        if not run.window[0] <= sent_ns < run.window[1]:
            return  # latency: of the messages published in the window, wherever they land
        latency = now - sent_ns
        run.latencies.append(latency)
        first = (topic, pub, seq)
        if first not in run.firsts:  # the first socket to get it: the path without
            run.firsts[first] = latency  # this client's own fan-in of it

    def lost(self, published: dict[tuple[str, int], int]) -> int:
        missing = 0
        for (topic, pub), count in published.items():
            if topic == self.topic:
                missing += self.marks.get(pub, bytearray())[:count].ljust(count, b"\0").count(0)
        return missing


class Tally:
    """What the subscriber sockets of one client process count (Sub writes here)."""

    def __init__(self) -> None:
        self.measuring = False
        self.window = (0, 0)  # monotonic_ns: the measuring window, [start, end)
        self.latencies: list[int] = []
        self.firsts: dict[tuple[bytes, int, int], int] = {}
        self.received = self.wrong = self.duplicated = self.reordered = 0

    async def subscribe(self, port: int, topic: str, worker: int) -> Sub:
        _, sub = await asyncio.get_running_loop().create_connection(
            lambda: Sub(self, port, topic, worker), "127.0.0.1", port)
        await asyncio.wait_for(sub.acked, 60)
        return sub


class LoadRun(Tally):
    """The scaled-down load test (see the module docstring)."""

    def __init__(self, opts: argparse.Namespace, ports: list[int]) -> None:
        super().__init__()
        self.opts, self.ports = opts, ports
        self.rng = random.Random(opts.seed)
        self.published: dict[tuple[str, int], int] = {}
        self.window_publishes = self.window_broker = 0
        procs = len(ports)
        # Topology: the hot topic on every worker, cold topics with 1-3 sockets each.
        self.layout = [("hot", i % procs) for i in range(opts.hot_subs)]
        for t in range(opts.cold_topics):
            self.layout += [(f"c{t}", self.rng.randrange(procs))
                            for _ in range(self.rng.randint(1, 3))]
        self.fanout: dict[str, int] = {}  # topic → processes the broker sends it to
        for topic in {t for t, _ in self.layout}:
            self.fanout[topic] = len({w for t, w in self.layout if t == topic})

    async def connect(self) -> tuple[list[Sub], list[Conn]]:
        loop = asyncio.get_running_loop()
        room = asyncio.Semaphore(100)

        async def one(topic: str, worker: int) -> Sub:
            async with room:
                return await self.subscribe(self.ports[worker], topic, worker)
        subs = await asyncio.gather(*(one(t, w) for t, w in self.layout))
        pubs = []
        for port in self.ports:
            _, pub = await loop.create_connection(lambda p=port: Conn(p, "/pubt"),
                                                  "127.0.0.1", port)
            pubs.append(pub)
        await asyncio.sleep(0.2)  # the /pubt upgrades
        return list(subs), pubs

    def publish(self, pubs: list[Conn], topic: str, worker: int) -> None:
        seq = self.published.get((topic, worker), 0)
        self.published[topic, worker] = seq + 1
        text = f"{topic} {worker} {seq} {time.monotonic_ns()} "
        pubs[worker].send(text.ljust(PAYLOAD, "x").encode())
        if self.measuring:
            self.window_publishes += 1
            self.window_broker += self.fanout.get(topic, 0)

    async def publish_for(self, pubs: list[Conn], seconds: float) -> None:
        """The publish mix, paced every 5 ms: hot round robin, cold each from its own worker."""
        opts, procs = self.opts, len(pubs)
        start = time.monotonic()
        hot = cold = 0
        while (now := time.monotonic()) < start + seconds:
            for _ in range(int((now - start) * opts.hot_rate) - hot):
                self.publish(pubs, "hot", hot % procs)
                hot += 1
            for _ in range(int((now - start) * opts.cold_rate) - cold):
                topic = self.rng.randrange(opts.cold_topics) if opts.cold_topics else 0
                self.publish(pubs, f"c{topic}", topic % procs)
                cold += 1
            await asyncio.sleep(0.005)

    async def drain(self, subs: list[Sub], limit: float = 15.0) -> None:
        """Until every published message reached every socket of its topic, or ``limit``."""
        sockets: dict[str, int] = {}
        for sub in subs:
            sockets[sub.topic] = sockets.get(sub.topic, 0) + 1
        want = sum(n * sockets.get(t, 0) for (t, _), n in self.published.items())
        deadline = time.monotonic() + limit
        while self.received + self.wrong < want and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


class Probe:
    """A second client process with a few sockets: one on the hot topic per worker, and
    some on cold topics (where the layout already has a socket on that worker, so what
    the broker sends is unchanged). The main client reads up to --hot-subs copies of
    each hot message one after another (~10 µs each in Python), so its latencies are
    mostly its own queue; the probe's are what a socket on a lightly loaded client sees
    (its wake-ups preempt the busy main client on CPU 0). Driven over stdin: "start
    <ns>", "end <ns>" (the window's publish times), "done" (print the result)."""

    def __init__(self, ports: list[int], layout: list[tuple[str, int]], cold: int) -> None:
        picks = [f"hot:{w}" for w in range(len(ports))]
        picks += sorted({f"{t}:{w}" for t, w in layout if t != "hot"})[:cold]
        self.proc = subprocess.Popen(
            [PY, str(SCRIPT), "probe", "--ports", ",".join(map(str, ports)), *picks],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            preexec_fn=harness.pinned(harness.LOADGEN_CPU))

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line.startswith("READY"):
            raise RuntimeError(f"the probe did not start: {line!r}")

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        self.tell("done")
        try:
            out, _ = self.proc.communicate(timeout=20)
            return json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.proc.kill()
            self.proc.wait()
            return {"probe_error": "no result from the probe"}


async def probe_main(opts: argparse.Namespace) -> None:
    """The probe process (see :class:`Probe`): subscribe, then follow stdin."""
    ports = [int(p) for p in opts.ports.split(",")]
    hot, cold = Tally(), Tally()
    subs = []
    for pick in opts.picks:
        topic, worker = pick.rsplit(":", 1)
        tally = hot if topic == "hot" else cold
        subs.append(await tally.subscribe(ports[int(worker)], topic, int(worker)))
    print("READY", flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):  # "": the main one exited
        word, *arg = line.split() or [""]
        if word == "start":
            hot.window = cold.window = (int(arg[0]), 1 << 63)
        elif word == "end":
            hot.window = cold.window = (hot.window[0], int(arg[0]))
        elif word == "done":
            break
    for sub in subs:
        assert sub.transport is not None
        sub.transport.close()
    print(json.dumps({
        "probe_hot_p50_us": pct(hot.latencies, 0.5), "probe_hot_p99_us": pct(hot.latencies, 0.99),
        "probe_cold_p50_us": pct(cold.latencies, 0.5),
        "probe_cold_p99_us": pct(cold.latencies, 0.99),
        "probe_sockets": len(subs), "probe_faults": hot.duplicated + hot.reordered + hot.wrong
        + cold.duplicated + cold.reordered + cold.wrong}), flush=True)


async def load_run(opts: argparse.Namespace, workers: list[Any], redis_ports: list[int],
                   ) -> dict[str, Any]:
    run = LoadRun(opts, [w.port for w in workers])
    subs, pubs = await run.connect()
    probe = Probe(run.ports, run.layout, cold=16)
    await probe.ready()
    pids = [pid for w in workers for pid in w.pids]
    cpu = RedisCpu(redis_ports) if redis_ports else None
    await run.publish_for(pubs, opts.warmup)
    run.measuring, run.window = True, (time.monotonic_ns(), 1 << 63)
    probe.tell(f"start {run.window[0]}")
    busy0, worker0 = _busy(), {pid: cpu_seconds(pid) for pid in pids}
    redis0, own0 = (cpu.read() if cpu else {}), time.process_time()
    await run.publish_for(pubs, opts.duration)
    run.measuring, run.window = False, (run.window[0], time.monotonic_ns())
    probe.tell(f"end {run.window[1]}")
    wall = time.monotonic() - busy0[1]
    worker_cpu = {pid: cpu_seconds(pid) - worker0[pid] for pid in pids}
    redis_cpu = {p: v - redis0[p] for p, v in (cpu.read() if cpu else {}).items()}
    own = time.process_time() - own0
    others = others_cpu(busy0, sum(worker_cpu.values()) + sum(redis_cpu.values()) + own)
    await run.drain(subs)
    probed = probe.result()
    lost = sum(s.lost(run.published) for s in subs)
    closed = sum(1 for s in subs if s.closed)
    for conn in [*subs, *pubs]:
        assert conn.transport is not None
        conn.transport.close()
    if cpu:
        cpu.close()
    window = sum(s.in_window for s in subs)
    by_worker = [sum(s.in_window for s in subs if s.worker == i) for i in range(len(workers))]
    return {
        "procs": len(workers), "sockets": len(subs), "hot_subs": opts.hot_subs,
        "cold_topics": opts.cold_topics, "hot_rate": opts.hot_rate,
        "cold_rate": opts.cold_rate, "seconds": round(wall, 2),
        "publishes_per_s": run.window_publishes / wall,
        "broker_deliveries_per_s": run.window_broker / wall,
        "deliveries_per_s": window / wall,
        "p50_us": pct(run.latencies, 0.5), "p99_us": pct(run.latencies, 0.99),
        "first_p50_us": pct(list(run.firsts.values()), 0.5),
        "first_p99_us": pct(list(run.firsts.values()), 0.99),
        "lost": lost, "duplicated": run.duplicated, "out_of_order": run.reordered,
        "wrong_topic": run.wrong, "closed_by_server": closed,
        "worker_cores": [round(worker_cpu[p] / wall, 3) for p in pids],
        "worker_deliveries_per_s": [round(n / wall) for n in by_worker],
        "worker_us_per_delivery": round(sum(worker_cpu.values()) / max(1, window) * 1e6, 2),
        "redis_cores": {p: round(v / wall, 3) for p, v in redis_cpu.items()},
        "redis_us_per_publish": round(sum(redis_cpu.values()) / max(1, run.window_publishes)
                                      * 1e6, 2) if redis_cpu else None,
        **probed,
        "client_cores": round(own / wall, 3), "others_cores": round(others, 2),
        "conditions": machine(),
    }


def load_main(opts: argparse.Namespace) -> int:
    if opts.smoke:
        opts.procs, opts.hot_subs, opts.cold_topics = 2, 20, 20
        opts.hot_rate, opts.cold_rate, opts.warmup, opts.duration = 20, 50, 0.5, 1.5
    workdir = Path(tempfile.mkdtemp(prefix="legato-scale-"))
    os.sched_setaffinity(0, {harness.LOADGEN_CPU})
    harness.raise_nofile()
    with ExitStack() as stack:
        hub, redis_ports = opts.hub, []
        if opts.cluster:
            from redis_cluster import RedisCluster  # noqa: PLC0415

            cluster = RedisCluster(workdir / "cluster", masters=3)
            cluster.start()
            stack.callback(cluster.stop)
            for proc in cluster.processes.values():
                os.sched_setaffinity(proc.pid, {harness.SERVER_CPU})
            hub, redis_ports = cluster.url, cluster.master_ports()
        elif hub is None:
            redis = hubbench.RedisServer(workdir, {harness.SERVER_CPU})
            stack.callback(redis.stop)
            hub, redis_ports = redis.url, [redis.port]
        elif hub.startswith("redis://"):  # its CPU is read too, when it is local
            redis_ports = [urlsplit(hub).port or 6379]
        if hub.startswith("memory:") and opts.procs > 1:
            sys.exit("memory:// does not cross processes: --procs 1, or a Redis URL")
        from legato.hub import backend_for  # noqa: PLC0415

        try:
            backend_for(hub)
        except ValueError as exc:
            print(f"cannot run on {hub}: {exc} (not built in this checkout)")
            return 2
        workers = []
        for i in range(opts.procs):
            worker = hubbench.HubServer(worker_name(hub, i), workdir)
            stack.callback(worker.stop)
            workers.append(worker)
        for worker in workers:
            worker.wait_ready()
        command = "python bench/scale.py " + shlex.join(sys.argv[1:])
        print(f"$ {command}\nlegato at {git_head()}; hub {hub}; {opts.procs} workers and "
              f"Redis on CPU {harness.SERVER_CPU}, this client on CPU {harness.LOADGEN_CPU}; "
              f"{machine()}", flush=True)
        res = asyncio.run(load_run(opts, workers, redis_ports))
    res["command"], res["hub"] = command, hub.split("?")[0]
    for key, value in res.items():
        print(f"  {key:26} {shown(value)}")
    if opts.json:
        Path(opts.json).write_text(json.dumps(res, indent=1))
    bad = res["lost"] or res["duplicated"] or res["out_of_order"] or res["wrong_topic"] \
        or res["closed_by_server"] or not res["deliveries_per_s"] \
        or res.get("probe_faults") or "probe_error" in res
    print("FAIL: lost, duplicated, reordered or refused messages" if bad else
          f"ok: lost {res['lost']} duplicated {res['duplicated']} "
          f"out-of-order {res['out_of_order']}")
    keep_or_remove(workdir, bool(bad))
    return 1 if bad else 0


def shown(value: Any) -> Any:
    """A float with three significant digits at least (0.013 core is not "0.0")."""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    return value


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    inp = sub.add_parser("inputs", help="the measured inputs a-f")
    inp.add_argument("--only", help="parts, e.g. a,b or c,d,f (default all)")
    inp.add_argument("--quick", action="store_true", help="smaller and shorter (smoke)")
    inp.add_argument("--cluster", action="store_true",
                     help="c) and d) also on one master of a local Redis Cluster")
    inp.add_argument("--replicas", action="store_true",
                     help="with --cluster: a replica per master, and c) with and "
                          "without WAIT for it")
    inp.add_argument("--json", metavar="PATH")
    load = sub.add_parser("load", help="the scaled-down load test")
    load.add_argument("--hub", help="memory://, redis://host:port/db (default: a "
                      "redis-server of its own), redis+cluster://...")
    load.add_argument("--cluster", action="store_true",
                      help="a local Redis Cluster of its own (3 masters), redis+cluster://")
    load.add_argument("--procs", type=int, default=6, help="worker processes (default 6)")
    load.add_argument("--hot-subs", type=int, default=1200,
                      help="sockets on the hot topic, spread over the workers")
    load.add_argument("--cold-topics", type=int, default=1000,
                      help="cold topics, 1-3 sockets each")
    load.add_argument("--hot-rate", type=float, default=20.0, help="hot topic msg/s")
    load.add_argument("--cold-rate", type=float, default=300.0,
                      help="msg/s over all the cold topics")
    load.add_argument("--warmup", type=float, default=3.0)
    load.add_argument("--duration", type=float, default=20.0)
    load.add_argument("--seed", type=int, default=16)
    load.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    load.add_argument("--json", metavar="PATH")
    srv = sub.add_parser("serve", help=argparse.SUPPRESS)
    srv.add_argument("--port", type=int, required=True)
    probe = sub.add_parser("probe", help=argparse.SUPPRESS)
    probe.add_argument("--ports", required=True)
    probe.add_argument("picks", nargs="+", metavar="TOPIC:WORKER")
    opts = ap.parse_args()
    if opts.mode == "serve":
        serve(opts.port)
        return 0
    if opts.mode == "probe":
        asyncio.run(probe_main(opts))
        return 0
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs (workers and Redis on CPU 1, the clients on CPU 0)")
    if opts.mode == "inputs":
        opts.only = "".join(opts.only.split(",")) if opts.only else None
        return inputs_main(opts)
    return load_main(opts)


if __name__ == "__main__":
    sys.exit(main())
