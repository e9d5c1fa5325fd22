"""The server's ``lost`` frame (docs/channels.md): a client that stays connected while
the hub's Redis restarts empty learns it at once, keeps the topic's new epoch, and goes
on receiving; its next resume is from the new epoch, not a second "lost"."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ports import free_port
from servers import LegatoProcess, RedisProcess

from legato.client import Client, Lost


async def test_a_redis_restart_with_an_empty_history_is_reported_as_lost_while_connected(
        redis: RedisProcess, processes: list[LegatoProcess], tmp_path: Path) -> None:
    server = LegatoProcess(free_port(), f"{redis.url}?prefix=lost", tmp_path / "legato.log")
    processes.append(server)
    server.start()
    async with Client(server.url, base_delay=0.05, max_delay=0.3) as client:
        room = await client.join("room:lost")
        old_epoch = room.epoch
        await room.publish("before")
        events: list[object] = []
        room.on_lost(events.append)
        redis.kill()  # no persistence: it comes back empty
        redis.start()
        for _ in range(200):
            if events:
                break
            await asyncio.sleep(0.05)
        assert events == [Lost("epoch", None)]
        assert room.epoch != old_epoch and client.state == "connected"
        new_id = await room.publish("after")
        got = [m async for m in _take(room, 2)]
        assert [m.data for m in got] == ["before", "after"] and got[-1].id == new_id


async def _take(room: object, n: int):  # type: ignore[no-untyped-def]
    count = 0
    async for message in room:  # type: ignore[attr-defined]
        yield message
        count += 1
        if count == n:
            return
