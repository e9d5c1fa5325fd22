"""Channels across real processes (``legato run``) on a real Redis: reconnect advice at
shutdown, one epoch and one memory of ``once`` keys for every process, and "state lost"
when Redis loses the history."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import websockets
from ports import free_port, port_is_open
from test_hub_processes import Legato, hub_url, start  # noqa: F401 - fixtures

PROTOCOL = ["legato.v1"]


class Peer:
    """A ``websockets`` client speaking legato.v1 frame by frame."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.ref = 0

    @classmethod
    async def open(cls, legato: Legato) -> Peer:
        conn = await websockets.connect(f"ws://127.0.0.1:{legato.port}/_legato/ws",
                                        subprotocols=PROTOCOL)  # type: ignore[list-item]
        peer = cls(conn)
        welcome = await peer.recv()
        assert welcome["t"] == "welcome"
        return peer

    async def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.conn.recv(), 10))
        return frame

    async def ok(self, kind: str, **fields: Any) -> tuple[Any, list[dict[str, Any]]]:
        self.ref += 1
        await self.conn.send(json.dumps({"t": kind, "ref": self.ref, **fields}))
        before = []
        while True:
            frame = await self.recv()
            if frame.get("ref") == self.ref and frame.get("t") in ("reply", "error"):
                assert frame["t"] == "reply", frame
                return frame["data"], before
            before.append(frame)


async def test_a_shutting_down_server_advises_every_channel_client_then_closes_1012(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    peers = [await Peer.open(legato) for _ in range(3)]
    legato.proc.send_signal(signal.SIGTERM)
    for peer in peers:
        advice = await peer.recv()
        assert advice["t"] == "reconnect" and advice["reason"] == "shutdown"
        assert advice["delay"] == 0 and 1000 <= advice["jitter"] <= 30000
        await asyncio.wait_for(peer.conn.wait_closed(), 10)
        assert peer.conn.close_code == 1012


async def test_every_process_gives_a_topic_the_same_epoch_and_honours_once_keys(
        hub_url: str, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    one, two = start(hub_url, 2)
    a, b = await Peer.open(one), await Peer.open(two)
    assert (await a.ok("call", name="pid"))[0] != (await b.ok("call", name="pid"))[0]
    (joined_a, _), (joined_b, _) = (await a.ok("join", topic="room:x"),
                                    await b.ok("join", topic="room:x"))
    assert joined_a["epoch"] == joined_b["epoch"]
    (first, _) = await a.ok("pub", topic="room:x", data="once", once="key-1")
    (again, _) = await b.ok("pub", topic="room:x", data="once", once="key-1")
    assert again["id"] == first["id"]
    await a.conn.close()
    await b.conn.close()


async def test_when_redis_loses_the_history_a_resuming_client_is_told_state_lost(
        hub_url: str, prefix: str, redis_url: str,  # noqa: F811
        start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(hub_url, 1)
    a = await Peer.open(legato)
    (joined, _) = await a.ok("join", topic="room:z")
    (last, _) = await a.ok("pub", topic="room:z", data="before")
    await a.conn.close()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):  # what a restart without persistence does
        client.delete(key)
    client.close()
    b = await Peer.open(legato)
    (reply, before) = await b.ok("join", topic="room:z", since=last["id"],
                                 epoch=joined["epoch"])
    assert reply["lost"] == {"reason": "epoch", "first_kept": None}
    assert reply["epoch"] != joined["epoch"]
    assert [f for f in before if "t" not in f] == []
    await b.conn.close()


@contextmanager
def uvicorn_process(hub: str, logs: Path) -> Iterator[Legato]:
    """hub_apps:app under uvicorn (the App as a plain ASGI app), stopped by its PID."""
    port = free_port()
    stderr_path = logs / f"uvicorn-{port}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "hub_apps:app", "--port", str(port),
             "--log-level", "warning"], cwd=Path(__file__).parent,
            env=dict(os.environ, LEGATO_TEST_HUB=hub), stdout=subprocess.DEVNULL,
            stderr=stderr)
    legato = Legato(proc, port, stderr_path)
    try:
        deadline = time.monotonic() + 20
        while not port_is_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, legato.stderr()
            time.sleep(0.05)
        yield legato
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


async def test_under_uvicorn_channels_join_publish_call_and_end_quietly_with_1012(
        hub_url: str, tmp_path: Path) -> None:  # noqa: F811
    with uvicorn_process(hub_url, tmp_path) as server:
        a, b = await Peer.open(server), await Peer.open(server)
        await a.ok("join", topic="room:u")
        await b.ok("join", topic="room:u")
        (ack, _) = await a.ok("pub", topic="room:u", data="under uvicorn")
        got = await b.recv()
        while "t" in got:
            got = await b.recv()
        assert got == {"topic": "room:u", "id": ack["id"], "data": "under uvicorn"}
        assert isinstance((await b.ok("call", name="pid"))[0], int)
        server.proc.send_signal(signal.SIGTERM)
        for peer in (a, b):
            await asyncio.wait_for(peer.conn.wait_closed(), 10)
            assert peer.conn.close_code == 1012  # uvicorn's own: clients back off
        server.proc.wait(15)
        assert "Traceback" not in server.stderr()


async def test_connected_clients_are_told_state_lost_when_redis_comes_back_empty(
        redis_server: Any, start: Callable[..., list[Legato]]) -> None:  # noqa: F811
    (legato,) = start(f"{redis_server.url}?prefix=lost", 1)
    a = await Peer.open(legato)
    (joined, _) = await a.ok("join", topic="room:r")
    await a.ok("pub", topic="room:r", data="before")
    redis_server.kill()  # no persistence: it comes back empty
    redis_server.start()
    frame = await a.recv()
    while frame.get("t") != "lost":
        frame = await a.recv()
    assert frame["topic"] == "room:r" and frame["reason"] == "epoch"
    assert frame["epoch"] != joined["epoch"]
    await a.ok("pub", topic="room:r", data="after")  # still connected
    await a.conn.close()
