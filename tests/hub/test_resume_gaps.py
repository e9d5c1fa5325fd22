"""P5: a client that resumes with a ``since=`` its topic's kept history no longer reaches
back to is told so, never silently given only the newest messages — on the memory and the
Redis backend, for a trimmed history, a history that is gone (Redis restarted empty, the
key deleted, the process restarted) and an id from the future; a ``since`` that is not an
id is refused clearly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import pytest
from recording import running
from redis_servers import RedisServer
from test_hub_app import hub_url  # noqa: F401 - the memory/Redis fixture of the App tests

from legato import App, HistoryGap, TestClient, WebSocket, WebSocketDisconnect
from legato.hub import Gap, Hub
from legato.hub.backend import Backend, HubUnavailable, MemoryBackend, id_key
from legato.hub.nats import NatsBackend
from legato.hub.redis import RedisBackend

MALFORMED = ["", "yesterday", "-", "-3", "12-", "1-2-3", " 12", "12 ", "1_0", "١٢", "²",
             "1e3", "0x10", "+5", "18446744073709551616-0", "5-18446744073709551616",
             "1" * 100]


def later_than(message_id: str, ms: int) -> str:
    return f"{id_key(message_id)[0] + ms}-0"


# ---------------------------------------------------------------- the backend contract


async def test_P5_a_resume_from_before_the_kept_history_reports_a_trimmed_gap(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=3) for n in range(10)]
        missed, gap = await backend.replay("room", ids[2])
    assert [m[0] for m in missed] == ids[7:]  # what is kept, in order
    assert gap == Gap("room", ids[2], "trimmed", first_kept=ids[7])


async def test_P5_a_resume_from_the_last_message_no_longer_kept_has_no_gap(
        make_backend: Callable[..., Backend]) -> None:
    # The client saw the message right before the kept ones: it missed nothing.
    backend = make_backend()
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=3) for n in range(10)]
        assert await backend.replay("room", ids[6]) == (
            [(i, f"m{n}", None) for n, i in enumerate(ids) if n > 6], None)
        assert await backend.replay("room", ids[8]) == ([(ids[9], "m9", None)], None)
        assert await backend.replay("room", ids[9]) == ([], None)
        everything, gap = await backend.replay("room", "0")  # "whatever is kept"
        assert ([m[0] for m in everything], gap) == (ids[7:], None)


async def test_P5_the_boundary_holds_where_redis_really_trims_the_stream(
        make_backend: Callable[..., Backend]) -> None:
    # Without a gap window the stream is trimmed (by whole nodes of 100 entries) down to
    # no fewer than k + 1 entries: the newest message no longer kept is still there.
    backend = make_backend(gap_window=0)
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=3) for n in range(250)]
        assert await backend.replay("room", ids[-4]) == (
            [(i, f"m{n}", None) for n, i in enumerate(ids) if n >= 247], None)
        missed, gap = await backend.replay("room", ids[-5])
        assert [m[0] for m in missed] == ids[-3:]
        assert gap == Gap("room", ids[-5], "trimmed", first_kept=ids[-3])


async def test_P5_a_resume_within_the_kept_history_has_no_gap(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=5) for n in range(3)]
        missed, gap = await backend.replay("room", ids[0])
    assert ([m[0] for m in missed], gap) == (ids[1:], None)


async def test_P5_a_resume_with_an_id_from_the_future_reports_a_gap(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        newest = [await backend.publish("room", f"m{n}", history=5) for n in range(3)][-1]
        future = later_than(newest, 3_600_000)
        assert await backend.replay("room", future) == ([], Gap("room", future, "future"))


async def test_P5_a_resume_into_a_topic_that_keeps_nothing_reports_a_gap(
        make_backend: Callable[..., Backend]) -> None:
    backend = make_backend()
    async with running(backend):
        seen = await backend.publish("room", "seen", history=0)
        await backend.publish("room", "missed", history=0)
        missed, gap = await backend.replay("room", seen)
    assert missed == []
    assert gap is not None and gap.first_kept is None and gap.since == seen
    # Redis still knows a message came after it ("trimmed"); memory kept nothing ("lost").
    assert gap.reason in ("trimmed", "lost")


async def test_P5_a_resume_into_a_history_that_no_longer_exists_reports_it_lost(
        make_backend: Callable[..., Backend]) -> None:
    # A memory hub that restarted (a new backend), or a Redis stream deleted: the since=
    # of a client comes from a history nobody holds any more.
    backend = make_backend()
    async with running(backend):
        seen = await backend.publish("room", "seen", history=5)
    backend = make_backend()
    async with running(backend):
        if isinstance(backend, RedisBackend):
            stream = backend._stream("room")
            await backend._call(stream, "DEL", stream)  # the key deleted (on its shard)
        elif isinstance(backend, NatsBackend):  # the topic's messages purged
            assert backend._js is not None
            await backend._js.purge_stream(backend.names["stream"],
                                           subject=backend._subject("h", "room"))
        assert await backend.replay("room", seen) == ([], Gap("room", seen, "lost"))
        await asyncio.sleep(0.002)  # the next id is a later millisecond
        new = await backend.publish("room", "after the loss", history=5)
        assert await backend.replay("room", seen) == (
            [(new, "after the loss", None)], Gap("room", seen, "lost", first_kept=new))
        assert await backend.replay("room", new) == ([], None)


async def test_P5_a_resume_after_redis_restarted_empty_reports_the_history_lost(
        redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix="t")
    async with running(backend) as hub:
        ids = [await backend.publish("room", f"m{n}", history=10) for n in range(3)]
        redis_server.kill()
        await asyncio.to_thread(redis_server.start)  # no persistence: it comes back empty
        await hub.wait_until(lambda: hub.event("reconnected"), timeout=10)
        assert await backend.replay("room", ids[0]) == ([], Gap("room", ids[0], "lost"))
        new = await backend.publish("room", "after the restart", history=10)
        missed, gap = await backend.replay("room", ids[-1])
    assert missed == [(new, "after the restart", None)]
    assert gap == Gap("room", ids[-1], "lost", first_kept=new)


@pytest.mark.parametrize("since", MALFORMED)
async def test_P5_a_malformed_since_is_a_value_error_never_a_broker_error(
        make_backend: Callable[..., Backend], since: str) -> None:
    backend = make_backend()
    async with running(backend):
        await backend.publish("room", "m", history=3)
        with pytest.raises(ValueError):
            await backend.replay("room", since)
        with pytest.raises(ValueError):  # not HubUnavailable: Redis never saw it
            await backend.history("room", since=since)


async def test_P5_the_largest_possible_id_is_a_since_like_any_other(
        make_backend: Callable[..., Backend]) -> None:
    largest = f"{2**64 - 1}-{2**64 - 1}"
    backend = make_backend()
    async with running(backend):
        await backend.publish("room", "m", history=3)
        assert await backend.replay("room", largest) == ([], Gap("room", largest, "future"))
        assert await backend.history("room", since=largest) == []


def test_P5_the_memory_backend_remembers_what_falls_out_when_the_history_shrinks() -> None:
    async def scenario() -> tuple[Any, Any]:
        backend = MemoryBackend()
        ids = [await backend.publish("room", f"m{n}", history=5) for n in range(5)]
        await backend.publish("room", "m5", history=2)  # keeps m4, m5 now
        return (await backend.replay("room", ids[2]))[1], (await backend.replay(
            "room", ids[3]))[1]

    trimmed, none = asyncio.run(scenario())
    assert trimmed is not None and trimmed.reason == "trimmed"
    assert none is None


# ---------------------------------------------------------------- through the App


def resume_app(url: str, on_gap: str = "flag") -> App:
    app = App(hub=url, hub_history=3)

    @app.websocket("/rooms/{room}")
    async def room(ws: WebSocket, room: str, since: str | None = None) -> None:
        topic = f"room:{room}"
        try:
            async with app.hub.subscribe(ws, topic, since=since, on_gap=on_gap) as sub:
                await ws.send_json({"ready": True,
                                    "gap": asdict(sub.gap) if sub.gap else None})
                await ws.wait_closed()
        except HistoryGap as exc:
            # Nothing was sent, and the connection is not subscribed: say so first,
            # then take whatever the room still keeps.
            await ws.send_json({"gap": asdict(exc.gap), "subscribed": app.hub.knows(ws)})
            async with app.hub.subscribe(ws, topic, since="0"):
                await ws.send_json({"ready": True})
                await ws.wait_closed()

    @app.post("/rooms/{room}")
    async def say(room: str, text: str) -> dict[str, str]:
        return {"id": await app.hub.publish(f"room:{room}", text)}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {**app.hub.stats(), "events": app.hub.events}

    return app


def test_P5_a_resume_older_than_the_kept_history_is_flagged_on_the_subscription_and_counted(
        hub_url: str) -> None:  # noqa: F811 - the fixture
    with TestClient(resume_app(hub_url)) as client:
        ids = [client.post(f"/rooms/r?text=m{n}").json()["id"] for n in range(10)]
        with client.websocket_connect(f"/rooms/r?since={ids[1]}") as ws:
            assert [ws.receive_json()["data"] for _ in range(3)] == ["m7", "m8", "m9"]
            assert ws.receive_json() == {"ready": True, "gap": {
                "topic": "room:r", "since": ids[1], "reason": "trimmed",
                "first_kept": ids[7]}}
        with client.websocket_connect(f"/rooms/r?since={ids[6]}") as ws:
            assert [ws.receive_json()["data"] for _ in range(3)] == ["m7", "m8", "m9"]
            assert ws.receive_json() == {"ready": True, "gap": None}
        stats = client.get("/stats").json()
    assert stats["gaps"] == 1
    assert [e for e in stats["events"] if e[0] == "gap"] == [["gap", {
        "topic": "room:r", "after": ids[1], "reason": "trimmed", "first_kept": ids[7],
        "resume": True}]]


def test_P5_with_on_gap_raise_the_handler_learns_of_the_gap_before_anything_is_sent(
        hub_url: str) -> None:  # noqa: F811 - the fixture
    with TestClient(resume_app(hub_url, on_gap="raise")) as client:
        ids = [client.post(f"/rooms/r?text=m{n}").json()["id"] for n in range(5)]
        future = later_than(ids[-1], 3_600_000)
        with client.websocket_connect(f"/rooms/r?since={future}") as ws:
            assert ws.receive_json() == {"subscribed": False, "gap": {
                "topic": "room:r", "since": future, "reason": "future", "first_kept": None}}
            assert [ws.receive_json()["data"] for _ in range(3)] == ["m2", "m3", "m4"]
            assert ws.receive_json() == {"ready": True}
            client.post("/rooms/r?text=live")
            assert ws.receive_json()["data"] == "live"  # subscribed once, not twice
        with client.websocket_connect(f"/rooms/r?since={ids[2]}") as ws:  # no gap
            assert [ws.receive_json()["data"] for _ in range(3)] == ["m3", "m4", "live"]
            assert ws.receive_json() == {"ready": True, "gap": None}
        assert client.get("/stats").json()["gaps"] == 1


def test_P5_a_raised_gap_leaves_nothing_subscribed_behind() -> None:
    app = App(hub_history=2)
    left: dict[str, Any] = {}

    @app.websocket("/r")
    async def handler(ws: WebSocket, since: str) -> None:
        with pytest.raises(HistoryGap):
            await app.hub.subscribe(ws, "t", since=since, on_gap="raise")
        left.update(knows=app.hub.knows(ws), topics=app.hub.stats()["topics"])
        await ws.send_json("done")

    with TestClient(app) as client:
        with client.websocket_connect("/r?since=123-0") as ws:
            assert ws.receive_json() == "done"
    assert left == {"knows": False, "topics": 0}


@pytest.mark.parametrize("since", ["1_0", "١٢", "12-", " 12", "18446744073709551616-0"])
def test_P5_a_malformed_since_closes_with_1008_and_the_hub_carries_on(
        hub_url: str, since: str) -> None:  # noqa: F811 - the fixture
    with TestClient(resume_app(hub_url)) as client:
        with client.websocket_connect(f"/rooms/r?since={quote(since)}") as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 1008
        first = client.post("/rooms/r?text=still%20fine").json()["id"]
        with client.websocket_connect("/rooms/r?since=0") as ws:
            assert ws.receive_json()["id"] == first


def test_P5_on_gap_must_be_flag_or_raise() -> None:
    hub = Hub()
    with pytest.raises(ValueError, match="on_gap"):
        hub.subscribe(None, "t", since="0", on_gap="ignore")  # type: ignore[arg-type]


async def test_P5_a_hub_unavailable_during_replay_is_not_a_gap(
        redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, prefix="t", timeout=0.3)
    async with running(backend):
        seen = await backend.publish("room", "m", history=3)
        redis_server.kill()
        with pytest.raises(HubUnavailable):
            await backend.replay("room", seen)


async def test_P5_a_history_read_from_before_the_kept_history_says_so(
        hub_url: str) -> None:  # noqa: F811 - the fixture
    hub = Hub(hub_url, history=3)
    await hub.start()
    try:
        ids = [await hub.publish("room", f"m{n}") for n in range(10)]
        read = await hub.history("room", since=ids[1])
        assert [m["data"] for m in read] == ["m7", "m8", "m9"]
        assert read.gap == Gap("room", ids[1], "trimmed", first_kept=ids[7])
        within = await hub.history("room", since=ids[6])
        assert ([m["data"] for m in within], within.gap) == (["m7", "m8", "m9"], None)
        limited = await hub.history("room", since=ids[6], limit=1)  # asked for: no gap
        assert ([m["data"] for m in limited], limited.gap) == (["m9"], None)
        assert (await hub.history("room")).gap is None
        with pytest.raises(HistoryGap) as raised:
            await hub.history("room", since=ids[0], on_gap="raise")
        assert raised.value.gap.reason == "trimmed"
        assert hub.stats()["gaps"] == 2
        assert [e[1]["resume"] for e in hub.events if e[0] == "gap"] == [False, False]
        with pytest.raises(ValueError, match="not a message id"):
            await hub.history("room", since="yesterday")
        with pytest.raises(ValueError, match="on_gap"):
            await hub.history("room", since="0", on_gap="ignore")
    finally:
        await hub.stop()
