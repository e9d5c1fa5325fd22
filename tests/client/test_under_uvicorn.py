"""legato.client against the App under uvicorn (the App as a plain ASGI app), on the
memory hub and on a real Redis, over the WebSocket and over the SSE fallback: the same
behaviour as on legato's own server; a uvicorn restart (its own close 1012, no advice
frame) is followed by a reconnect and a resume from Redis history."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ports import free_port, port_is_open
from servers import WS_PATH, RedisProcess

from legato.client import Client

HERE = Path(__file__).parent


@contextmanager
def uvicorn(port: int, hub: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "channel_apps:app", "--port", str(port),
             "--log-level", "warning"], cwd=HERE, env=dict(os.environ, LEGATO_TEST_HUB=hub),
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not port_is_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_under_uvicorn_join_publish_call_presence_work_as_on_legatos_server(
        transport: str, backend: str, redis: RedisProcess, tmp_path: Path) -> None:
    hub = "memory://" if backend == "memory" else f"{redis.url}?prefix=uv"
    port = free_port()
    with uvicorn(port, hub, tmp_path / "uvicorn.log"):
        url = f"ws://127.0.0.1:{port}{WS_PATH}"
        async with Client(url, transport=transport) as a, Client(url) as b:
            room_a = await a.join("room:uv", data={"name": "a"})
            room_b = await b.join("room:uv", data={"name": "b"})
            sent = await room_a.publish({"text": "under uvicorn"})
            got = await asyncio.wait_for(anext(aiter(room_b)), 10)
            assert (got.id, got.data) == (sent, {"text": "under uvicorn"})
            assert await a.call("add", {"a": 2, "b": 3}) == 5
            names = sorted(m.data["name"] for m in await room_a.presence())
            assert names == ["a", "b"]
            assert a.transport == transport


async def test_under_uvicorn_a_restart_is_followed_by_a_reconnect_and_a_resume_from_redis(
        redis: RedisProcess, tmp_path: Path) -> None:
    hub, port = f"{redis.url}?prefix=uvr", free_port()
    log = tmp_path / "uvicorn.log"
    with uvicorn(port, hub, log) as first:
        url = f"ws://127.0.0.1:{port}{WS_PATH}"
        reader = Client(url, base_delay=0.05, max_delay=0.3)
        writer = Client(url, base_delay=0.05, max_delay=0.3)
        await reader.connect()
        await writer.connect()
        room = await reader.join("room:restart")
        out = await writer.join("room:restart")
        ids = [await out.publish(n) for n in range(3)]
        first.terminate()
        first.wait(15)
    with uvicorn(port, hub, log):
        ids += [await out.publish(n) for n in range(3, 6)]  # queued, then sent once
        got = []

        async def read() -> None:
            async for message in room:
                got.append(message)
                if len(got) == 6:
                    return

        await asyncio.wait_for(read(), 20)
        assert [m.id for m in got] == ids and [m.data for m in got] == list(range(6))
        await reader.close()
        await writer.close()
