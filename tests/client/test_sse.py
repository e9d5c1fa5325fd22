"""The fallback transport (docs/channels.md, "The fallback transport: SSE down, POST up")
with ``transport="sse"`` forced, against real servers: the same requests and answers as
over the WebSocket, a cut stream resumed with Last-Event-ID, a SIGTERM restart on Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from servers import WS_PATH, LegatoProcess, RedisProcess, StallingProxy
from test_basics import next_messages
from test_reconnect import _drain, collect, fast, legato, reconnected

from legato.client import ChannelError, Client, Disconnected, Lost, PresenceEvent, StateChange


async def test_over_sse_join_publish_ack_call_and_errors_work_as_over_the_websocket(
        live: str, room: str) -> None:
    async with Client(live, transport="sse") as client:
        assert (client.state, client.transport) == ("connected", "sse")
        topic = await client.join(room, data={"name": "ann"})
        assert topic.info == {"room": room.split(":", 1)[1]}
        message_id = await topic.publish({"text": "hi"})
        [message] = await next_messages(topic, 1)
        assert (message.id, message.data) == (message_id, {"text": "hi"})
        assert await client.call("add", {"a": 2, "b": 3}) == 5
        with pytest.raises(ChannelError) as caught:
            await client.call("boom")
        assert caught.value.code == "error" and "boom went the handler" in caught.value.message
        with pytest.raises(ChannelError) as refused:
            await client.join("room:secret")
        assert refused.value.code == "forbidden"


async def test_an_sse_client_and_a_websocket_client_see_each_others_presence_and_messages(
        live: str, room: str) -> None:
    async with Client(live, transport="sse") as ann, Client(live) as bob:
        assert (ann.transport, bob.transport) == ("sse", "websocket")
        ann_room = await ann.join(room, data={"name": "ann"})
        events: list[PresenceEvent] = []
        seen_bob = asyncio.Event()

        def on_presence(event: PresenceEvent) -> None:
            events.append(event)
            if event.member.conn == bob.conn_id:
                seen_bob.set()

        ann_room.on_presence(on_presence)
        bob_room = await bob.join(room, data={"name": "bob"})
        await asyncio.wait_for(seen_bob.wait(), 5)
        members = {m.conn: m.data for m in await ann_room.presence()}
        assert members == {ann.conn_id: {"name": "ann"}, bob.conn_id: {"name": "bob"}}
        ids = [await ann_room.publish(1), await bob_room.publish(2)]
        for topic in (ann_room, bob_room):
            assert [m.id for m in await next_messages(topic, 2)] == ids


async def test_closing_an_sse_client_tells_the_server_so_its_presence_leaves_at_once(
        live: str, room: str) -> None:
    async with Client(live) as bob:
        bob_room = await bob.join(room, data={"name": "bob"})
        left = asyncio.Event()
        bob_room.on_presence(lambda e: left.set() if e.kind == "left" else None)
        ann = Client(live, transport="sse")
        await ann.connect()
        await ann.join(room, data={"name": "ann"})
        await ann.close()
        await asyncio.wait_for(left.wait(), 5)  # not after the server's 30 s linger
        assert [m.data for m in await bob_room.presence()] == [{"name": "bob"}]


async def test_many_publishes_at_once_go_up_in_batches_of_at_most_100_in_order(
        live: str, room: str) -> None:
    """250 publishes made together: while one POST is out the next ones wait and leave
    together (the server takes at most 100 frames per POST)."""
    async with Client(live, transport="sse") as client:
        topic = await client.join(room)
        ids = await asyncio.gather(*(topic.publish(n) for n in range(250)))
        got = await next_messages(topic, 250)
        assert [m.data for m in got] == list(range(250))
        assert [m.id for m in got] == list(ids)


async def test_a_cut_stream_resumes_with_last_event_id_without_a_welcome_and_loses_nothing(
        live_port: int, room: str) -> None:
    """The proxy drops every connection: the client GETs the stream again with
    ``Last-Event-ID`` within the server's linger and the same connection goes on (same
    ``conn``, no welcome, no rejoin); what was published meanwhile arrives once, in order."""
    async with StallingProxy(live_port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
        async with fast(url, transport="sse") as client, Client(
                f"ws://127.0.0.1:{live_port}{WS_PATH}") as publisher:
            changes: list[StateChange] = []
            client.on_state(changes.append)
            topic = await client.join(room)
            lost: list[Lost] = []
            topic.on_lost(lost.append)
            other = await publisher.join(room)
            ids = [await other.publish(0)]
            await collect(topic, 1)
            conn, epoch = client.conn_id, topic.epoch
            await asyncio.sleep(0.1)  # nothing in flight: the cut is clean

            proxy.drop()
            ids += [await other.publish(n) for n in (1, 2)]
            mark = len(changes)
            await reconnected(changes, mark - 1)
            ids.append(await topic.publish(3))
            got = await collect(topic, 3)
            assert [m.id for m in got] == ids[1:]
            assert [m.data for m in got] == [1, 2, 3]
            assert client.conn_id == conn and topic.epoch == epoch and lost == []
            assert [c.state for c in changes] == ["disconnected", "connecting", "connected"]
            assert await client.call("add", {"a": 1, "b": 1}) == 2
            await asyncio.sleep(0.2)
            assert [m.id async for m in _drain(topic)] == []


async def test_over_sse_sigterm_advice_then_resume_from_redis_sends_what_was_missed_once(
        tmp_path: Path, redis: RedisProcess, processes: list[LegatoProcess]) -> None:
    """Bob (SSE) is on the server that restarts; ann (WebSocket) on another on the same
    Redis hub. The stream ends with the advice and a ``close`` 1012 event; bob comes back
    with a new connection (welcome), rejoins with since + epoch, and gets what ann
    published meanwhile, then his own queued publish: once each, in order."""
    hub = f"{redis.url}?prefix=client-sse"
    first, second = legato(processes, hub, tmp_path), legato(processes, hub, tmp_path)
    async with fast(first.url) as ann, fast(second.url, transport="sse") as bob:
        changes: list[StateChange] = []
        bob.on_state(changes.append)
        ann_room, bob_room = await ann.join("room:s"), await bob.join("room:s")
        lost: list[Lost] = []
        bob_room.on_lost(lost.append)
        ids = [await ann_room.publish(n) for n in range(3)]
        assert [m.id for m in await collect(bob_room, 3)] == ids
        conn = bob.conn_id

        await asyncio.to_thread(second.stop)
        ended = [c for c in changes if c.state == "disconnected"]
        assert isinstance(ended[0].error, Disconnected)
        assert ended[0].error.close_code == 1012
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
        assert bob.conn_id != conn and bob.transport == "sse"
        await asyncio.sleep(0.2)
        assert [m.id async for m in _drain(bob_room)] == []
