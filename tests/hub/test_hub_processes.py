"""The Redis hub across real processes: ``legato run hub_apps:app`` two, three and four
times over (separate processes on their own ports, or ``--workers 4`` on one port), one
Redis prefix per test, clients from the ``websockets`` library and httpx (SPEC §6, P3-P6).

What "local delivery goes on while Redis is down" means here: every publish goes through
Redis (it gives the id and the order), so while Redis is down nothing is published —
``publish`` raises ``HubUnavailable`` and the app answers 503 — but the open connections
stay open, are served (the app answers them on the same connection), and receive again
once the hub has reconnected.

Resuming after a Redis restart needs the streams to outlive the restart: the test's own
redis-server runs without persistence, so the test SAVEs a snapshot into its directory
right before killing it, and the restarted server loads it (what ``appendonly`` or
``save`` would give a production Redis). Every process started here is stopped by its
PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from ports import free_port, port_is_open
from redis_servers import RedisServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

HERE = Path(__file__).parent
FEED_BUFFER = 32  # hub_apps.FEED_BUFFER: what a "feed" subscriber may have waiting
WAIT = 10.0  # seconds any one condition may take before the test fails
SERVING = "legato serving on"  # each worker logs it once it accepts connections


# ---------------------------------------------------------------- legato processes


@dataclass
class Legato:
    """One ``legato run hub_apps:app`` (a supervisor, with ``--workers``)."""

    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, by PID: no shutdown, no goodbye to Redis (a crashed host)."""
        self.proc.kill()
        self.proc.wait(5)


def children(pid: int) -> dict[int, str]:
    """Live children of ``pid`` (a supervisor's workers), read from /proc, each with its
    start time: a PID is killed later only if it still names the same process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found[int(entry)] = fields[19]  # starttime (proc(5), field 22)
    return found


def started_at(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except OSError:
        return None


@contextmanager
def legato_processes(hub_url: str, count: int, logs: Path, workers: int = 1
                     ) -> Iterator[list[Legato]]:
    """``count`` processes serving hub_apps:app on free ports, started together, once
    every worker says it is serving (the port alone opens before a supervisor's workers
    are up); on the way out SIGTERM, wait, then SIGKILL what is left (workers included),
    every one by its PID."""
    env = dict(os.environ, LEGATO_TEST_HUB=hub_url)
    started: list[Legato] = []
    worker_pids: dict[int, str] = {}
    try:
        for _ in range(count):
            port = free_port()
            stderr_path = logs / f"legato-{port}.stderr"
            with open(stderr_path, "wb") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "legato", "run", "hub_apps:app",
                     "--port", str(port), "--workers", str(workers)],
                    cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            started.append(Legato(proc, port, stderr_path))
        deadline = time.monotonic() + 20
        for legato in started:
            while legato.stderr().count(SERVING) < workers or not port_is_open(legato.port):
                if legato.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"legato did not start:\n{legato.stderr()}")
                time.sleep(0.05)
            worker_pids.update(children(legato.proc.pid))
        yield started
    finally:
        for legato in started:
            worker_pids.update(children(legato.proc.pid))
            if legato.proc.poll() is None:
                legato.proc.send_signal(signal.SIGTERM)
        for legato in started:
            try:
                legato.proc.wait(10)
            except subprocess.TimeoutExpired:
                legato.proc.kill()
                legato.proc.wait(5)
        for pid, start_time in worker_pids.items():
            if started_at(pid) == start_time:  # a worker outlived its supervisor
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def hub_url(redis_url: str, prefix: str) -> str:
    """The shared Redis, this test's prefix, members of a dead process gone within 1 s."""
    return f"{redis_url}?prefix={prefix}&presence_ttl=1"


@pytest.fixture
def start(tmp_path: Path, prefix: str) -> Iterator[Callable[..., list[Legato]]]:
    """``start(hub_url, count, workers=1)``: legato processes, stopped after the test and
    before ``prefix`` deletes the test's keys (set up first, so torn down last)."""
    with ExitStack() as stack:
        def start(hub_url: str, count: int, workers: int = 1) -> list[Legato]:
            return stack.enter_context(legato_processes(hub_url, count, tmp_path, workers))

        yield start


# ---------------------------------------------------------------- clients


