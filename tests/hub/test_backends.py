"""The backend contract (hub/backend.py), for the memory and the Redis backend alike."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from recording import running

from legato.hub.backend import Backend, id_key

PAYLOADS: list[str | bytes] = [
    "", "hello", "héllo ☃ 🎵", "t looks like a type byte", "b too", "with  spaces ",
    b"", b"\x00\xff\x00", b"b", b"t", b"bytes with spaces", bytes(range(256)),
]


async def test_a_published_message_reaches_the_sink_once_with_its_id(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend) as hub:
        await backend.listen("room")
        message_id = await backend.publish("room", "hi")
        await hub.wait_for_payloads("room", 1)
        await backend.publish("other", "not listened here")  # memory delivers it anyway
        assert [m for m in hub.messages if m[0] == "room"] == [("room", message_id, "hi")]


async def test_ids_look_like_stream_ids_and_grow_within_a_topic(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend) as hub:
        await backend.listen("room")
        ids = [await backend.publish("room", str(n)) for n in range(50)]
        assert all(re.fullmatch(r"\d+-\d+", message_id) for message_id in ids)
        assert [id_key(i) for i in ids] == sorted({id_key(i) for i in ids})
        await hub.wait_for_payloads("room", 50)
        assert hub.ids("room") == ids
        assert hub.payloads("room") == [str(n) for n in range(50)]


async def test_text_stays_text_and_bytes_stay_bytes(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend) as hub:
        await backend.listen("room")
        for payload in PAYLOADS:
            await backend.publish("room", payload, history=len(PAYLOADS))
        await hub.wait_for_payloads("room", len(PAYLOADS))
        delivered = hub.payloads("room")
        stored = [payload for _, payload, _ in await backend.history("room")]
    for got in (delivered, stored):
        assert got == PAYLOADS
        assert [type(p) for p in got] == [type(p) for p in PAYLOADS]


async def test_a_key_travels_with_its_message_to_every_sink_and_into_history(
        make_backend: Callable[..., Backend]) -> None:
    keys = [None, "", "AAPL", "with:colons and spaces", "ключ ☃", "9:looks like a length"]
    backend = make_backend()
    async with running(backend) as hub:
        await backend.listen("room")
        for n, payload in enumerate(PAYLOADS):
            await backend.publish("room", payload, history=len(PAYLOADS),
                                  key=keys[n % len(keys)])
        await hub.wait_for_payloads("room", len(PAYLOADS))
        stored = await backend.history("room")
    expected = [keys[n % len(keys)] for n in range(len(PAYLOADS))]
    pairs = zip(hub.messages, hub.keys, strict=True)
    assert [k for (topic, _, _), k in pairs if topic == "room"] == expected
    assert [key for _, _, key in stored] == expected
    assert [payload for _, payload, _ in stored] == PAYLOADS


async def test_history_is_what_came_after_since_oldest_first_at_most_limit(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=10) for n in range(6)]
        everything = await backend.history("room")
        assert everything == [(i, f"m{n}", None) for n, i in enumerate(ids)]
        assert await backend.history("room", since=ids[2]) == everything[3:]
        assert await backend.history("room", since=ids[-1]) == []
        assert await backend.history("room", limit=2) == everything[-2:]
        assert await backend.history("room", since=ids[0], limit=3) == everything[-3:]
        assert await backend.history("room", limit=0) == []
        assert await backend.history("nothing published") == []


async def test_history_keeps_only_the_last_n_messages_of_a_topic(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        for n in range(5):
            await backend.publish("room", f"m{n}", history=3)
        assert [p for _, p, _ in await backend.history("room")] == ["m2", "m3", "m4"]


async def test_a_topic_without_history_answers_history_with_nothing(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        await backend.publish("room", "gone")
        assert await backend.history("room") == []


async def test_a_malformed_since_is_a_value_error(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        await backend.publish("room", "m", history=3)
        with pytest.raises(ValueError):
            await backend.history("room", since="not-an-id")


async def test_presence_lists_joined_members_with_their_info_until_they_leave(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend(presence_ttl=0.5)
    async with running(backend):
        await backend.join("room", "alice", {"name": "Alice"})
        await backend.join("room", "bob", None)
        await backend.join("hall", "alice", [1, 2])
        assert await backend.members("room") == {"alice": {"name": "Alice"}, "bob": None}
        await backend.leave("room", "alice")
        await backend.leave("room", "nobody")
        assert await backend.members("room") == {"bob": None}
        assert await backend.members("hall") == {"alice": [1, 2]}
        assert await backend.members("empty") == {}
