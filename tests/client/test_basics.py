"""Join, publish with ack, delivery, calls and presence against a real legato server
(docs/channels.md: Frames, Publishing, Requests, Errors)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from legato.client import ChannelError, Client, Message, PresenceEvent


async def next_messages(topic: Any, count: int, timeout: float = 5.0) -> list[Message]:
    got: list[Message] = []

    async def read() -> None:
        async for message in topic:
            got.append(message)
            if len(got) == count:
                return

    await asyncio.wait_for(read(), timeout)
    return got


async def test_join_publish_acks_with_the_id_the_message_arrives_with(live: str, room: str
                                                                      ) -> None:
    async with Client(live) as client:
        assert client.state == "connected"
        topic = await client.join(room, data={"name": "ann"})
        assert topic.state == "joined"
        assert topic.info == {"room": room.split(":", 1)[1]}
        assert isinstance(topic.epoch, str)
        message_id = await topic.publish({"text": "hi"})
        [message] = await next_messages(topic, 1)
        assert (message.topic, message.id, message.data) == (room, message_id, {"text": "hi"})
        assert topic.last_id == message_id
    assert client.state == "closed"


async def test_two_clients_see_each_others_publishes_in_order_once(live: str, room: str
                                                                   ) -> None:
    async with Client(live) as ann, Client(live) as bob:
        ann_room = await ann.join(room)
        bob_room = await bob.join(room)
        ids = [await ann_room.publish({"n": 1}), await bob_room.publish({"n": 2}),
               await ann_room.publish({"n": 3})]
        for topic in (ann_room, bob_room):
            got = await next_messages(topic, 3)
            assert [m.id for m in got] == ids
            assert [m.data["n"] for m in got] == [1, 2, 3]


async def test_on_message_callbacks_see_every_message(live: str, room: str) -> None:
    async with Client(live) as client:
        topic = await client.join(room, receive_limit=0)
        seen: list[Any] = []
        arrived = asyncio.Event()

        def on_message(message: Message) -> None:
            seen.append(message.data)
            if len(seen) == 2:
                arrived.set()

        topic.on_message(on_message)
        await topic.publish("a")
        await topic.publish("b")
        await asyncio.wait_for(arrived.wait(), 5)
        assert seen == ["a", "b"]
        with pytest.raises(RuntimeError, match="receive_limit=0"):
            await topic.messages().__anext__()


async def test_join_since_0_replays_the_history_before_the_reply(live: str, room: str
                                                                 ) -> None:
    async with Client(live) as writer:
        topic = await writer.join(room)
        ids = [await topic.publish(n) for n in range(3)]
    async with Client(live) as reader:
        replayed = await reader.join(room, since="0")
        assert replayed.resumed is True
        assert [m.id for m in await next_messages(replayed, 3)] == ids


async def test_joining_a_joined_topic_returns_the_same_topic(live: str, room: str) -> None:
    async with Client(live) as client:
        assert await client.join(room) is await client.join(room)


async def test_publish_after_leave_is_not_joined_and_iteration_ends(live: str, room: str
                                                                    ) -> None:
    async with Client(live) as client:
        topic = await client.join(room)
        await topic.leave()
        assert topic.state == "left"
        assert [m async for m in topic] == []
        with pytest.raises(ChannelError) as caught:
            await topic.publish("late")
        assert caught.value.code == "not_joined"


# ------------------------------------------------------------------ refusals (Errors)


@pytest.mark.parametrize(("topic", "code"), [("nochannel:x", "not_found"),
                                             ("room:secret", "forbidden")])
async def test_a_refused_join_raises_with_the_servers_code(live: str, topic: str, code: str
                                                          ) -> None:
    async with Client(live) as client:
        with pytest.raises(ChannelError) as caught:
            await client.join(topic)
        assert caught.value.code == code
        assert topic not in client.topics


async def test_a_refused_publish_raises_forbidden_and_the_topic_stays_joined(live: str
                                                                             ) -> None:
    async with Client(live) as client:
        topic = await client.join("room:readonly")
        with pytest.raises(ChannelError) as caught:
            await topic.publish("nope")
        assert caught.value.code == "forbidden"
        assert topic.state == "joined"


# ------------------------------------------------------------------ calls (Requests)


async def test_call_returns_what_the_handler_returned(live: str) -> None:
    async with Client(live) as client:
        assert await client.call("add", {"a": 2, "b": 3}) == 5


async def test_call_of_an_unknown_name_is_not_found(live: str) -> None:
    async with Client(live) as client:
        with pytest.raises(ChannelError) as caught:
            await client.call("no.such.rpc")
        assert caught.value.code == "not_found"


async def test_call_that_raises_is_error_with_the_message_in_debug(live: str) -> None:
    async with Client(live) as client:
        with pytest.raises(ChannelError) as caught:
            await client.call("boom")
        assert caught.value.code == "error"
        assert "boom went the handler" in caught.value.message


async def test_call_past_its_timeout_is_timeout_from_the_server(live: str) -> None:
    async with Client(live) as client:
        with pytest.raises(ChannelError) as caught:
            await client.call("sleep", 5, timeout=0.2)
        assert caught.value.code == "timeout"
        assert "took longer" in caught.value.message  # the server's answer, not ours
        assert await client.call("add", {"a": 1, "b": 1}) == 2  # still usable


# ------------------------------------------------------------------------ presence


async def test_presence_lists_members_and_reports_joined_and_left(live: str, room: str
                                                                 ) -> None:
    async with Client(live) as ann:
        ann_room = await ann.join(room, data={"name": "ann"})
        events = ann_room.events()
        async with Client(live) as bob:
            await bob.join(room, data={"name": "bob"})
            members = await ann_room.presence()
            assert sorted(m.data["name"] for m in members) == ["ann", "bob"]
            assert {m.conn for m in members} == {ann.conn_id, bob.conn_id}
            assert await ann_room.presence_count() == 2  # without the list
            # ann's own `joined` may come after her join's reply: wait for bob's
            joined = await asyncio.wait_for(anext_event(events, "joined", bob.conn_id), 5)
            assert (joined.member.conn, joined.member.data) == (bob.conn_id, {"name": "bob"})
            bob_id = bob.conn_id
        left = await asyncio.wait_for(anext_event(events, "left", bob_id), 5)
        assert left.member.conn == bob_id
        assert [m.conn for m in await ann_room.presence()] == [ann.conn_id]


async def anext_event(events: Any, kind: str, conn: str | None) -> PresenceEvent:
    async for event in events:
        if isinstance(event, PresenceEvent) and event.kind == kind \
                and event.member.conn == conn:
            return event
    raise AssertionError("events ended")
