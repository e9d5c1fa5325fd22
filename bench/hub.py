"""Hub broadcast benchmark: legato's hub against a naive send() loop, the websockets
library's broadcast() and socketify's native pub/sub, in one run (SPEC §6, P2/P4).

Servers (apps in bench/servers/, each written as a user of that library would write it):
  legato-hub         legato App(hub_envelope=False): /sub ``await app.hub.subscribe(ws,
                     "bench")`` then waits for the connection to end; /pub ``await
                     app.hub.publish("bench", message)`` (legato_hub_app.py). Without the
                     envelope the subscribers get the published text as is, so every
                     server sends the same 64 B text frame.
  legato-naive       the same App looping over a set of subscribers with ``await
                     ws.send(message)`` (legato_framework_app.py).
  websockets         the websockets asyncio server on uvloop, ``broadcast(subscribers,
                     message)`` (websockets_app.py --broadcast).
  socketify          socketify (uWebSockets): ``ws.subscribe("bench")`` on open and
                     ``app.publish("bench", message, opcode)`` (socketify_app.py).
  uvicorn+starlette  Starlette under uvicorn (uvloop, httptools), a send_text() loop: the
                     baseline every ratio is taken against (starlette_app.py).
  legato-hub-redis   legato_hub_app.py with App(hub="redis://..."), served by ``legato run
                     --workers 2``: the kernel spreads the subscribers (and the publisher)
                     over both workers, so every broadcast crosses Redis (XADD + PUBLISH
                     by the publisher's worker, then each worker's pub/sub reader) to
                     reach the other worker's subscribers. A redis-server of its own is
                     started for each run (fresh, no persistence) unless REDIS_URL is set.

CPUs: the load generator (bench/loadgen.c, built by bench/server.py's harness) runs on
CPU 0; every server on CPU 1. For legato-hub-redis the supervisor, both workers and the
redis-server are all pinned to CPU 1 by default (``--redis-cpus 1``), so the server side
of every run has one core and the Redis figures are the cost of crossing processes at an
equal CPU budget; ``--redis-cpus 0,1`` lets them spread over both CPUs (sharing CPU 0
with the load generator, so its latency figures get noisier). The redis-server's CPU
counts as server CPU. A REDIS_URL server is neither started nor pinned nor counted.

Scenarios: bcast_N for N = 1,000, 5,000 and 10,000 subscribers (--quick: 200, 500,
1,000). A publisher connection sends a 64 B text message carrying a sequence number and
a send timestamp; a new one whenever fewer than 2 broadcasts are incompletely delivered;
deliveries/s and p50/p99 delivery latency (publish to receipt) over a fixed window after
a warm-up. Every subscriber must receive every broadcast exactly once, in order, or the
run FAILs and is not counted (see bench/loadgen.c). hop_100, run by legato-hub and
legato-hub-redis only, is a latency probe: 100 subscribers and one broadcast in flight, so
its latency is one fan-out plus, for Redis, the trip through it (the bcast_N latencies
are mostly queueing behind the fan-out of the previous broadcast, so their difference
between backends says little about the trip). Each server is a fresh subprocess per
run; servers are interleaved within a round; the best passing run of ``--repeat`` counts;
a run with other processes above --max-noise cores of CPU is retried.

Report: deliveries/s, p50/p99 per server, ratio to uvicorn+starlette (> 1 = better;
latency: baseline/server); the bar: legato-hub deliveries/s >= socketify's at 5,000
subscribers (``--quick``: at the middle size); Redis: deliveries/s of legato-hub-redis
against legato-hub (memory) and the latency it adds (p50/p99 difference; hop_100 is the
one to read for the trip through Redis), and how the kernel spread the subscribers over
the two workers.

Reading the figures: at this window (2 broadcasts in flight) both legato-hub and
uWebSockets (socketify) send the broadcasts queued for a subscriber during one event-loop
iteration in one send() -- about 0.5 system calls per delivery -- and on loopback the
kernel's TCP path is nearly all the cost (perf: ~93% of legato-hub's server CPU, ~89% of
socketify's; legato-hub's loop over subscribers is C, legato.server.direct). Both then
sit close to the load generator's own limit (its CPU is shown per run; '~' marks > 90%).

Profiling: ``--profile N`` runs legato-hub alone under cProfile at N subscribers (one
round) and prints where the server's time goes (the server is stopped with SIGTERM, so
its profile is written on the way out).

Publish rate (issue 15 goal 3, issue 18 item 1): ``--publish-rate`` measures the Redis
backend alone in this process, no server: publishes/s of one handler awaiting each
publish in a loop (one in flight), of 100 publishers looping concurrently and of one
``asyncio.gather`` of 20,000 publishes (how many succeed), all through one backend (one
command connection when pipelined); and presence: 10,000 joins gathered at once (how
long, and how many Redis holds right after), ``members()`` / ``count()`` of the
10,000-member room, and how long 10,000 leaves gathered at once take to be gone from
Redis (until ``members()`` is empty). A redis-server of its
own on CPU 1 (unless REDIS_URL is set); this process on CPU 0.

Faults (issue 18 items 4 and 9): ``--faults`` runs the Redis backend with its default
settings against a redis-server of its own and measures (a) how long a hung Redis
(SIGSTOP of that server) takes to be reported (the ``disconnected`` event), and (b)
after a Redis restart (SIGKILL, then the same port again), how long a publish that Redis
acknowledged waits before this process's own subscriber gets it (the hold).

Usage: python bench/hub.py --publish-rate [--duration S]
       python bench/hub.py --faults
       python bench/hub.py [--quick] [--only legato-hub,socketify,...] [--json PATH]
       [--repeat N] [--duration S] [--redis-cpus 1|0,1] [--profile N]
       Full run ~10 min (3 rounds); --quick ~1.5 min (a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as harness  # noqa: E402 - bench/server.py: processes, loadgen, formatting

APPS = harness.APPS
PY = sys.executable
BASELINE = "uvicorn+starlette"
HUB, RIVAL, REDIS = "legato-hub", "socketify", "legato-hub-redis"


@dataclass
class Spec:
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    redis: bool = False
    module: str = ""  # the package whose import proves the server can run


LEGATO_RUN = [PY, "-m", "legato", "run"]
SERVERS: dict[str, Spec] = {
    "legato-hub": Spec(LEGATO_RUN + ["legato_hub_app:app", "--port", "{port}"],
                       {"LEGATO_BENCH_HUB": "memory://"}, module="legato"),
    "legato-naive": Spec(LEGATO_RUN + ["legato_framework_app:app", "--port", "{port}"],
                         module="legato"),
    "websockets": Spec([PY, "websockets_app.py", "{port}", "--broadcast"], module="websockets"),
    "socketify": Spec([PY, "socketify_app.py", "{port}"], module="socketify"),
    "uvicorn+starlette": Spec([PY, "starlette_app.py", "{port}"], module="uvicorn"),
    "legato-hub-redis": Spec(LEGATO_RUN + ["legato_hub_app:app", "--port", "{port}",
                                           "--workers", "2"],
                             {"LEGATO_BENCH_HUB": "{redis}"}, workers=2, redis=True,
                             module="redis"),
}
PACKAGES = ["legato", "websockets", "socketify", "uvicorn", "starlette", "uvloop",
            "httptools", "redis"]


def scenarios(quick: bool) -> list[harness.Scenario]:
    sizes = (200, 500, 1000) if quick else (1000, 5000, 10_000)
    return [harness.Scenario(f"bcast_{n}", "bcast", dict(path="/sub", subs=n, window=2),
                             f"broadcast 64 B to {n:,} subscribers") for n in sizes] + [
        harness.Scenario("hop_100", "bcast", dict(path="/sub", subs=100, window=1),
                         "latency probe: 100 subscribers, one broadcast in flight")]


#: Scenarios run by some servers only: the latency probe compares the hub's backends.
ONLY = {"hop_100": (HUB, REDIS)}


def runs(srv: str, sc: harness.Scenario) -> bool:
    return srv in ONLY.get(sc.name, (srv,))


def figures(scens: list[harness.Scenario]) -> list[harness.Figure]:
    out = []
    for sc in scens:
        n = sc.args["subs"]
        out += [harness.Figure(sc.name, f"{n:,} subs  deliveries/s", sc.name, "del/s"),
                harness.Figure(f"{sc.name}_p50", "   p50 delivery latency", sc.name, "us",
                               False, False),
                harness.Figure(f"{sc.name}_p99", "   p99 delivery latency", sc.name, "us",
                               False, False)]
    return out


# ------------------------------------------------------------------------- processes


def pinned(cpus: set[int]) -> Any:
    def setup() -> None:
        os.sched_setaffinity(0, cpus)
        harness.raise_nofile()
    return setup


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server of our own for one run: fresh, no persistence, pinned with the
    workers; stopped by PID."""

    def __init__(self, logdir: Path, cpus: set[int], port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not on PATH (apt-get install redis-server) "
                               "and REDIS_URL not set")
        self.port = port or harness.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = open(logdir / "redis-server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--maxclients", "1000"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=pinned(cpus), start_new_session=True)
        deadline = time.monotonic() + 10
        while not redis_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class HubServer(harness.ServerProcess):
    """bench/server.py's server process, with an environment, a CPU set, a
    redis-server when the app needs one, and readiness of every worker."""

    redis_cpus: set[int] = {harness.SERVER_CPU}
    cprofile: Path | None = None

    def __init__(self, name: str, logdir: Path) -> None:
        self.name = name
        self.spec = spec = SERVERS[name]
        self.port = harness.free_port()
        self.redis: RedisServer | None = None
        self.peaks: list[int] = []
        cpus = self.redis_cpus if spec.redis else {harness.SERVER_CPU}
        url = os.environ.get("REDIS_URL", "")
        if spec.redis and not url:
            self.redis = RedisServer(logdir, cpus)
            url = self.redis.url
        env = dict(os.environ, **{k: v.format(redis=url) for k, v in spec.env.items()})
        cmd = [part.format(port=self.port) for part in spec.cmd]
        if self.cprofile is not None:
            cmd = [PY, "-m", "cProfile", "-o", str(self.cprofile)] + cmd[1:]
        logfile = logdir / f"{name}.log"
        self.log_from = logfile.stat().st_size if logfile.exists() else 0
        self.logfile = logfile
        self.log = open(logfile, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=APPS, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=pinned(cpus), start_new_session=True)
        self.pids: list[int] = [self.proc.pid]

    def log_text(self) -> str:
        with open(self.logfile, "rb") as f:
            f.seek(self.log_from)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        if self.spec.workers > 1:  # every worker serving, or one takes all the sockets
            while self.log_text().count("bench-worker") < self.spec.workers:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: workers not ready after {timeout} s")
                time.sleep(0.1)
        super().wait_ready(max(1.0, deadline - time.monotonic()))
        if self.redis is not None:
            self.pids.append(self.redis.proc.pid)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.redis is not None:
                self.redis.stop()
        self.peaks = [int(line.split()[-1]) for line in self.log_text().splitlines()
                      if line.startswith("bench-worker") and "peak-subscribers" in line]


