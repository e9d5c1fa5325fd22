"""A burst of channel clients reconnecting at once: how long until all are back, and what
the server's CPU does meanwhile (issue 14: "a burst of 1,000 clients reconnecting").

`--clients` legato.client connections (one process on CPU 0) each join a room
(`room:{i % 50}`) on `legato run` (CPU 1, memory hub). Then the server gets SIGTERM and
a new one starts on the same port at once. Measured from the SIGTERM:

- until every client is connected again and has rejoined its room (p50, p99, all);
- the new server's CPU over the storm (user + system seconds, and the busiest 100 ms
  window as a share of one core), from /proc.

Twice: with the server's reconnect advice (jitter spread over 1 ms per connection,
at least 1 s: the default), and with the spread cut to 1 ms
(`App(channels_reconnect_jitter=0.001)`), the storm the advice exists to prevent.

Usage: python bench/channels_reconnect.py [--clients 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from channels import free_port, legato_run

APP = '''
import os
from legato import App

jitter = os.environ.get("JITTER")
app = App(channels_reconnect_jitter=float(jitter) if jitter else None)
app.channel("room:{id}", history=10)
'''

TICK = os.sysconf("SC_CLK_TCK")


def start(workdir: Path, port: int, jitter: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if jitter:
        env["JITTER"] = jitter
    return legato_run(workdir, "storm_app:app", port, env)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def storm(clients: int, jitter: str | None) -> dict[str, float]:
    from legato.client import Client  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "storm_app.py").write_text(APP)
        port = free_port()
        server = start(workdir, port, jitter)
        url = f"ws://127.0.0.1:{port}/_legato/ws"
        made = [Client(url, base_delay=0.5, max_delay=5.0) for _ in range(clients)]
        topics = []
        for i, client in enumerate(made):
            await client.connect()
            topics.append(await client.join(f"room:{i % 50}"))
        first = [client.conn_id for client in made]
        t_term = time.monotonic()
        server.send_signal(signal.SIGTERM)
        while server.poll() is None:  # the clients keep running: they answer the Close
            await asyncio.sleep(0.005)
        t_gone = time.monotonic() - t_term
        server = await asyncio.to_thread(start, workdir, port, jitter)
        t_up = time.monotonic() - t_term
        cpu0, last, busiest = cpu_seconds(server.pid), None, 0.0
        back: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while len(back) < clients and time.monotonic() < deadline:
            now = time.monotonic()
            for i, (client, topic) in enumerate(zip(made, topics, strict=True)):
                # Back: a new connection, and the room joined again on it.
                if i not in back and client.conn_id != first[i] \
                        and topic.state == "joined":
                    back[i] = now - t_term
            cpu = cpu_seconds(server.pid)
            if last is not None:
                busiest = max(busiest, (cpu - last) / 0.05)
            last = cpu
            await asyncio.sleep(0.05)
        cpu_used = cpu_seconds(server.pid) - cpu0
        times = sorted(back.values())
        for client in made:
            await client.close()
        server.terminate()
        server.wait(20)
    return {"all_s": times[-1] if len(times) == clients else float("nan"),
            "p50_s": statistics.median(times) if times else float("nan"),
            "p99_s": times[max(0, int(len(times) * 0.99) - 1)] if times else float("nan"),
            "back": len(times), "cpu_s": cpu_used, "busiest": min(busiest, 1.0),
            "gone_s": t_gone, "up_s": t_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    opts = parser.parse_args()
    os.sched_setaffinity(0, {0})
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    print(f"{'spread':<22} {'back':>5} {'p50 s':>6} {'p99 s':>6} {'all s':>6} "
          f"{'server CPU s':>12} {'busiest 50 ms':>15} {'old gone s':>10} {'new up s':>8}")
    for label, jitter in (("advice (default)", None), ("advice cut to 1 ms", "0.001")):
        r = asyncio.run(storm(opts.clients, jitter))
        print(f"{label:<22} {r['back']:>5.0f} {r['p50_s']:>6.2f} {r['p99_s']:>6.2f} "
              f"{r['all_s']:>6.2f} {r['cpu_s']:>12.2f} {r['busiest']:>14.0%} "
              f"{r['gone_s']:>10.2f} {r['up_s']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
