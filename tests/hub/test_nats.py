"""The NATS hub (hub/nats.py) against a real NATS: ids and order across hubs and OS
processes, a live copy that crossed another or was lost, history gaps the chain shows,
presence of a killed process, and a NATS server of the test's own killed, restarted
(with its store, and without) and paused. The contract tests of every backend run on
NATS too (test_backends.py and the others, through conftest's ``make_backend`` and
``hub_url``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats_servers import NatsServer
from recording import Recorder, running

from legato.hub import Hub, SubscribeUnavailable, backend_for
from legato.hub.backend import Gap, HubUnavailable, PublishOutcomeUnknown, id_key
from legato.hub.nats import AFTER, NatsBackend, State, topic_token

#: A hub backend in an OS process of its own: member "peer" of "room", listens to
#: "ring"; on "go" on stdin publishes argv[3] messages to "ring", then prints the ids it
#: received there (JSON) once it has 2 * argv[3] of them; runs until it is killed.
PEER = """
import asyncio, json, os, sys
from legato.hub.nats import NatsBackend

async def main(url, prefix, count):
    backend = NatsBackend(url, prefix=prefix, presence_ttl=1)
    got = []
    await backend.start(lambda t, i, p, k: got.append((i, p)), lambda kind, details: None)
    await backend.listen("ring")
    await backend.join("room", "peer", {"pid": os.getpid()})
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for n in range(count):
        await backend.publish("ring", f"peer {n}")
    while len(got) < 2 * count:
        await asyncio.sleep(0.01)
    print(json.dumps(got), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.fixture
def peer(nats_url: str, nats_prefix: str) -> Iterator[subprocess.Popen[str]]:
    """The PEER process (300 messages), killed by its PID after the test."""
    proc = subprocess.Popen([sys.executable, "-c", PEER, nats_url, nats_prefix, "300"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def in_id_order(ids: list[str]) -> bool:
    keys = [id_key(i) for i in ids]
    return keys == sorted(set(keys))


async def line_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)


# ---------------------------------------------------------------- ids and order


async def test_two_processes_publishing_to_one_topic_both_get_every_message_once_in_id_order(
        nats_url: str, nats_prefix: str, peer: subprocess.Popen[str]) -> None:
    backend = NatsBackend(nats_url, prefix=nats_prefix)
    async with running(backend) as hub:
        await backend.listen("ring")
        assert peer.stdin is not None
        peer.stdin.write("go\n")
        peer.stdin.flush()
        mine = [await backend.publish("ring", f"main {n}") for n in range(300)]
        await hub.wait_for_payloads("ring", 600, timeout=10)
        theirs = json.loads(await line_of(peer))
    ids = hub.ids("ring")
    assert in_id_order(ids) and len(ids) == 600
    assert [i for i, _ in theirs] == ids  # the same messages, the same order
    assert [p for p, _ in zip(hub.payloads("ring"), ids, strict=True)] == [p for _, p in theirs]
    assert [i for i in ids if i in set(mine)] == mine  # ours among them, as published
    # The two raced for the topic's next sequence: the loser asked again (and appended
    # when it kept losing), and the peer published all of its messages.
    assert backend.cas_retries > 0
    assert sum(1 for p in hub.payloads("ring") if str(p).startswith("peer")) == 300


async def test_concurrent_publishes_of_one_process_get_growing_ids_and_arrive_in_order(
        nats_url: str, nats_prefix: str) -> None:
    sender, receiver = (NatsBackend(nats_url, prefix=nats_prefix) for _ in range(2))
    async with running(sender), running(receiver) as hub:
        await receiver.listen("room")
        ids = await asyncio.gather(*(sender.publish("room", str(n)) for n in range(500)))
        await hub.wait_for_payloads("room", 500, timeout=10)
    assert in_id_order(list(ids))
    assert hub.ids("room") == list(ids)
    assert hub.payloads("room") == [str(n) for n in range(500)]


async def test_a_live_copy_that_never_came_is_refilled_before_the_next_one(
        nats_url: str, nats_prefix: str) -> None:
    # A message stored in JetStream whose live copy was lost (its publisher died between
    # the two): the next message's predecessor shows the hole, the receiver reads it.
    sender, receiver = (NatsBackend(nats_url, prefix=nats_prefix) for _ in range(2))
    async with running(sender), running(receiver) as hub:
        await receiver.listen("room")
        first = await sender.publish("room", "first")
        lost_seq, _ = await sender._store("room", b"0 tlost")  # stored, never fanned out
        last = await sender.publish("room", "last")
        await hub.wait_for_payloads("room", 3)
    assert hub.payloads("room") == ["first", "lost", "last"]
    assert hub.ids("room") == [first, f"{id_key(first)[0]}-{lost_seq}", last]
    assert hub.event("gap") is None


async def test_live_copies_that_crossed_on_the_way_are_delivered_in_id_order(
        nats_url: str, nats_prefix: str) -> None:
    # Two publishers' copies can reach a receiver in the other order: the later one
    # waits for the earlier, and the earlier, when it comes, is not delivered twice.
    sender, receiver = (NatsBackend(nats_url, prefix=nats_prefix) for _ in range(2))
    async with running(sender), running(receiver) as hub:
        await receiver.listen("room")
        zero = id_key(await sender.publish("room", "zero"))[1]
        one, _ = await sender._store("room", b"0 tone")  # stored, copies sent below
        two, _ = await sender._store("room", b"0 ttwo")
        assert sender._nc is not None
        live, created = sender._subject("l", "room"), sender._created
        await sender._nc.publish(live, b"%d-%d %d 0 ttwo" % (created, two, one))
        await sender._nc.publish(live, b"%d-%d %d 0 tone" % (created, one, zero))
        await hub.wait_for_payloads("room", 3)
        await asyncio.sleep(0.1)  # the crossed copy of "one" has come too
    assert hub.payloads("room") == ["zero", "one", "two"]
    assert in_id_order(hub.ids("room"))


async def test_a_message_appended_after_a_lost_race_finds_its_predecessor_for_history(
        nats_url: str, nats_prefix: str) -> None:
    # A publisher that lost the race for a topic's next sequence too often stores its
    # message without compare-and-set, with the last sequence it knew as a lower bound:
    # another message came in between, and history, resume and the live copy see it.
    backend = NatsBackend(nats_url, prefix=nats_prefix)
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=10) for n in range(2)]
        assert backend._js is not None
        subject = backend._subject("h", "room")
        ack = await backend._js.publish(subject, b"10 tm2",
                                        headers={AFTER: str(id_key(ids[0])[1])})
        appended = f"{backend._created}-{ack.seq}"
        assert await backend._predecessor(subject, ack.seq, id_key(ids[0])[1]) == \
            id_key(ids[1])[1]
        everything = [(ids[0], "m0", None), (ids[1], "m1", None), (appended, "m2", None)]
        assert await backend.history("room") == everything
        assert await backend.replay("room", ids[0]) == (everything[1:], None)
        assert await backend.replay("room", ids[1]) == (everything[2:], None)


