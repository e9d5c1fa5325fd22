"""The client's own promises, against the in-process server: receive buffer overflow,
state changes, what waits for a connection, and what a drop does to joins and leaves
(docs/channels.md, States and Reconnecting; legato.client.topic on the buffer)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ports import free_port
from servers import WS_PATH, StallingProxy

from legato.client import ChannelError, Client, Lost, Message, StateChange


def nowhere() -> str:
    return f"ws://127.0.0.1:{free_port()}{WS_PATH}"


async def until(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_a_full_receive_buffer_drops_the_oldest_and_says_so_once(live: str, room: str
                                                                      ) -> None:
    async with Client(live, receive_limit=2) as client:
        topic = await client.join(room)
        seen: list[Message] = []
        topic.on_message(seen.append)
        lost: list[Lost] = []
        topic.on_lost(lost.append)
        ids = [await topic.publish(n) for n in range(5)]
        await until(lambda: len(seen) == 5)
        assert topic.dropped == 3
        assert lost == [Lost("overflow")]
        iterator = topic.messages()
        assert [(await iterator.__anext__()).id for _ in range(2)] == ids[3:]


async def test_state_changes_reach_callbacks_and_iterators_in_order(live: str) -> None:
    client = Client(live)
    changes: list[StateChange] = []
    client.on_state(changes.append)
    stream = client.state_changes()
    assert client.state == "disconnected"
    await client.connect()
    await client.close()
    assert [(c.previous.value, c.state.value) for c in changes] == [
        ("disconnected", "connecting"), ("connecting", "connected"), ("connected", "closed")]
    assert [c async for c in stream] == changes  # and it ends with the client


async def test_async_callbacks_are_scheduled(live: str, room: str) -> None:
    async with Client(live) as client:
        topic = await client.join(room)
        done = asyncio.Event()

        async def on_message(message: Message) -> None:
            await asyncio.sleep(0)
            done.set()

        topic.on_message(on_message)
        await topic.publish("x")
        await asyncio.wait_for(done.wait(), 5)


async def test_a_callback_that_raises_does_not_break_delivery(live: str, room: str) -> None:
    async with Client(live) as client:
        topic = await client.join(room)
        topic.on_message(lambda m: 1 / 0)
        await topic.publish("still delivered")
        message = await asyncio.wait_for(topic.messages().__anext__(), 5)
        assert message.data == "still delivered"


async def test_join_before_connect_waits_for_the_connection(live: str, room: str) -> None:
    client = Client(live)
    joining = asyncio.ensure_future(client.join(room))
    await asyncio.sleep(0.05)
    assert not joining.done()
    await client.connect()
    topic = await asyncio.wait_for(joining, 5)
    assert topic.state == "joined"
    await client.close()


async def test_close_fails_what_waits_with_closed() -> None:
    client = Client(nowhere(), base_delay=0.05)
    connecting = asyncio.ensure_future(client.connect())
    joining = asyncio.ensure_future(client.join("room:a"))
    calling = asyncio.ensure_future(client.call("add", {"a": 1, "b": 2}))
    await asyncio.sleep(0.05)
    await client.close()
    for task in (connecting, joining, calling):
        with pytest.raises(ChannelError) as caught:
            await task
        assert caught.value.code == "closed"
    assert client.state == "closed"


async def test_a_call_that_never_got_a_connection_times_out_at_its_deadline() -> None:
    client = Client(nowhere(), base_delay=0.05)
    asyncio.ensure_future(client.connect()).add_done_callback(lambda f: f.exception())
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ChannelError) as caught:
        await client.call("add", {"a": 1, "b": 2}, timeout=0.2)
    assert caught.value.code == "timeout"
    assert loop.time() - start < 0.8  # no grace for a call that was never sent
    await client.close()


async def test_a_cancelled_join_forgets_the_topic() -> None:
    client = Client(nowhere(), base_delay=0.05)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.join("room:a"), 0.1)
    assert client.topics == {}
    await client.close()


async def test_after_a_drop_joined_topics_rejoin_and_left_ones_do_not(live_port: int
                                                                      ) -> None:
    async with StallingProxy(live_port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
        async with Client(url, base_delay=0.05, max_delay=0.1) as client, \
                Client(f"ws://127.0.0.1:{live_port}{WS_PATH}") as other:
            changes: list[StateChange] = []
            client.on_state(changes.append)
            kept = await client.join("room:kept")
            gone = await client.join("room:gone")
            proxy.drop()
            await until(lambda: any(c.state == "disconnected" for c in changes))
            await gone.leave()  # while disconnected: nothing to tell the server
            assert gone.state == "left"
            await until(lambda: kept.state == "joined" and client.state == "connected")
            assert set(client.topics) == {"room:kept"}
            members = await (await other.join("room:gone")).presence()
            assert client.conn_id not in [m.conn for m in members]
            members = await (await other.join("room:kept")).presence()
            assert client.conn_id in [m.conn for m in members]


async def test_leaving_while_disconnected_fails_the_topics_waiting_publishes() -> None:
    client = Client(nowhere(), base_delay=0.05)
    asyncio.ensure_future(client.connect()).add_done_callback(lambda f: f.exception())
    joining = asyncio.ensure_future(client.join("room:a"))
    await asyncio.sleep(0.02)
    [topic] = client.topics.values()
    publishing = asyncio.ensure_future(topic.publish("never"))
    await asyncio.sleep(0)
    await topic.leave()
    with pytest.raises(ChannelError) as caught:
        await publishing
    assert caught.value.code == "not_joined"
    joining.cancel()
    await client.close()