class Client:
    """A ``websockets`` client of ``/ws/{topic}``: records the hub's envelopes and the
    app's own replies as they arrive."""

    def __init__(self, conn: ClientConnection, name: str) -> None:
        self.conn = conn
        self.name = name
        self.ready: dict[str, Any] | None = None
        self.envelopes: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, legato: Legato, topic: str, name: str,
                   since: str | None = None) -> Client:
        """Connected and subscribed (the app said "ready")."""
        query = f"?name={name}" + (f"&since={since}" if since else "")
        client = cls(await connect(legato.ws(f"/ws/{topic}{query}"), max_size=None), name)
        await client.wait_until(lambda: client.ready is not None)
        return client

    async def _read(self) -> None:
        try:
            async for frame in self.conn:
                message = json.loads(frame)
                if "topic" in message and "id" in message:
                    self.envelopes.append(message)
                elif "ready" in message:
                    self.ready = message
                else:
                    self.replies.append(message)
                self.changed.set()
        except ConnectionClosed:
            pass  # its server was killed: the connection ended without a close frame
        finally:
            self.changed.set()

    @property
    def pid(self) -> int:
        assert self.ready is not None
        return int(self.ready["pid"])

    @property
    def texts(self) -> list[str]:
        return [e["data"]["text"] for e in self.envelopes]

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.envelopes]

    async def wait_until(self, condition: Callable[[], Any]) -> None:
        """Until ``condition()`` holds, checked whenever a message arrives; fails after
        WAIT seconds, or at once if the connection ended first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not condition():
            left = deadline - loop.time()
            assert left > 0 and not self.reader.done(), (
                f"{self.name}: ready={self.ready}, {len(self.envelopes)} envelope(s), "
                f"last replies {self.replies[-3:]}, connection ended: {self.reader.done()}")
            self.changed.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def wait_for_texts(self, count: int) -> list[str]:
        await self.wait_until(lambda: len(self.envelopes) >= count)
        return self.texts

    async def wait_for_data(self, count: int) -> list[Any]:
        await self.wait_until(lambda: len(self.envelopes) >= count)
        return [e["data"] for e in self.envelopes]

    async def wait_for_reply(self, key: str) -> dict[str, Any]:
        """The app's last reply, once it has ``key`` ("published", "error")."""
        await self.wait_until(lambda: self.replies and key in self.replies[-1])
        return self.replies[-1]

    async def close(self) -> None:
        await self.conn.close()
        await self.reader


async def publish(http: httpx.AsyncClient, legato: Legato, topic: str,
                  text: str) -> httpx.Response:
    return await http.post(f"{legato.http}/publish/{topic}", json={"text": text})


async def published_id(http: httpx.AsyncClient, legato: Legato, topic: str,
                       text: str) -> str:
    response = await publish(http, legato, topic, text)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


async def presence_names(http: httpx.AsyncClient, legato: Legato, topic: str) -> set[str]:
    response = await http.get(f"{legato.http}/presence/{topic}")
    assert response.status_code == 200, response.text
    return {member["name"] for member in response.json()}