# ---------------------------------------------------------------- history and gaps


async def test_P5_a_message_jetstream_no_longer_keeps_makes_a_resume_trimmed(
        nats_url: str, nats_prefix: str) -> None:
    # max_history=3: JetStream keeps 3 per topic although the topic asks for 10; the
    # chain of the oldest kept one points at a message that is gone.
    backend = NatsBackend(nats_url, prefix=nats_prefix, max_history=3)
    async with running(backend):
        ids = [await backend.publish("room", f"m{n}", history=10) for n in range(8)]
        missed, gap = await backend.replay("room", ids[2])
        assert [m[0] for m in missed] == ids[5:]
        assert gap == Gap("room", ids[2], "trimmed", first_kept=ids[5])
        assert await backend.replay("room", ids[4]) == (
            [(i, f"m{n}", None) for n, i in enumerate(ids) if n > 4], None)
        assert [m[0] for m in await backend.history("room")] == ids[5:]


async def test_P5_an_id_of_a_stream_deleted_since_is_lost_and_new_ids_are_larger(
        nats_url: str, nats_prefix: str) -> None:
    backend = NatsBackend(nats_url, prefix=nats_prefix)
    async with running(backend):
        seen = await backend.publish("room", "seen", history=5)
        old_epoch = await backend.epoch("room")
        assert backend._js is not None
        await backend._js.delete_stream(backend.names["stream"])  # its history gone
        new = await backend.publish("room", "after the loss", history=5)  # made again
        assert id_key(new) > id_key(seen)
        assert await backend.replay("room", seen) == (
            [(new, "after the loss", None)], Gap("room", seen, "lost", first_kept=new))
        assert await backend.epoch("room") != old_epoch