def run_one(loadgen: Path, name: str, scen: harness.Scenario, timing: dict[str, float],
            logdir: Path) -> dict[str, Any]:
    made: list[HubServer] = []

    def make(server: str, where: Path) -> HubServer:
        made.append(HubServer(server, where))
        return made[-1]

    try:
        result = harness.run_one(loadgen, name, scen, timing, logdir, make_server=make)
    except RuntimeError as exc:  # the redis-server did not start
        return {"ok": False, "error": str(exc)}
    if made and SERVERS[name].workers > 1:
        result["worker_subscribers"] = made[-1].peaks
    return result


def available(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    module = SERVERS[name].module
    done = subprocess.run([PY, "-c", f"import {module}"], capture_output=True, text=True,
                          cwd=APPS)
    if done.returncode:
        lines = done.stderr.strip().splitlines()
        return f"import {module} failed: {lines[-1] if lines else done.returncode}"
    return None


# ---------------------------------------------------------------------------- report


def value(fig: harness.Figure, scen: harness.Scenario, res: dict[str, Any]) -> float | None:
    return harness.value_of(fig, scen, res)


def report(servers: list[str], scens: list[harness.Scenario],
           done: dict[tuple[str, str], list[dict[str, Any]]], meta: dict[str, Any],
           bar_scen: str) -> dict[str, Any]:
    by_name = {s.name: s for s in scens}
    chosen = {(srv, sc.name): harness.best(done[srv, sc.name], sc)
              for srv in servers for sc in scens if (srv, sc.name) in done}
    all_scens, scens = scens, [sc for sc in scens if sc.name not in ONLY]
    table: dict[str, dict[str, Any]] = {}
    width = 21
    lines = ["", f"{'figure':<30}" + "".join(f"{s:>{width}}" for s in servers)]
    lines.append("-" * len(lines[-1]))
    for fig in figures(scens):
        sc = by_name[fig.scenario]
        base = value(fig, sc, chosen[BASELINE, sc.name]) if BASELINE in servers else None
        row = table[fig.key] = {"label": fig.label, "unit": fig.unit, "servers": {}}
        cells = []
        for srv in servers:
            res = chosen[srv, sc.name]
            val = value(fig, sc, res)
            rat = harness.ratio(fig, val, base)
            bound = bool(res.get("loadgen_cpu", 0) > 0.9)
            row["servers"][srv] = {"value": val, "ratio": rat, "loadgen_bound": bound}
            text = harness.fmt(val, fig.unit)
            if bound and val is not None and fig.headline:
                text = "~" + text
            if rat is not None and srv != BASELINE:
                text += f" ({rat:.2f}x)"
            cells.append(f"{text:>{width}}")
        lines.append(f"{fig.label:<30}" + "".join(cells))
    lines += ["", "Ratios vs uvicorn+starlette, > 1 = better (latency: baseline/server).",
              "'~': the load generator used > 90% of its CPU in that run (a lower bound)."]

    # The bar: legato-hub >= socketify at the middle size.
    verdict: dict[str, Any] = {"scenario": bar_scen}
    if bar_scen in by_name and HUB in servers:
        fig = next(f for f in figures(scens) if f.key == bar_scen)
        hub = value(fig, by_name[bar_scen], chosen[HUB, bar_scen])
        rival = (value(fig, by_name[bar_scen], chosen[RIVAL, bar_scen])
                 if RIVAL in servers else None)
        verdict.update(legato_hub=hub, socketify=rival)
        if hub is not None and rival is not None:
            verdict["ratio"] = hub / rival
            verdict["ok"] = hub >= rival
            lines.append(f"\nBAR ({bar_scen}: legato-hub >= socketify deliveries/s): "
                         f"{hub:,.0f} vs {rival:,.0f} = {hub / rival:.2f}x  "
                         f"{'OK' if hub >= rival else 'MISS'}")
        else:
            lines.append(f"\nBAR ({bar_scen}): not measured "
                         f"(legato-hub {harness.fmt(hub, 'del/s')}, "
                         f"socketify {harness.fmt(rival, 'del/s')})")
        rounds = sorted({r.get("round", 1) for rs in done.values() for r in rs})
        if rival is not None and len(rounds) > 1:
            lines.append("legato-hub / socketify within each round (same conditions):")
            for sc in scens:
                fig = next(f for f in figures(scens) if f.key == sc.name)
                per = []
                for rnd in rounds:
                    pair = [harness.best([r for r in done[s, sc.name] if r.get("round") == rnd]
                                         or [{"ok": False}], sc) for s in (HUB, RIVAL)]
                    vals = [value(fig, sc, r) for r in pair]
                    per.append(harness.ratio(fig, vals[0], vals[1]))
                lines.append(f"  {sc.name:<14}" + "  ".join(
                    "  -  " if x is None else f"{x:.2f}" for x in per))

    # Redis against memory.
    redis_rows: dict[str, Any] = {}
    if REDIS in servers and HUB in servers:
        lines += ["", f"Redis backend, 2 workers ({REDIS}) against the memory backend "
                  f"({HUB}, 1 process):",
                  f"  {'scenario':<14}{'redis del/s':>14}{'memory del/s':>14}{'ratio':>8}"
                  f"{'p50 added':>12}{'p99 added':>12}   subscribers per worker"]
        for sc in all_scens:
            rr, mm = chosen[REDIS, sc.name], chosen[HUB, sc.name]
            rate = [value(next(f for f in figures(all_scens) if f.key == sc.name), sc, r)
                    for r in (rr, mm)]
            ok = rr.get("ok") and mm.get("ok")
            add50 = rr["p50_us"] - mm["p50_us"] if ok else None
            add99 = rr["p99_us"] - mm["p99_us"] if ok else None
            rat = rate[0] / rate[1] if rate[0] and rate[1] else None
            split = rr.get("worker_subscribers") or []
            redis_rows[sc.name] = {"redis": rate[0], "memory": rate[1], "ratio": rat,
                                   "p50_added_us": add50, "p99_added_us": add99,
                                   "worker_subscribers": split}

            def us(x: float | None) -> str:
                if x is None:
                    return "-"
                return f"{x / 1000:+.2f} ms" if abs(x) >= 1000 else f"{x:+.0f} us"
            lines.append(f"  {sc.name:<14}{harness.fmt(rate[0], 'del/s'):>14}"
                         f"{harness.fmt(rate[1], 'del/s'):>14}"
                         f"{'-' if rat is None else f'{rat:.2f}x':>8}{us(add50):>12}"
                         f"{us(add99):>12}   {' + '.join(map(str, split)) or '?'}")

    lines += ["", "Chosen runs: loadgen CPU / server CPU / CPU 1 busy / other processes' CPU"
              " (cores; '!' = noisy)",
              f"{'scenario':<14}" + "".join(f"{s:>{width}}" for s in servers)]
    for sc in all_scens:
        cells = []
        for srv in servers:
            r = chosen.get((srv, sc.name), {"ok": None})
            if r["ok"] is None:
                cells.append(f"{'-':>{width}}")
                continue
            if not r.get("ok"):
                cells.append(f"{'FAIL':>{width}}")
                continue
            cells.append((f"{r['loadgen_cpu']:.2f}/{r['server_cpu']:.2f}/{r['cpu1_busy']:.2f}"
                          f"/{r.get('other_cpu', 0):.2f}" + ("!" if r.get("noisy") else " "))
                         .rjust(width))
        lines.append(f"{sc.name:<14}" + "".join(cells))
    failures = [(srv, sc, r) for (srv, sc), rs in done.items() for r in rs if not r.get("ok")]
    if failures:
        lines += ["", "FAILED runs (not counted):"]
        for srv, sc, r in failures:
            lines.append(f"  {srv} {sc}: {r.get('error')} "
                         f"(mismatches {r.get('mismatches')}, lost {r.get('lost')})")
    for srv, why in meta.get("skipped", {}).items():
        lines.append(f"SKIPPED {srv}: {why}")
    print("\n".join(lines))
    return {"meta": meta, "figures": table, "bar": verdict, "redis": redis_rows,
            "runs": {f"{srv}/{sc}": rs for (srv, sc), rs in done.items()}}


# --------------------------------------------------------------------------- profile


def profile(loadgen: Path, subs: int, timing: dict[str, float], workdir: Path) -> int:
    """legato-hub under cProfile at ``subs`` subscribers: where the server's time goes."""
    out = workdir / "legato-hub.prof"
    HubServer.cprofile = out
    scen = harness.Scenario(f"bcast_{subs}", "bcast", dict(path="/sub", subs=subs, window=2),
                            "profile")
    res = run_one(loadgen, HUB, scen, timing, workdir)
    HubServer.cprofile = None
    rate = res["count"] / res["seconds"] if res.get("seconds") else 0
    print(f"legato-hub under cProfile, {subs} subscribers: {rate:,.0f} deliveries/s "
          f"(profiling slows it), ok={res.get('ok')} {res.get('error') or ''}")
    if not out.exists():
        print("no profile written (did the server exit cleanly on SIGTERM?)")
        return 1
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(30)
    print(f"profile kept in {out} (python -m pstats {out})")
    return 0 if res.get("ok") else 1


# ----------------------------------------------------------------------- publish rate


def publish_rate(duration: float, workdir: Path) -> int:
    """The Redis backend alone: publishes/s and presence costs (see the docstring)."""
    import asyncio  # noqa: PLC0415 - only this mode runs a loop here

    from legato.hub.backend import HubUnavailable  # noqa: PLC0415
    from legato.hub.redis import RedisBackend  # noqa: PLC0415

    url = os.environ.get("REDIS_URL", "")
    server = None if url else RedisServer(workdir, {harness.SERVER_CPU})
    url = url or server.url  # type: ignore[union-attr]

    async def serial(backend: Any) -> float:
        count, end = 0, time.perf_counter() + duration
        while time.perf_counter() < end:
            await backend.publish("bench:serial", "x" * 64)
            count += 1
        return count / duration

    async def concurrent(backend: Any, publishers: int = 100) -> tuple[float, int]:
        counts, failed = [0] * publishers, [0]
        end = time.perf_counter() + duration

        async def one(n: int) -> None:
            while time.perf_counter() < end:
                try:
                    await backend.publish(f"bench:c{n % 10}", "x" * 64)
                except HubUnavailable:
                    failed[0] += 1
                else:
                    counts[n] += 1
        await asyncio.gather(*(one(n) for n in range(publishers)))
        return sum(counts) / duration, failed[0]

    async def burst(backend: Any, n: int = 20_000) -> tuple[int, float]:
        started = time.perf_counter()
        done = await asyncio.gather(*(backend.publish("bench:burst", "x" * 64)
                                      for _ in range(n)), return_exceptions=True)
        ok = sum(1 for d in done if isinstance(d, str))
        return ok, time.perf_counter() - started

    async def presence(backend: Any, n: int = 10_000) -> dict[str, float]:
        members = [f"m{i}" for i in range(n)]
        out: dict[str, float] = {}
        started = time.perf_counter()
        await asyncio.gather(*(backend.join("bench:room", m, {"n": m}) for m in members))
        out["join_burst_ms"] = (time.perf_counter() - started) * 1000
        out["join_burst_written"] = len(await backend.members("bench:room"))
        for m in members:  # one at a time: the whole room, whatever the burst did
            await backend.join("bench:room", m, {"n": m})
        for _ in range(2):  # the second read: warm
            started = time.perf_counter()
            found = await backend.members("bench:room")
            out["members_ms"] = (time.perf_counter() - started) * 1000
        out["members_found"] = len(found)
        if hasattr(backend, "count"):
            started = time.perf_counter()
            out["count"] = await backend.count("bench:room")
            out["count_ms"] = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        await asyncio.gather(*(backend.leave("bench:room", m) for m in members))
        while (await backend.members("bench:room")) and time.perf_counter() - started < 30:
            await asyncio.sleep(0.01)
        out["leave_all_ms"] = (time.perf_counter() - started) * 1000
        return out

    async def run() -> dict[str, Any]:
        backend = RedisBackend(url, prefix=f"bench{os.getpid()}")
        await backend.start(lambda *a: None, lambda *a: None)
        try:
            res: dict[str, Any] = {"serial_per_s": await serial(backend)}
            res["concurrent_100_per_s"], res["concurrent_100_failed"] = \
                await concurrent(backend)
            ok, took = await burst(backend)
            res.update(burst_ok=ok, burst_per_s=ok / took)
            res.update(await presence(backend))
            return res
        finally:
            await backend.stop()

    try:
        with suppress(ImportError):
            import uvloop  # noqa: PLC0415
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        res = asyncio.run(run())
    finally:
        if server is not None:
            server.stop()
    print("Redis backend, one process (CPU 0), redis-server on CPU 1:")
    for name, val in res.items():
        print(f"  {name:24} {val:>12,.1f}")
    return 0


def faults(workdir: Path) -> int:
    """Hung-Redis detection and the hold after a restart (see the docstring)."""
    import asyncio  # noqa: PLC0415

    from legato.hub.redis import RedisBackend  # noqa: PLC0415

    server = RedisServer(workdir, {harness.SERVER_CPU})
    got: list[tuple[float, Any]] = []
    events: list[tuple[float, str]] = []

    async def until(kind: str, limit: float = 30.0) -> float | None:
        start = time.perf_counter()
        while not any(k == kind and t >= start - 1e-3 for t, k in events):
            if time.perf_counter() - start > limit:
                return None
            await asyncio.sleep(0.005)
        return max(t for t, k in events if k == kind)

    async def run() -> dict[str, Any]:
        nonlocal server
        backend = RedisBackend(server.url, prefix="faults")
        await backend.start(lambda t, i, p, k=None: got.append((time.perf_counter(), p)),
                            lambda kind, d: events.append((time.perf_counter(), kind)))
        await backend.listen("room")
        res: dict[str, Any] = {}
        try:
            await asyncio.sleep(0.5)
            os.kill(server.proc.pid, signal.SIGSTOP)
            stopped = time.perf_counter()
            seen = await until("disconnected")
            res["hung_reported_after_s"] = None if seen is None else seen - stopped
            os.kill(server.proc.pid, signal.SIGCONT)
            await until("reconnected")
            await asyncio.sleep(0.5)
            port = server.port
            server.proc.kill()
            server.proc.wait(5)
            await until("disconnected")
            await asyncio.sleep(2.0)  # an outage of 2 s: the backoff has grown
            server = RedisServer(workdir, {harness.SERVER_CPU}, port=port)
            while True:  # publish until Redis acknowledges one
                try:
                    await backend.publish("room", "after")
                    break
                except Exception:  # noqa: BLE001 - HubUnavailable, old or new
                    await asyncio.sleep(0.01)
            acked = time.perf_counter()
            while not any(p == "after" for _, p in got):
                if time.perf_counter() - acked > 30:
                    break
                await asyncio.sleep(0.002)
            local = [t for t, p in got if p == "after"]
            res["hold_after_restart_s"] = local[0] - acked if local else None
        finally:
            await backend.stop()
        return res

    try:
        res = asyncio.run(run())
    finally:
        server.stop()
    print("Redis backend, default settings, redis-server of its own:")
    for name, val in res.items():
        print(f"  {name:24} {'never' if val is None else f'{val:.3f}'}")
    return 0


# ------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    harness.add_common_arguments(ap, SERVERS, quick_minutes="1.5")
    ap.add_argument("--redis-cpus", default=str(harness.SERVER_CPU),
                    help="CPUs for legato-hub-redis's workers and redis-server (default 1)")
    ap.add_argument("--profile", type=int, metavar="SUBS",
                    help="only profile legato-hub (cProfile) at SUBS subscribers")
    ap.add_argument("--publish-rate", action="store_true",
                    help="only the Redis backend's publish rate and presence costs")
    ap.add_argument("--faults", action="store_true",
                    help="only hung-Redis detection and the hold after a Redis restart")
    opts = ap.parse_args()
    if opts.faults:
        return faults(Path(tempfile.mkdtemp(prefix="legato-hub-bench-")))
    if opts.publish_rate:
        os.sched_setaffinity(0, {harness.LOADGEN_CPU})
        return publish_rate(opts.duration or 3.0,
                            Path(tempfile.mkdtemp(prefix="legato-hub-bench-")))
    servers = list(SERVERS) if not opts.only else [s.strip() for s in opts.only.split(",")]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        ap.error(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs (servers on CPU 1, load generator on CPU 0)")
    HubServer.redis_cpus = {int(c) for c in opts.redis_cpus.split(",")}
    scens = scenarios(opts.quick)
    if opts.scenarios:
        wanted = opts.scenarios.split(",")
        scens = [s for s in scens if s.name in wanted]
    bar_scen = scenarios(opts.quick)[1].name
    repeat = opts.repeat or (1 if opts.quick else 3)
    timing = {"warmup": 0.3 if opts.quick else 1.0,
              "duration": opts.duration or (1.0 if opts.quick else 5.0)}
    os.sched_setaffinity(0, {harness.LOADGEN_CPU})
    harness.raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="legato-hub-bench-"))
    loadgen = harness.build_loadgen(workdir)
    if opts.profile:
        return profile(loadgen, opts.profile, timing, workdir)

    skipped = {}
    for srv in list(servers):
        why = available(srv)
        if why:
            skipped[srv] = why
            servers.remove(srv)
            print(f"skipping {srv}: {why}", flush=True)
    meta = harness.collect_meta(
        PACKAGES, repeat=repeat, **timing, quick=opts.quick,
        redis_cpus=sorted(HubServer.redis_cpus), redis_url=os.environ.get("REDIS_URL"),
        skipped=skipped)
    try:
        meta["redis_server"] = subprocess.run(["redis-server", "--version"], capture_output=True,
                                              text=True).stdout.strip()
    except OSError:
        pass
    print(f"servers: {', '.join(servers)}; {repeat} round(s) x {len(scens)} scenarios; "
          f"window {timing['duration']} s after {timing['warmup']} s warm-up; "
          f"{REDIS} on CPU(s) {opts.redis_cpus}", flush=True)
    done, scens = harness.run_rounds(
        servers, scens, repeat, opts, meta,
        lambda srv, sc: run_one(loadgen, srv, sc, timing, workdir), harness.progress_line,
        applies=runs)
    return harness.finish(opts, workdir, done, report(servers, scens, done, meta, bar_scen))


if __name__ == "__main__":
    sys.exit(main())
