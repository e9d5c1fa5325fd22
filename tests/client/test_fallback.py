"""Choosing the transport (docs/channels.md, "The fallback transport"; the client's
:mod:`legato.client.fallback`): a proxy that refuses WebSocket upgrades sends an
``auto`` client to SSE + POST, a healed network brings it back (the choice's
rules, unit-tested), and a worker killed
with SIGKILL behind a load balancer sends its clients to the other one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from servers import WS_PATH, LegatoProcess, RedisProcess, RoundRobinProxy, UpgradeRefusingProxy
from test_reconnect import _drain, collect, fast, legato, reconnected

from legato.client import Client, ConnectError, Lost, StateChange
from legato.client.fallback import TransportChoice


async def test_auto_falls_back_to_sse_when_a_proxy_refuses_websocket_upgrades(
        live_port: int, room: str) -> None:
    """The proxy answers 403 to the upgrade: an HTTP answer that is not a 101 says the
    path speaks HTTP but not WebSocket, so the next attempt (at once) is SSE."""
    async with UpgradeRefusingProxy(live_port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
        changes: list[StateChange] = []
        client = Client(url)
        client.on_state(changes.append)
        async with client:
            assert (client.state, client.transport) == ("connected", "sse")
            assert proxy.refused == 1
            [failure] = [c.error for c in changes if c.state == "disconnected"]
            assert isinstance(failure, ConnectError) and failure.status == 403
            topic = await client.join(room)
            message_id = await topic.publish("through the proxy")
            [message] = await collect(topic, 1)
            assert message.id == message_id
            assert await client.call("add", {"a": 20, "b": 22}) == 42


async def test_a_websocket_only_client_behind_that_proxy_is_refused_for_good(
        live_port: int) -> None:
    async with UpgradeRefusingProxy(live_port) as proxy:
        client = Client(f"ws://127.0.0.1:{proxy.port}{WS_PATH}", transport="websocket")
        with pytest.raises(ConnectError) as caught:
            await client.connect()
        assert caught.value.status == 403 and caught.value.permanent
        assert "not allowed" in caught.value.details["body"]


def test_a_server_that_is_down_never_moves_the_client_to_sse() -> None:
    """A restart: TCP refused, for the WebSocket and for SSE alike; that is no reason to
    leave the WebSocket (bench/channels_reconnect.py saw clients end up on SSE)."""
    down = ConnectError("cannot reach", permanent=False, reached=False)
    choice = TransportChoice()
    for _ in range(5):
        assert choice.next() == "websocket" and not choice.failed("websocket", down)
    assert not choice.fallen_back
    fell = TransportChoice()  # fallen back for a good reason, then the server went down
    fell.failed("websocket", ConnectError("403", permanent=True, status=403))
    assert fell.next() == "sse"
    fell.failed("sse", down)
    assert fell.next() == "websocket"  # tried first when the server is back


def test_the_choice_falls_back_after_two_unanswered_attempts_or_one_http_refusal() -> None:
    unreachable = ConnectError("the upgrade was cut", permanent=False)
    choice = TransportChoice()
    assert choice.next() == "websocket" and not choice.failed("websocket", unreachable)
    assert choice.next() == "websocket" and choice.failed("websocket", unreachable)
    assert choice.next() == "sse"
    refused = TransportChoice()
    assert refused.next() == "websocket"
    assert refused.failed("websocket", ConnectError("502", permanent=False, status=502))
    assert refused.next() == "sse"


def test_after_falling_back_every_5th_attempt_tries_the_websocket_until_it_works() -> None:
    choice = TransportChoice()
    choice.failed("websocket", ConnectError("403", permanent=True, status=403))
    picks = [choice.next() for _ in range(10)]
    assert picks == ["sse"] * 4 + ["websocket"] + ["sse"] * 4 + ["websocket"]
    choice.failed("websocket", ConnectError("403", permanent=True, status=403))
    assert choice.fallen_back
    choice.connected("websocket")
    assert [choice.next() for _ in range(6)] == ["websocket"] * 6


def test_forced_transports_never_switch_and_auto_gives_up_only_on_a_refused_sse() -> None:
    refusal = ConnectError("403", permanent=True, status=403)
    for setting in ("websocket", "sse"):
        choice = TransportChoice(setting)
        assert not choice.failed(setting, refusal)  # type: ignore[arg-type]
        assert {choice.next() for _ in range(10)} == {setting}
        assert choice.gives_up(setting, refusal)  # type: ignore[arg-type]
    auto = TransportChoice()
    assert not auto.gives_up("websocket", refusal) and auto.gives_up("sse", refusal)
    with pytest.raises(ValueError):
        TransportChoice("long-polling")


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_kill_9_of_one_of_two_workers_behind_redis_moves_clients_to_the_other(
        transport: str, tmp_path: Path, redis: RedisProcess,
        processes: list[LegatoProcess]) -> None:
    """Two ``legato run`` on one Redis hub behind a round-robin proxy that skips dead
    backends. The worker bob's stream is on gets SIGKILL (no advice, no close): bob
    reconnects through the proxy, lands on the other, rejoins with since + epoch and
    gets what ann published meanwhile from Redis history: once each, in order. Over SSE
    the Last-Event-ID resume finds no connection there, so it starts afresh."""
    hub = f"{redis.url}?prefix=client-kill-{transport}"
    workers = [legato(processes, hub, tmp_path), legato(processes, hub, tmp_path)]
    async with RoundRobinProxy([w.port for w in workers]) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}{WS_PATH}"
        async with fast(url, transport=transport) as bob:
            victim = next(w for w in workers if w.port == proxy.routes[0])
            survivor = next(w for w in workers if w is not victim)
            async with fast(survivor.url) as ann:
                changes: list[StateChange] = []
                bob.on_state(changes.append)
                bob_room, ann_room = await bob.join("room:k"), await ann.join("room:k")
                lost: list[Lost] = []
                bob_room.on_lost(lost.append)
                ids = [await ann_room.publish(n) for n in range(3)]
                assert [m.id for m in await collect(bob_room, 3)] == ids
                await asyncio.sleep(0.1)  # nothing in flight
                conn = bob.conn_id

                await asyncio.to_thread(victim.kill)
                ids += [await ann_room.publish(n) for n in range(3, 6)]
                await reconnected(changes, 0)
                ids.append(await bob_room.publish("bob, after"))
                got = await collect(bob_room, 4)
                assert [m.id for m in got] == ids[3:]
                assert [m.data for m in got] == [3, 4, 5, "bob, after"]
                assert bob_room.resumed is True and lost == [] and bob.conn_id != conn
                assert proxy.routes[-1] == survivor.port and bob.transport == transport
                await asyncio.sleep(0.2)
                assert [m.id async for m in _drain(bob_room)] == []