async def test_P5_a_publisher_that_missed_the_stream_being_made_again_gives_new_ids(
        nats_url: str, nats_prefix: str) -> None:
    # b deletes the stream and makes it again (its first publish); a, which only
    # publishes, learns it from the refused compare-and-set: its ids grow on.
    a, b = (NatsBackend(nats_url, prefix=nats_prefix) for _ in range(2))
    async with running(a), running(b):
        old = [await a.publish("room", f"m{n}", history=5) for n in range(3)]
        assert b._js is not None
        await b._js.delete_stream(b.names["stream"])
        first = await b.publish("room", "new stream", history=5)
        new = await a.publish("room", "after", history=5)
        assert id_key(old[-1]) < id_key(first) < id_key(new)
        assert [m[0] for m in await b.history("room")] == [first, new]


# ---------------------------------------------------------------- presence


async def test_P6_the_members_and_count_of_a_killed_process_expire_after_presence_ttl(
        nats_url: str, nats_prefix: str, peer: subprocess.Popen[str]) -> None:
    backend = NatsBackend(nats_url, prefix=nats_prefix, presence_ttl=1)
    async with running(backend):
        await backend.join("room", "me", {"name": "me"})
        members = await backend.members("room")
        assert members == {"me": {"name": "me"}, "peer": {"pid": peer.pid}}
        assert await backend.count("room") == 2
        peer.kill()  # no goodbye: its value stays until the bucket's TTL
        peer.wait(5)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4
        while "peer" in await backend.members("room"):
            assert loop.time() < deadline, "a dead process's member did not expire"
            await asyncio.sleep(0.1)
        assert await backend.members("room") == {"me": {"name": "me"}}  # ours rewritten
        assert await backend.count("room") == 1  # its count expired with its members
        await backend.join("room", "you", None)
        assert await backend.count("room") == 2
        await backend.leave("room", "me")
        await backend.leave("room", "you")
        assert (await backend.count("room"), await backend.members("room")) == (0, {})


# ---------------------------------------------------------------- claims


async def test_a_once_key_is_one_process_s_until_its_deadline_then_free_again(
        nats_url: str, nats_prefix: str) -> None:
    a, b = (NatsBackend(nats_url, prefix=nats_prefix) for _ in range(2))
    async with running(a), running(b):
        assert await a.claim("pub:1", 5.0) is None  # free: a goes on
        assert await b.claim("pub:1", 5.0) == ""  # taken, not settled yet
        await a.settle("pub:1", "1-7", 5.0)
        assert await b.claim("pub:1", 5.0) == "1-7"  # the id a published it under
        await a.settle("pub:1", "", 0.001)  # not published after all: free soon
        await asyncio.sleep(0.01)
        assert await b.claim("pub:1", 5.0) is None
        assert await a.claim("pub:1", 5.0) == ""
        claims = await asyncio.gather(*(a.claim("race", 5.0) for _ in range(5)),
                                      *(b.claim("race", 5.0) for _ in range(5)))
        assert claims.count(None) == 1  # exactly one claimer


# ---------------------------------------------------------------- outages


def events(hub: Recorder) -> list[str]:
    return [kind for kind, _ in hub.events]


