"""Reconnecting (docs/channels.md, Reconnecting and Heartbeat) against real servers:
``legato run`` subprocesses stopped with SIGTERM (reconnect advice, close 1012), a Redis
hub that outlives them, and a proxy that stalls like a half-open TCP connection."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from ports import free_port
from servers import WS_PATH, LegatoProcess, RedisProcess, StallingProxy

from legato.client import (
    ChannelError,
    Client,
    Disconnected,
    Lost,
    Message,
    StateChange,
    Topic,
)


async def collect(topic: Topic, count: int, timeout: float = 10.0) -> list[Message]:
    got: list[Message] = []

    async def read() -> None:
        async for message in topic:
            got.append(message)
            if len(got) == count:
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"{len(got)} of {count} messages arrived: {got}") from None
    return got


async def reconnected(changes: list[StateChange], since: int, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if any(c.state == "connected" for c in changes[since:]):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reconnected: {changes[since:]}")


def fast(url: str, **options: Any) -> Client:
    return Client(url, base_delay=0.05, max_delay=0.3, **options)


def legato(processes: list[LegatoProcess], hub: str, tmp_path: Path) -> LegatoProcess:
    process = LegatoProcess(free_port(), hub, tmp_path / f"legato-{len(processes)}.log")
    processes.append(process)
    process.start()
    return process


async def test_sigterm_advice_then_resume_sends_what_was_missed_once_in_order(
        tmp_path: Path, redis: RedisProcess, processes: list[LegatoProcess]) -> None:
    """Two servers on one Redis hub; the one ``bob`` is on restarts. While bob is away
    ann publishes; bob's own publish waits in his queue. After the restart bob rejoins
    with since + epoch: the hub replays what he missed, then his publish goes out."""
    hub = f"{redis.url}?prefix=client-test"
    first, second = legato(processes, hub, tmp_path), legato(processes, hub, tmp_path)
    async with fast(first.url) as ann, fast(second.url) as bob:
        changes: list[StateChange] = []
        bob.on_state(changes.append)
        ann_room, bob_room = await ann.join("room:r"), await bob.join("room:r")
        lost: list[Lost] = []
        bob_room.on_lost(lost.append)
        ids = [await ann_room.publish(n) for n in range(3)]
        assert [m.id for m in await collect(bob_room, 3)] == ids

        await asyncio.to_thread(second.stop)
        ended = [c for c in changes if c.state == "disconnected"]
        assert isinstance(ended[0].error, Disconnected)
        assert ended[0].error.close_code == 1012  # after the reconnect advice
        ids += [await ann_room.publish(n) for n in range(3, 5)]
        bobs = asyncio.ensure_future(bob_room.publish("bob's, queued"))
        mark = len(changes)
        await asyncio.to_thread(second.start)
        await reconnected(changes, mark)
        ids.append(await bobs)

        got = await collect(bob_room, 3)
        assert [m.id for m in got] == ids[3:]
        assert [m.data for m in got] == [3, 4, "bob's, queued"]
        assert bob_room.resumed is True and lost == []
        assert [m.id for m in await collect(ann_room, 6)] == ids
        await asyncio.sleep(0.2)  # nothing twice: no more arrive
        assert bob_room.dropped == 0
        assert [m.id async for m in _drain(bob_room)] == []


async def _drain(topic: Topic) -> Any:
    """What is buffered now, without waiting."""
    while True:
        try:
            yield await asyncio.wait_for(topic.messages().__anext__(), 0.05)
        except (asyncio.TimeoutError, StopAsyncIteration):
            return


async def test_restart_with_a_memory_hub_reports_epoch_loss_and_flushes_the_queue(
        tmp_path: Path, processes: list[LegatoProcess]) -> None:
    """A memory hub's history dies with its process: the rejoin reports ``lost``
    (reason ``epoch``). A call in flight fails with ``disconnected``; publishes and a
    call made while disconnected wait (up to queue_limit, then ``queue_full``) and go out
    after the rejoin, in order."""
    server = legato(processes, "memory://", tmp_path)
    async with fast(server.url, queue_limit=3) as client:
        changes: list[StateChange] = []
        client.on_state(changes.append)
        room = await client.join("room:m")
        lost: list[Lost] = []
        room.on_lost(lost.append)
        first_epoch = room.epoch
        await room.publish("before")
        slow_call = asyncio.ensure_future(client.call("sleep", 30))
        await asyncio.sleep(0.2)  # in flight

        await asyncio.to_thread(server.stop)
        with pytest.raises(ChannelError) as caught:
            await slow_call
        assert caught.value.code == "disconnected"
        queued = [asyncio.ensure_future(room.publish(n)) for n in (1, 2)]
        queued_call = asyncio.ensure_future(client.call("add", {"a": 1, "b": 2}))
        await asyncio.sleep(0)
        with pytest.raises(ChannelError) as full:
            await room.publish("one too many")
        assert full.value.code == "queue_full"
        mark = len(changes)
        await asyncio.to_thread(server.start)
        await reconnected(changes, mark)

        assert await queued_call == 3
        ids = [await p for p in queued]
        got = await collect(room, 3)
        assert [m.data for m in got] == ["before", 1, 2]
        assert [m.id for m in got[1:]] == ids
        assert [x.reason for x in lost] == ["epoch"]
        assert room.epoch != first_epoch


async def test_heartbeat_finds_a_stalled_connection_dead_and_a_lost_ack_is_not_doubled(
        live_port: int, room: str) -> None:
    """The proxy stops forwarding the server's frames: the publish reached the server
    but its ack did not come back. No frame within heartbeat + grace: the client drops
    the socket, reconnects, resumes (the message arrives once) and resends the publish
    with the same ``once`` (answered with the first id, not published again)."""
    async with StallingProxy(live_port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
        async with fast(url, heartbeat=0.1, heartbeat_grace=0.3) as client:
            changes: list[StateChange] = []
            client.on_state(changes.append)
            topic = await client.join(room)
            await topic.publish("seen")
            await collect(topic, 1)
            proxy.stall(upstream=False)
            message_id = await asyncio.wait_for(topic.publish("ack lost"), 5)
            dead = [c.error for c in changes if c.state == "disconnected"]
            assert isinstance(dead[0], Disconnected)
            assert "presumed dead" in dead[0].message
            [again] = await collect(topic, 1)
            assert (again.id, again.data) == (message_id, "ack lost")
            await topic.publish("after")
            [after] = await collect(topic, 1)
            assert after.data == "after"  # "ack lost" did not come a second time
            assert proxy.connections == 2
