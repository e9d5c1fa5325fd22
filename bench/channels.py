"""What the channel protocol (legato.v1, docs/channels.md) costs over a plain WebSocket
route, measured in pairs: both served at once, same run, ratios reported.

Scenarios (one request in flight per connection, `--conns` connections):

  rpc      request/reply: a plain route echoing each message vs ``call`` of an echo rpc
  publish  through the hub: a plain route that publishes what it receives to a topic it is
           subscribed to (the envelope comes back) vs ``pub`` on a joined channel topic
           (the reply and the message come back)

Method (as bench/paired.py): two server processes of the same app (`legato run`), both
pinned to CPU 1 and always runnable, so each gets half of it; each loaded by its own
load generator on CPU 0. The ratio of their rates is the inverse ratio of their costs
per request. The generators are Python (asyncio + uvloop, raw frames prepared once, mask
key 0, RFC 6455 §5.3 allows it); when CPU 0 is above 90 % busy a generator may hold back
its server, which moves the ratio toward 1: the row is flagged '~'.

Usage: python bench/channels.py [--rounds 3] [--duration 3] [--conns 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER_CPU, LOADGEN_CPU = "1", "0"

APP = '''
from legato import App

app = App()
app.channel("room:{id}")


@app.rpc("echo")
async def echo(data):
    return data


@app.websocket("/echo")
async def plain_echo(ws):
    async for message in ws:
        await ws.send(message)


@app.websocket("/room/{id}")
async def plain_room(ws, id: str):
    async with app.hub.subscribe(ws, "room:" + id):
        async for message in ws:
            await app.hub.publish("room:" + id, message)
'''

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(text: str) -> bytes:
    """A masked client text frame with mask key 0 (the payload stays as it is)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + data


class Conn(asyncio.Protocol):
    """One connection: sends ``request``, waits for ``answers`` frames, again."""

    def __init__(self, request: bytes, answers: int, path: str, protocol: str | None,
                 stats: dict[str, Any]) -> None:
        self.request, self.answers, self.stats = request, answers, stats
        self.path, self.protocol = path, protocol
        self.buf = b""
        self.open = False
        self.skip = 1 if protocol else 0  # the welcome frame
        self.pending = 0
        self.t0 = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        extra = f"Sec-WebSocket-Protocol: {self.protocol}\r\n" if self.protocol else ""
        transport.write((f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
                         f"{extra}\r\n").encode())

    def fire(self) -> None:
        self.pending = self.answers
        self.t0 = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(buf[:200].decode(errors="replace"))
            self.open, buf = True, buf[end + 4:]
        pos = 0
        while len(buf) - pos >= 2:
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
            if len(buf) - start < n:
                break
            pos = start + n
            if self.skip:
                self.skip -= 1
                if not self.ready.done():
                    self.ready.set_result(None)
                continue
            self.pending -= 1
            if self.pending == 0:
                stats = self.stats
                if stats["measuring"]:
                    stats["done"] += 1
                    stats["lat"].append(time.perf_counter() - self.t0)
                self.fire()
        self.buf = buf[pos:]
        if not self.skip and not self.ready.done():
            self.ready.set_result(None)