async def poll(condition: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Until ``await condition()`` is true, every 50 ms, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"still not true after {timeout} s"
        await asyncio.sleep(0.05)


async def presence_is(http: httpx.AsyncClient, legato: Legato, names: set[str]) -> bool:
    return await presence_names(http, legato, "lobby") == names


async def wait_for_event(http: httpx.AsyncClient, legato: Legato, kind: str) -> list[str]:
    """The kinds of the hub's events in ``legato``, once ``kind`` is among them."""
    kinds: list[str] = []

    async def seen() -> bool:
        kinds[:] = [k for k, _ in (await http.get(f"{legato.http}/events")).json()]
        return kind in kinds

    await poll(seen)
    return kinds


def stalled_subscriber(legato: Legato, topic: str) -> socket.socket:
    """A raw socket that completes the handshake, reads up to "ready", then never reads
    again (a tiny receive buffer, so the server's transport pauses quickly)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", legato.port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key
    sock.sendall(f"GET /ws/{topic}?name=stalled HTTP/1.1\r\nHost: x\r\n"
                 f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    seen = b""
    while b'"ready"' not in seen:
        chunk = sock.recv(1)
        assert chunk, seen
        seen += chunk
    return sock


# ---------------------------------------------------------------- P4: publish/subscribe


async def test_P4_a_message_published_on_one_process_reaches_subscribers_on_all_three(
        start: Callable[..., list[Legato]], hub_url: str) -> None:
    processes = start(hub_url, 3)
    clients = [await Client.join(p, "lobby", name)
               for p, name in zip(processes, "abc", strict=True)]
    assert len({c.pid for c in clients}) == 3
    async with httpx.AsyncClient(timeout=5) as http:
        for client in clients:  # a WebSocket message to one process...
            await client.conn.send(f"hello from {client.name}")
            await client.wait_for_reply("published")
        said = ["hello from a", "hello from b", "hello from c"]
        for client in clients:  # ...reaches the subscribers of every process
            assert await client.wait_for_texts(3) == said
        posted = await published_id(http, processes[1], "lobby", "posted to b")
        for client in clients:
            assert await client.wait_for_texts(4) == [*said, "posted to b"]
            assert client.ids[-1] == posted
        # One order for everyone: Redis gave the ids.
        assert clients[0].ids == clients[1].ids == clients[2].ids
        assert [r["published"] for c in clients for r in c.replies] == clients[0].ids[:3]
    for client in clients:
        await client.close()


# ---------------------------------------------------------------- P5: history and resume


async def test_P5_a_client_resuming_with_since_gets_what_it_missed_in_order_then_live(
        start: Callable[..., list[Legato]], hub_url: str) -> None:
    a, b, c = start(hub_url, 3)
    async with httpx.AsyncClient(timeout=5) as http:
        client = await Client.join(a, "lobby", "ann")
        first = await published_id(http, b, "lobby", "seen")
        await client.wait_for_texts(1)
        assert client.ids == [first]
        await client.close()

        missed = [await published_id(http, b, "lobby", f"missed {n}") for n in range(5)]
        resumed = await Client.join(c, "lobby", "ann", since=first)  # on a third process
        assert await resumed.wait_for_texts(5) == [f"missed {n}" for n in range(5)]
        assert resumed.ids == missed
        live = await published_id(http, a, "lobby", "live")
        assert await resumed.wait_for_texts(6) == [*(f"missed {n}" for n in range(5)), "live"]
        assert resumed.ids == [*missed, live]  # nothing repeated, nothing more
        await resumed.close()


# ---------------------------------------------------------------- P6: presence


async def test_P6_presence_lists_members_of_every_process_and_a_killed_process_members_expire(
        start: Callable[..., list[Legato]], hub_url: str) -> None:
    processes = start(hub_url, 3)
    names = ["ann", "bob", "cid"]
    clients = [await Client.join(p, "lobby", name)
               for p, name in zip(processes, names, strict=True)]
    async with httpx.AsyncClient(timeout=5) as http:
        for legato in processes:
            assert await presence_names(http, legato, "lobby") == set(names)
        processes[2].kill()  # cid's process: it cannot say goodbye
        # presence_ttl=1: its heartbeat stops, its members expire.
        await poll(lambda: presence_is(http, processes[0], {"ann", "bob"}))
        assert await presence_names(http, processes[1], "lobby") == {"ann", "bob"}
    for client in clients:
        await client.close()


# ---------------------------------------------------------------- Redis down and back


async def test_P4_P5_with_redis_down_publish_answers_503_and_after_a_restart_all_flows_again(
        start: Callable[..., list[Legato]], redis_server: RedisServer) -> None:
    a, b = start(f"{redis_server.url}?prefix=t&presence_ttl=1", 2)
    async with httpx.AsyncClient(timeout=5) as http:
        alice = await Client.join(a, "lobby", "alice")
        bob = await Client.join(b, "lobby", "bob")
        carl = await Client.join(a, "lobby", "carl")
        before = await published_id(http, b, "lobby", "before")
        await carl.wait_for_texts(1)
        await carl.close()  # carl leaves: he will resume after the outage
        await published_id(http, a, "lobby", "while carl is away")
        for client in (alice, bob):
            await client.wait_for_texts(2)

        # The streams must outlive the restart: a snapshot, then a crash (module docstring).
        with redis.Redis.from_url(redis_server.url) as direct:
            direct.save()
        redis_server.kill()
        # Publishing answers 503 (HubUnavailable), yet local delivery goes on: each
        # process's own subscribers get what was published there, nobody else does.
        for legato in (a, b):
            response = await publish(http, legato, "lobby", "local only")
            assert response.status_code == 503, response.text
            assert "only" in response.json()["error"]
        for client in (alice, bob):  # still open, still answered, on its own connection
            await client.conn.send("during the outage")
            await client.wait_for_reply("error")
        for legato in (a, b):
            assert "disconnected" in await wait_for_event(http, legato, "disconnected")

        await asyncio.to_thread(redis_server.start)  # same port, same dir: the snapshot
        for legato in (a, b):
            kinds = await wait_for_event(http, legato, "reconnected")
            assert kinds == ["disconnected", "reconnected"]  # reported, and no "gap"
            assert "WARNING legato.hub: hub: lost the Redis pub/sub connection" \
                in legato.stderr()
            assert "WARNING legato.hub: hub: Redis pub/sub reconnected after" \
                in legato.stderr()

        # Both resubscribed: live messages cross processes again, both ways.
        await published_id(http, b, "lobby", "after")
        await alice.conn.send("alice is back")
        expected = ["before", "while carl is away", "local only", "during the outage",
                    "after", "alice is back"]
        for client in (alice, bob):
            assert await client.wait_for_texts(6) == expected
        # carl resumes, on the other process, from the last message he saw: the stream
        # holds what went through Redis (the local-only messages never did).
        carl = await Client.join(b, "lobby", "carl", since=before)
        through_redis = ["while carl is away", "after", "alice is back"]
        assert await carl.wait_for_texts(3) == through_redis
        await published_id(http, a, "lobby", "live")
        assert await carl.wait_for_texts(4) == [*through_redis, "live"]
        # The heartbeats wrote everyone's presence back.
        await poll(lambda: presence_is(http, a, {"alice", "bob", "carl"}))
    for client in (alice, bob, carl):
        await client.close()


# ---------------------------------------------------------------- P4: --workers


async def test_P4_with_four_workers_on_one_port_a_message_from_any_worker_reaches_all(
        start: Callable[..., list[Legato]], hub_url: str) -> None:
    (legato,) = start(hub_url, 1, workers=4)
    clients: list[Client] = []
    for n in range(40):  # the kernel spreads connections; a bounded number of tries
        clients.append(await Client.join(legato, "lobby", f"m{n}"))
        if len({c.pid for c in clients}) >= 2:
            break
    by_pid = {c.pid: c for c in clients}
    assert len(by_pid) >= 2, "every connection landed on the same worker"
    assert legato.proc.pid not in by_pid  # served by workers, not the supervisor
    said = [f"from worker {pid}" for pid in by_pid]
    for client, text in zip(by_pid.values(), said, strict=True):
        await client.conn.send(text)
        await client.wait_for_reply("published")
    async with httpx.AsyncClient(timeout=5) as http:
        await published_id(http, legato, "lobby", "posted")
    for client in clients:
        assert sorted(await client.wait_for_texts(len(said) + 1)) == sorted([*said, "posted"])
        assert client.ids == clients[0].ids  # one order for everyone
    for client in clients:
        await client.close()


# ---------------------------------------------------------------- P3: slow consumers


async def test_P3_a_client_that_stops_reading_delays_no_one_on_its_process_or_another(
        start: Callable[..., list[Legato]], hub_url: str) -> None:
    a, b = start(hub_url, 2)
    count, size = 300, 32_000  # ~9.6 MB: far more than a stalled socket's buffers hold
    stalled = stalled_subscriber(a, "feed")
    try:
        readers = [await Client.join(a, "feed", "reader-a"),
                   await Client.join(b, "feed", "reader-b")]
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"{b.http}/feed/feed",
                                       params={"count": count, "size": size})
            assert response.json() == {"published": count}
            for reader in readers:
                numbers = [data[:5] for data in await reader.wait_for_data(count)]
                # Every message, in order, to the readers of both processes...
                assert numbers == [f"{n:05d}" for n in range(count)]
            # ...while the stalled one, on the same process as reader-a, read nothing
            # more: its bounded buffer filled and overflowed (its policy: drop oldest).
            stats = (await http.get(f"{a.http}/stats")).json()
            assert stats["dropped"] > 0
            assert stats["max_queue_depth"] == FEED_BUFFER
            assert (await http.get(f"{b.http}/stats")).json()["dropped"] == 0
        for reader in readers:
            await reader.close()
    finally:
        stalled.close()
