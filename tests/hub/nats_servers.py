"""nats-server processes of a test's own (JetStream on, its store in the test's tmp
directory): started on a free port, killed, paused and restarted by their PID only
(never the NATS the machine shares); the shared NATS (NATS_URL, default
nats://127.0.0.1:4222) if it answers; and the cleanup of a test's stream and buckets."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

#: The nats-server the fault tests start: NATS_SERVER, else the one on PATH, else Debian's.
NATS_SERVER = (os.environ.get("NATS_SERVER") or shutil.which("nats-server")
               or "/usr/sbin/nats-server")


def answers(url: str, timeout: float = 0.5) -> bool:
    """Does a NATS server greet us (INFO) at ``url``?"""
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


def shared_nats() -> str:
    """The NATS every test may use (its own names in it), or a skip that says why."""
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    if not answers(url):
        pytest.skip(f"the NATS hub tests need a NATS server with JetStream at {url} "
                    "(set NATS_URL, or run nats-server -js)")
    return url


def delete_prefix(url: str, prefix: str) -> None:
    """Delete the stream and the KV buckets of ``prefix`` (what a test made)."""
    import nats  # noqa: PLC0415 - only when a NATS test ran

    from legato.hub.nats import names  # noqa: PLC0415 - the same

    async def delete() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=2)
            found = names(prefix)
            for stream in (found["stream"], f"KV_{found['presence']}", f"KV_{found['once']}"):
                try:
                    await js.delete_stream(stream)
                except Exception:  # noqa: BLE001 - never made: nothing to delete
                    pass
        finally:
            await nc.close()

    asyncio.run(delete())


class NatsServer:
    """One nats-server with JetStream, its store in ``workdir``: a restart keeps it."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = Path(workdir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 5.0, *, empty: bool = False) -> None:
        """Start (``empty``: without the store of the run before, a NATS that lost it)."""
        assert self.process is None, "already running"
        store = self.workdir / "store"
        if empty:
            shutil.rmtree(store, ignore_errors=True)
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not answers(self.url, 0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: connections end at once, as when a NATS host crashes."""
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
        # kill() returns before the signal stops it: wait for the state to say so ("T").
        deadline = time.monotonic() + 5
        stat = Path(f"/proc/{self.process.pid}/stat")
        while stat.read_text().rpartition(")")[2].split()[0] != "T":
            assert time.monotonic() < deadline, "nats-server did not stop"
            time.sleep(0.001)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def need_nats_server() -> None:
    if not os.access(NATS_SERVER, os.X_OK):
        pytest.skip(f"these tests start their own nats-server: none at {NATS_SERVER} "
                    "(set NATS_SERVER)")