async def load(port: int, scenario: str, channel: bool, conns: int, duration: float
               ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"measuring": False, "done": 0, "lat": []}
    if scenario == "rpc":
        payload = {"n": 1, "text": "hello, world"}
        request = json.dumps({"t": "call", "ref": 1, "name": "echo", "data": payload}) \
            if channel else json.dumps(payload)
        path, answers = ("/_legato/ws", 1) if channel else ("/echo", 1)
    else:
        payload = {"text": "hello, world"}
        path, answers = ("/_legato/ws", 2) if channel else ("/room/{i}", 1)
        request = ""
    made: list[Conn] = []
    for i in range(conns):
        topic = f"room:{i}"
        text = request or (json.dumps({"t": "pub", "ref": 2, "topic": topic,
                                       "data": payload}) if channel else json.dumps(payload))
        conn = Conn(frame(text), answers, path.format(i=i),
                    "legato.v1" if channel else None, stats)
        await loop.create_connection(lambda c=conn: c, "127.0.0.1", port)  # type: ignore[misc]
        await conn.ready
        if channel and scenario == "publish":  # join first, answer read as the welcome
            conn.skip = 1
            conn.transport.write(frame(json.dumps({"t": "join", "ref": 1, "topic": topic})))
            conn.ready = loop.create_future()
            await conn.ready
        made.append(conn)
    for conn in made:
        conn.fire()
    await asyncio.sleep(1.0)  # warm-up
    stats["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    stats["measuring"] = False
    elapsed = time.perf_counter() - t0
    lat = sorted(stats["lat"])
    for conn in made:
        conn.transport.abort()
    return {"rate": stats["done"] / elapsed,
            "p50_ms": lat[len(lat) // 2] * 1000 if lat else None,
            "p99_ms": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "cpu0": None}


def generator_main(args: list[str]) -> None:
    port, scenario, channel, conns, duration = (int(args[0]), args[1], args[2] == "1",
                                                int(args[3]), float(args[4]))
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    before = os.times()
    result = asyncio.run(load(port, scenario, channel, conns, duration))
    after = os.times()
    result["gen_cpu_s"] = (after.user - before.user) + (after.system - before.system)
    print(json.dumps(result), flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def legato_run(workdir: Path, target: str, port: int, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
    """``legato run target`` on CPU 1, once it accepts connections."""
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "legato", "run", target,
         "--port", str(port)], cwd=workdir, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"legato run {target} did not start")


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    return legato_run(workdir, "bench_channels_app:app", port), port


def cpu_busy() -> tuple[float, float]:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{LOADGEN_CPU} "):
                v = [int(x) for x in line.split()[1:]]
                return float(sum(v)), float(v[3] + v[4])
    return 0.0, 0.0


def pair(workdir: Path, scenario: str, conns: int, duration: float) -> dict[str, Any]:
    servers = [start_server(workdir), start_server(workdir)]
    try:
        total0, idle0 = cpu_busy()
        gens = [subprocess.Popen(
            ["taskset", "-c", LOADGEN_CPU, sys.executable, __file__, "--generator",
             str(port), scenario, str(int(channel)), str(conns), str(duration)],
            stdout=subprocess.PIPE)
            for (_, port), channel in zip(servers, (False, True), strict=True)]
        outs = [json.loads(g.communicate(timeout=duration + 60)[0]) for g in gens]
        total1, idle1 = cpu_busy()
        busy = 1 - (idle1 - idle0) / max(1.0, total1 - total0)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(10)
    plain, channel = outs
    return {"plain": plain, "channel": channel, "cpu0_busy": busy}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--generator":
        generator_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--scenarios", default="rpc,publish")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "bench_channels_app.py").write_text(APP)
        print(f"{'scenario':<9} {'plain msg/s':>12} {'channel msg/s':>14} {'ratio':>6} "
              f"{'plain p99 ms':>13} {'channel p99 ms':>15}  cpu0")
        for scenario in opts.scenarios.split(","):
            runs = [pair(workdir, scenario, opts.conns, opts.duration)
                    for _ in range(opts.rounds)]
            plain = statistics.median(r["plain"]["rate"] for r in runs)
            chan = statistics.median(r["channel"]["rate"] for r in runs)
            p99p = statistics.median(r["plain"]["p99_ms"] for r in runs)
            p99c = statistics.median(r["channel"]["p99_ms"] for r in runs)
            busy = max(r["cpu0_busy"] for r in runs)
            flag = "~" if busy > 0.9 else " "
            print(f"{scenario:<9} {plain:>12,.0f} {chan:>14,.0f} {chan / plain:>5.2f}{flag} "
                  f"{p99p:>13.2f} {p99c:>15.2f}  {busy:.0%}", flush=True)


if __name__ == "__main__":
    main()
