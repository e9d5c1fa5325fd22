"""SPEC §8: the chat across two processes through Redis, with one command
(``python examples/chat_redis.py``): two real server processes on two ports, a real Redis,
clients from the ``websockets`` library; a message typed on either process reaches the
other, and Ctrl-C stops both. Every process started here is stopped by its PID."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ports import free_port, port_is_open

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "examples" / "chat_redis.py"
sys.path.insert(0, str(ROOT / "tests" / "hub"))
from redis_servers import delete_prefix, session_redis  # noqa: E402

WAIT = 30.0  # seconds for anything to happen on a loaded machine


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with session_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def hub(redis_url: str) -> Iterator[str]:
    """The hub URL the example gets: a key prefix of this test's own, deleted after."""
    prefix = f"legato-test-{uuid.uuid4().hex[:12]}"
    yield f"{redis_url}?prefix={prefix}"
    delete_prefix(redis_url, prefix)


class Script:
    """``python examples/chat_redis.py ...`` and what it prints, line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.printed: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def servers(self, count: int) -> dict[int, int]:
        """Port → PID of each server, once the script says they all serve."""
        found: dict[int, int] = {}
        deadline = time.monotonic() + WAIT
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"printed only {self.printed}: {self.stderr()}") from None
            self.printed.append(line)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/\s+\(pid (\d+)\)", line)
            if match:
                found[int(match[1])] = int(match[2])
        return found

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def said(ws: Any, text: str) -> dict[str, Any]:
    """The next chat message with ``text`` (joins and the history come first)."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), WAIT))["data"]
        if event.get("type") == "message" and event["text"] == text:
            return event


async def talk(port_a: int, port_b: int) -> None:
    from websockets.asyncio.client import connect

    room = f"ws://127.0.0.1:{{}}/ws/lobby-{uuid.uuid4().hex[:6]}?name={{}}"
    async with connect(room.format(port_a, "ann")) as ann, \
            connect(room.format(port_b, "bob")) as bob:
        await ann.send(json.dumps({"text": "from A to B"}))
        assert (await said(bob, "from A to B"))["user"] == "ann"
        await bob.send(json.dumps({"text": "from B to A ♪"}))
        assert (await said(ann, "from B to A ♪"))["user"] == "bob"


def test_the_chat_runs_on_two_processes_through_redis_with_one_command(hub: str) -> None:
    ports = [free_port(), free_port()]
    script = Script("--redis", hub, "--ports", *map(str, ports))
    servers: dict[int, int] = {}
    try:
        servers = script.servers(2)
        assert sorted(servers) == sorted(ports)
        assert len(set(servers.values()) | {script.proc.pid}) == 3  # three processes
        asyncio.run(talk(*ports))

        script.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert script.proc.wait(WAIT) == 0, script.stderr()
        assert not any(alive(pid) for pid in servers.values())
        assert not any(port_is_open(port) for port in ports)
    finally:
        if script.proc.poll() is None:
            script.proc.kill()
            script.proc.wait(5)
        for pid in servers.values():  # only if the script failed to stop them
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_without_redis_the_script_says_so_in_one_line() -> None:
    script = Script("--redis", f"redis://127.0.0.1:{free_port()}/0", "--ports",
                    str(free_port()), str(free_port()))
    assert script.proc.wait(WAIT) == 1
    error = script.stderr()
    assert error.startswith("chat_redis: no Redis answers at redis://127.0.0.1:")
    assert error.count("\n") == 1 and "Traceback" not in error


def test_a_server_that_cannot_start_stops_the_others(hub: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: nobody answers there
        port, other = taken.getsockname()[1], free_port()
        script = Script("--redis", hub, "--ports", str(other), str(port))
        assert script.proc.wait(WAIT) == 1
    assert f"the server on port {port} did not start" in script.stderr()
    assert not port_is_open(other)
