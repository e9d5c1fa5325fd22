"""How ``legato run --workers N`` spreads long-lived WebSocket connections over its
workers (docs/design.md, "--workers N past 16 cores"): N workers share one listening
socket, and each connection is told which worker took it.

Usage: python bench/workers.py [--workers 2,4] [--connections 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from server import free_port
from websockets.asyncio.client import connect

APPS = Path(__file__).resolve().parent / "servers"


async def spread(workers: int, connections: int) -> list[int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "legato", "run", "pid_app:app",
                             "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning"], cwd=APPS)
    url = f"ws://127.0.0.1:{port}/pid"
    try:
        for _ in range(100):
            try:
                async with connect(url):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # every worker up
        opened: list[Any] = []
        pids: collections.Counter[str] = collections.Counter()

        async def one() -> None:
            ws = await connect(url, compression=None)
            pids[str(await ws.recv())] += 1
            opened.append(ws)

        for _ in range(0, connections, 50):
            await asyncio.gather(*(one() for _ in range(50)))
        for ws in opened:
            await ws.close()
        return sorted(pids.values())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="2,4")
    ap.add_argument("--connections", type=int, default=2000)
    opts = ap.parse_args()
    for workers in (int(w) for w in opts.workers.split(",")):
        started = time.monotonic()
        counts = asyncio.run(spread(workers, opts.connections))
        print(f"--workers {workers}: {opts.connections} connections, per worker {counts} "
              f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
