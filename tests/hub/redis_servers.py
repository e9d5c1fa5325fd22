"""redis-server processes of a test's own: started on a free port, killed, paused and
restarted by their PID only (never any other Redis on the machine); and the Redis a
test session shares (REDIS_URL, or one of its own), for any test folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from ports import free_port


def answers(url: str, timeout: float = 0.5) -> bool:
    """Does a Redis answer PING at ``url``?"""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServer:
    """One redis-server without persistence: a restart starts empty."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not answers(self.url, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: connections end with a RST/EOF, as when a Redis host crashes."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # in case it was paused
            process.kill()
        if process is not None:
            process.wait(timeout=5)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and silent, as behind a network partition."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("these tests need Redis: set REDIS_URL to a running Redis or put "
                    "redis-server on PATH (apt-get install redis-server)")


@contextmanager
def session_redis(workdir: Path) -> Iterator[str]:
    """REDIS_URL (default redis://127.0.0.1:6379) if it answers PING, else a redis-server
    of our own (in ``workdir``) for as long as the block lasts."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    if answers(url):
        yield url
        return
    need_redis_server()
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


def delete_prefix(url: str, prefix: str) -> None:
    """Delete the keys under ``prefix``: a test leaves the shared Redis clean."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