async def test_P4_with_nats_killed_publish_raises_and_after_a_restart_missed_messages_are_refilled(
        nats_server: NatsServer) -> None:
    # The receiver reconnects more slowly than the sender: what the sender publishes in
    # between only JetStream has, and the receiver's refill brings it, in order.
    receiver = NatsBackend(nats_server.url, prefix="t", reconnect_wait=1.5, ping_interval=0.5)
    sender = NatsBackend(nats_server.url, prefix="t", reconnect_wait=0.05, ping_interval=0.5)
    async with running(receiver) as hub, running(sender) as sent:
        await receiver.listen("room")
        before = await sender.publish("room", "before", history=10)
        await hub.wait_for_payloads("room", 1)
        nats_server.kill()
        await hub.wait_until(lambda: "disconnected" in events(hub))
        with pytest.raises(HubUnavailable) as raised:
            await sender.publish("room", "during")
        assert not isinstance(raised.value, PublishOutcomeUnknown)  # never sent
        await asyncio.to_thread(nats_server.start)  # with its store
        await sent.wait_until(lambda: "reconnected" in events(sent), timeout=5)
        missed = [await sender.publish("room", f"missed {n}", history=10) for n in range(3)]
        await hub.wait_until(lambda: "reconnected" in events(hub), timeout=5)
        await hub.wait_for_payloads("room", 4)
        after = await sender.publish("room", "after", history=10)
        await hub.wait_for_payloads("room", 5)
        assert receiver.state is State.CONNECTED and receiver.reconnects == 1
    assert hub.payloads("room") == ["before", "missed 0", "missed 1", "missed 2", "after"]
    assert hub.ids("room") == [before, *missed, after]
    reconnected = hub.event("reconnected")
    assert reconnected is not None and reconnected["refilled"] == 3
    assert reconnected["downtime"] > 0
    assert hub.event("gap") is None  # the store survived: nothing lost


async def test_P4_a_nats_restarted_empty_is_reported_as_a_gap_and_new_messages_flow(
        nats_server: NatsServer) -> None:
    backend = NatsBackend(nats_server.url, prefix="t", reconnect_wait=0.05, ping_interval=0.5)
    async with running(backend) as hub:
        await backend.listen("room")
        seen = await backend.publish("room", "before", history=10)
        await hub.wait_for_payloads("room", 1)
        nats_server.kill()
        await asyncio.to_thread(nats_server.start, empty=True)  # its store is gone
        await hub.wait_until(lambda: "reconnected" in events(hub), timeout=5)
        gap = hub.event("gap")
        assert gap == {"topic": "room", "after": seen, "reason": "stream recreated"}
        new = await backend.publish("room", "after", history=10)
        await hub.wait_for_payloads("room", 2)
        assert id_key(new) > id_key(seen)
        assert hub.payloads("room") == ["before", "after"]
        missed, found = await backend.replay("room", seen)
        assert (missed, found) == ([(new, "after", None)],
                                   Gap("room", seen, "lost", first_kept=new))


async def test_P4_a_hung_nats_makes_publish_outcome_unknown_then_an_outage_then_recovery(
        nats_server: NatsServer) -> None:
    backend = NatsBackend(nats_server.url, prefix="t", timeout=0.3, ping_interval=0.3,
                          reconnect_wait=0.05)
    async with running(backend) as hub:
        await backend.listen("room")
        await backend.publish("room", "before")
        nats_server.pause()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcomes = await asyncio.gather(
                *(backend.publish("room", f"queued {n}") for n in range(20)),
                return_exceptions=True)
            # The first waited for its answer; those queued behind it failed at once
            # instead of one timeout each (never sent: not "outcome unknown").
            assert loop.time() - started < 3 * backend.timeout
            assert isinstance(outcomes[0], PublishOutcomeUnknown)
            assert all(type(o) is HubUnavailable for o in outcomes[1:]), outcomes
            await hub.wait_until(lambda: "disconnected" in events(hub), timeout=5)
        finally:
            nats_server.resume()
        await hub.wait_until(lambda: "reconnected" in events(hub), timeout=5)
        await backend.publish("room", "after")
        await hub.wait_until(lambda: "after" in hub.payloads("room"))
    payloads = hub.payloads("room")
    # "queued 0" may have been stored: then it arrives, once, before "after".
    assert payloads in (["before", "after"], ["before", "queued 0", "after"])
    assert in_id_order(hub.ids("room"))


