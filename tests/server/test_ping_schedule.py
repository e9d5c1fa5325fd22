"""The keepalive schedule (server/pings.py): every open WebSocket's ping from one loop
timer per interval value, not one timer per connection (issue 15: an idle connection's
memory). These pin what the connections rely on: each is pinged once per interval, in
the order they were scheduled, a cancelled one never is and is let go at once, and
many connections share one timer."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

from conftest import RunningServer, echo_app, open_raw_websocket, parse_frames, read_response

from legato.server.pings import PingSchedule


class Peer:
    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name

    def _send_ping(self) -> None:
        self.log.append(self.name)


def test_pings_come_due_in_order_once_each_from_one_timer_per_interval() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        schedule = PingSchedule(loop)
        log: list[str] = []
        for name in "abc":
            schedule.add(0.05, Peer(log, name))
        schedule.add(0.02, Peer(log, "fast"))
        assert len(schedule._timers) == 2  # one per interval value, not per connection
        await asyncio.sleep(0.15)
        assert log == ["fast", "a", "b", "c"]
        assert schedule._timers == {} and schedule._due == {}  # nothing left running

    asyncio.run(main())


def test_a_cancelled_ping_never_fires_and_its_session_is_let_go_at_once() -> None:
    async def main() -> None:
        schedule = PingSchedule(asyncio.get_running_loop())
        log: list[str] = []
        gone, kept = Peer(log, "gone"), Peer(log, "kept")
        entry = schedule.add(0.05, gone)
        schedule.add(0.05, kept)
        schedule.cancel(entry)
        ref = weakref.ref(gone)
        del gone
        gc.collect()
        assert ref() is None  # not held by the schedule until its deadline
        await asyncio.sleep(0.12)
        assert log == ["kept"]

    asyncio.run(main())


def test_one_failing_ping_does_not_stop_the_others() -> None:
    class Broken(Peer):
        def _send_ping(self) -> None:
            raise RuntimeError("broken")

    async def main() -> None:
        schedule = PingSchedule(asyncio.get_running_loop())
        log: list[str] = []
        schedule.add(0.02, Broken(log, "broken"))
        schedule.add(0.02, Peer(log, "fine"))
        await asyncio.sleep(0.08)
        assert log == ["fine"]

    asyncio.run(main())


def test_every_idle_connection_is_pinged_each_interval_on_the_server(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(echo_app, ws_ping_interval=0.2, ws_ping_timeout=5)
    socks = [open_raw_websocket(server.port, "/echo") for _ in range(20)]
    try:
        time.sleep(0.5)  # two intervals
        for sock, head, rest in socks:
            assert head.startswith(b"HTTP/1.1 101")
            frames = parse_frames(rest + read_response(sock, timeout=0.05))
            # A Ping is sent, then the next only after its Pong: exactly one each.
            assert [f[0] for f in frames] == [0x9]
    finally:
        for sock, _, _ in socks:
            sock.close()
