"""The NATS hub across real processes: the process tests of test_hub_processes.py
(``legato run hub_apps:app`` several times over, clients from ``websockets`` and httpx)
on NATS, with this module's ``hub_url`` and ``start`` (one NATS prefix per test, its
stream and buckets deleted afterwards), and an outage of a nats-server of the test's
own: killed, publishes answered 503 with local delivery going on, restarted with its
store, everything flowing again and a resume across it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from nats_servers import NatsServer
from test_hub_processes import (
    Client,
    Legato,
    legato_processes,
    poll,
    presence_is,
    publish,
    published_id,
    test_P3_a_client_that_stops_reading_delays_no_one_on_its_process_or_another,
    test_P4_a_message_published_on_one_process_reaches_subscribers_on_all_three,
    test_P4_with_four_workers_on_one_port_a_message_from_any_worker_reaches_all,
    test_P5_a_client_resuming_with_since_gets_what_it_missed_in_order_then_live,
    test_P6_presence_lists_members_of_every_process_and_a_killed_process_members_expire,
    wait_for_event,
)

__all__ = [  # collected here too, on NATS (this module's fixtures)
    "test_P3_a_client_that_stops_reading_delays_no_one_on_its_process_or_another",
    "test_P4_a_message_published_on_one_process_reaches_subscribers_on_all_three",
    "test_P4_with_four_workers_on_one_port_a_message_from_any_worker_reaches_all",
    "test_P5_a_client_resuming_with_since_gets_what_it_missed_in_order_then_live",
    "test_P6_presence_lists_members_of_every_process_and_a_killed_process_members_expire",
]


@pytest.fixture
def hub_url(nats_url: str, nats_prefix: str) -> str:
    """The shared NATS, this test's prefix, members of a dead process gone within 1 s."""
    return f"{nats_url}?prefix={nats_prefix}&presence_ttl=1"


@pytest.fixture
def start(tmp_path: Path, nats_prefix: str) -> Iterator[Callable[..., list[Legato]]]:
    """``start(hub_url, count, workers=1)``: legato processes, stopped after the test and
    before ``nats_prefix`` deletes the test's stream and buckets."""
    with ExitStack() as stack:
        def start(hub_url: str, count: int, workers: int = 1) -> list[Legato]:
            return stack.enter_context(legato_processes(hub_url, count, tmp_path, workers))

        yield start


async def test_P4_P5_with_nats_down_publish_answers_503_and_after_a_restart_all_flows_again(
        start: Callable[..., list[Legato]], nats_server: NatsServer) -> None:
    a, b = start(f"{nats_server.url}?prefix=t&presence_ttl=1&reconnect_wait=0.1", 2)
    async with httpx.AsyncClient(timeout=5) as http:
        alice = await Client.join(a, "lobby", "alice")
        bob = await Client.join(b, "lobby", "bob")
        carl = await Client.join(a, "lobby", "carl")
        before = await published_id(http, b, "lobby", "before")
        await carl.wait_for_texts(1)
        await carl.close()  # carl leaves: he will resume after the outage
        await published_id(http, a, "lobby", "while carl is away")
        for client in (alice, bob):
            await client.wait_for_texts(2)

        nats_server.kill()  # JetStream's store is on disk: the restart keeps it
        for legato in (a, b):
            assert "disconnected" in await wait_for_event(http, legato, "disconnected")
        for legato in (a, b):  # 503, and this process's own subscribers got it
            response = await publish(http, legato, "lobby", "local only")
            assert response.status_code == 503, response.text
            assert "only" in response.json()["error"]
        for client in (alice, bob):  # still open, still answered
            await client.conn.send("during the outage")
            await client.wait_for_reply("error")

        await asyncio.to_thread(nats_server.start)
        for legato in (a, b):
            kinds = await wait_for_event(http, legato, "reconnected")
            assert kinds == ["disconnected", "reconnected"]  # reported, and no "gap"
            assert "WARNING legato.hub: hub: lost the NATS connection" in legato.stderr()
            assert "WARNING legato.hub: hub: NATS reconnected after" in legato.stderr()

        await published_id(http, b, "lobby", "after")
        await alice.conn.send("alice is back")
        expected = ["before", "while carl is away", "local only", "during the outage",
                    "after", "alice is back"]
        for client in (alice, bob):
            assert await client.wait_for_texts(6) == expected
        # carl resumes on the other process from the last message he saw: JetStream has
        # what went through NATS (the local-only messages never did).
        carl = await Client.join(b, "lobby", "carl", since=before)
        through_nats = ["while carl is away", "after", "alice is back"]
        assert await carl.wait_for_texts(3) == through_nats
        await published_id(http, a, "lobby", "live")
        assert await carl.wait_for_texts(4) == [*through_nats, "live"]
        await poll(lambda: presence_is(http, a, {"alice", "bob", "carl"}))
    for client in (alice, bob, carl):
        await client.close()