async def test_P4_a_topic_listened_during_an_outage_is_subscribed_once_nats_is_back(
        nats_server: NatsServer) -> None:
    receiver = NatsBackend(nats_server.url, prefix="t", reconnect_wait=0.05, ping_interval=0.5)
    sender = NatsBackend(nats_server.url, prefix="t", reconnect_wait=0.05, ping_interval=0.5)
    async with running(receiver) as hub, running(sender) as sent:
        nats_server.kill()
        await hub.wait_until(lambda: "disconnected" in events(hub))
        await receiver.listen("late")  # never raises: subscribed when NATS is back
        await asyncio.to_thread(nats_server.start)
        await hub.wait_until(lambda: "reconnected" in events(hub), timeout=5)
        await sent.wait_until(lambda: "reconnected" in events(sent), timeout=5)
        message_id = await sender.publish("late", "hello")
        await hub.wait_for_payloads("late", 1)
    assert hub.messages == [("late", message_id, "hello")]


async def test_start_with_nats_unreachable_reports_it_and_connects_when_it_comes(
        nats_server: NatsServer) -> None:
    nats_server.kill()
    backend = NatsBackend(nats_server.url, prefix="t", reconnect_wait=0.05, timeout=0.3)
    async with running(backend) as hub:
        assert "disconnected" in events(hub)
        with pytest.raises(HubUnavailable):
            await backend.publish("room", "nobody")
        await backend.listen("room")  # never raises: subscribed once connected
        await asyncio.to_thread(nats_server.start)
        await hub.wait_until(lambda: "reconnected" in events(hub), timeout=5)
        message_id = await backend.publish("room", "hello")
        await hub.wait_for_payloads("room", 1)
    assert hub.messages == [("room", message_id, "hello")]


async def test_P4_a_since_subscribe_during_an_outage_raises_subscribe_unavailable(
        nats_server: NatsServer) -> None:
    hub = Hub(f"{nats_server.url}?prefix=t&timeout=0.5")
    await hub.start()
    try:
        nats_server.kill()

        class Open:  # an accepted WebSocket, as the channel layer has
            state = type("S", (), {"name": "OPEN"})()
            scope: dict[str, Any] = {}

        with pytest.raises(SubscribeUnavailable) as refused:
            await hub.subscribe(Open(), "room", since="1-0")  # type: ignore[arg-type]
        assert isinstance(refused.value, HubUnavailable) and refused.value.status_code == 503
        assert hub._subscribers == {} and hub._outboxes == {}
        assert hub.backend._subs == {}  # nothing for the reconnection to subscribe
    finally:
        await hub.stop()


# ---------------------------------------------------------------- names and URLs


def test_every_topic_is_one_subject_token_and_kv_key_part_and_distinct() -> None:
    topics = ["room", "", "=", "a.b", "a b", "feed*", ">", "ключ ☃", "with:colons", "=3D"]
    tokens = [topic_token(t) for t in topics]
    assert len(set(tokens)) == len(topics)
    assert all(t and all(c.isascii() and (c.isalnum() or c in "_-=") for c in t)
               for t in tokens)


def test_the_hub_url_picks_the_nats_backend_with_its_options() -> None:
    backend = backend_for("nats://127.0.0.1:4222?prefix=chat&presence_ttl=2&max_history=50")
    assert isinstance(backend, NatsBackend)
    assert (backend.prefix, backend.presence_ttl, backend.max_history) == ("chat", 2.0, 50)
    with pytest.raises(ValueError, match="gap_window"):
        backend_for("nats://127.0.0.1:4222?gap_window=3")


def test_the_engine_s_ids_and_order_are_documented_in_docs_nats_md() -> None:
    doc = Path(__file__).parents[2] / "docs" / "nats.md"
    assert "Nats-Expected-Last-Subject-Sequence" in doc.read_text()
