"""WebSocket server benchmark: legato's built-in server against its peers, in one run.

Servers (apps in bench/servers/, each written as a user of that server would write it):
  legato             a plain ASGI 3 app under ``python -m legato run`` (ServerConfig defaults)
  uvicorn+starlette  Starlette under uvicorn, loop=uvloop, http=httptools, ws=default
                     (the baseline every ratio is taken against)
  aiohttp            aiohttp.web, websockets            the ``websockets`` asyncio server,
  tremolo            tremolo's own WebSocket handlers,  picows  picows' Cython server.
Every asyncio server runs on uvloop. No client offers permessage-deflate, so every
server is compared uncompressed (legato negotiates compression only when offered).

How: each server runs as its own subprocess pinned to CPU 1, started fresh for every
scenario and stopped (SIGTERM, then SIGKILL, by PID) after it. The load generator is a
small C program (bench/loadgen.c: one thread, epoll, masked client frames) compiled
with gcc at bench time and pinned to CPU 0. Scenarios are interleaved across servers and
repeated ``--repeat`` times; the best run counts (other work on this machine only ever
makes a server look slower; a latency is the lowest of the runs), and a run whose checks
fail is never counted.

Scenarios (after a warm-up, a fixed measuring window; all bounded and self-stopping):
  a) echo_rr    64 connections, each sends a 32 B text message and waits for its echo:
                messages/s, p50/p99 round trip.
  b) echo_pipe  the same with 16 messages in flight per connection: messages/s.
  c) echo_64k   64 KiB binary echo over 8 connections, one in flight each: MB/s
                (10**6 B of payload received back per second).
  d) bcast_N    N = 1,000 and 5,000 subscribers; a publisher connection sends a 64 B text
                message carrying a sequence number and a send timestamp, the server
                loops over its set of subscribers sending it to each; a new broadcast is
                published whenever fewer than 2 are incompletely delivered: deliveries/s
                and p50/p99 delivery latency (publish to receipt).
  e) handshake  50 concurrent clients loop: connect, upgrade, close handshake (client
                Close, server Close, then the client closes its socket): handshakes/s.
  f) idle_rss   10,000 open connections: (server RSS after opening them - RSS before)
                / 10,000, in KiB (RLIMIT_NOFILE raised in both processes). The RSS is
                the sum over the server's process tree (tremolo runs a worker child).

Correctness (a run that fails one is marked FAIL and not counted; the exit status is 1):
every echo must equal what that connection sent, in order; after the window every
message sent must have been answered; every subscriber must receive every broadcast
exactly once and in order; every handshake must return 101 with the right
Sec-WebSocket-Accept and complete the close handshake; after the RSS reading every idle
connection must still echo a message; no connection may be dropped by the server.

Is the load generator the bottleneck? For every run the generator's CPU use (getrusage,
share of one core) and the server's (its /proc stat ticks) over the window are reported,
with /proc/stat's busy share of CPU 0 and 1: a server at ~100% of CPU 1 with the
generator below ~90% of CPU 0 is server-bound. A figure whose generator ran above 90% is
flagged '~' (a lower bound): that happens with picows, the fastest server, whose per
message cost is about the generator's own (both mostly syscalls); the Python servers leave
the generator 10-75% idle. Noise: the CPU time of every other process on both CPUs over
the window (/proc/stat user+system minus server and generator) is reported; a run above
--max-noise cores is retried (--retries). A second table gives legato/aiohttp within each
round, which cancels slow drift of the machine's speed between rounds. What legato's App
costs over the bare server is measured more precisely by bench/paired.py (both at once).

Ratios: the server's figure / uvicorn+starlette's, so > 1 is better; for memory and
latency it is uvicorn+starlette's / the server's (less is better there), so > 1 is
still better. 'bar' checks legato's ratio >= aiohttp's ratio on each headline figure.

Usage: python bench/server.py [--quick] [--only legato,aiohttp,...] [--json PATH]
       [--repeat N] [--duration S] [--scenarios echo,bcast,...].
       Full run ~15 min (3 rounds); --quick ~2 min (1 round, 1 s windows, fewer
       subscribers and idle connections: a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APPS = HERE / "servers"
BASELINE = "uvicorn+starlette"
SERVER_CPU, LOADGEN_CPU = 1, 0
PY = sys.executable

SERVERS: dict[str, list[str]] = {
    "legato": [PY, "-m", "legato", "run", "legato_app:app", "--port", "{port}"],
    "legato-app": [PY, "-m", "legato", "run", "legato_framework_app:app", "--port", "{port}"],
    "uvicorn+starlette": [PY, "starlette_app.py", "{port}"],
    "aiohttp": [PY, "aiohttp_app.py", "{port}"],
    "websockets": [PY, "websockets_app.py", "{port}"],
    "tremolo": [PY, "tremolo_app.py", "{port}"],
    "picows": [PY, "picows_app.py", "{port}"],
}
#: ``LEGATO_BASELINE=<the src folder of another legato checkout>`` adds that checkout's
#: servers as "legato@base" and "legato-app@base": a before/after table of a change in
#: one run (``bench/paired.py --pair legato-app@base,legato-app``).
_BASELINE_SRC = os.environ.get("LEGATO_BASELINE")
if _BASELINE_SRC:
    for _name in ("legato", "legato-app"):
        SERVERS[f"{_name}@base"] = ["env", f"PYTHONPATH={_BASELINE_SRC}", *SERVERS[_name]]
PACKAGES = ["legato", "uvicorn", "starlette", "aiohttp", "websockets", "tremolo", "picows",
            "uvloop", "httptools"]


@dataclass
class Scenario:
    name: str
    mode: str
    args: dict[str, Any]
    label: str


@dataclass
class Figure:
    key: str  # column in the table
    label: str
    scenario: str
    unit: str
    higher_is_better: bool = True
    headline: bool = True  # part of the bar


def scenarios(quick: bool) -> list[Scenario]:
    subs = (200, 500) if quick else (1000, 5000)
    idle = 1000 if quick else 10_000
    return [
        Scenario("echo_rr", "echo", dict(path="/echo", conns=64, inflight=1, size=32),
                 "a) echo 32 B, 64 conns, request/response"),
        Scenario("echo_pipe", "echo", dict(path="/echo", conns=64, inflight=16, size=32),
                 "b) echo 32 B, 64 conns x 16 in flight"),
        Scenario("echo_64k", "echo", dict(path="/echo", conns=8, inflight=1, size=65536,
                                          binary=1), "c) echo 64 KiB binary, 8 conns"),
        Scenario(f"bcast_{subs[0]}", "bcast", dict(path="/sub", subs=subs[0], window=2),
                 f"d) broadcast 64 B to {subs[0]} subscribers"),
        Scenario(f"bcast_{subs[1]}", "bcast", dict(path="/sub", subs=subs[1], window=2),
                 f"d) broadcast 64 B to {subs[1]} subscribers"),
        Scenario("handshake", "hs", dict(path="/echo", conc=50),
                 "e) handshakes, concurrency 50"),
        Scenario("idle_rss", "idle", dict(path="/echo", conns=idle, size=32),
                 f"f) RSS per idle connection ({idle} open)"),
    ]


def figures(scens: list[Scenario]) -> list[Figure]:
    present = {s.name for s in scens}
    b1, b2 = _bcast_names(scens)
    return [f for f in _all_figures(b1, b2) if f.scenario in present]


def _bcast_names(scens: list[Scenario]) -> tuple[str, str]:
    names = [s.name for s in scens if s.mode == "bcast"] + ["-bcast1", "-bcast2"]
    return names[0], names[1]


def _all_figures(b1: str, b2: str) -> list[Figure]:
    return [
        Figure("echo_rr", "a) echo r/r  msg/s", "echo_rr", "msg/s"),
        Figure("echo_rr_p50", "   p50 latency", "echo_rr", "us", False, False),
        Figure("echo_rr_p99", "   p99 latency", "echo_rr", "us", False, False),
        Figure("echo_pipe", "b) pipelined x16  msg/s", "echo_pipe", "msg/s"),
        Figure("echo_64k", "c) 64 KiB echo  MB/s", "echo_64k", "MB/s"),
        Figure(b1, f"d) {b1}  deliveries/s", b1, "del/s"),
        Figure(f"{b1}_p50", "   p50 delivery latency", b1, "us", False, False),
        Figure(f"{b1}_p99", "   p99 delivery latency", b1, "us", False, False),
        Figure(b2, f"d) {b2}  deliveries/s", b2, "del/s"),
        Figure(f"{b2}_p50", "   p50 delivery latency", b2, "us", False, False),
        Figure(f"{b2}_p99", "   p99 delivery latency", b2, "us", False, False),
        Figure("handshake", "e) handshakes/s", "handshake", "hs/s"),
        Figure("idle_rss", "f) KiB per idle connection", "idle_rss", "KiB", False),
    ]


# ------------------------------------------------------------------------- processes


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu: int) -> Any:
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})
        raise_nofile()
    return setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def ws_roundtrip(port: int, path: str = "/echo", message: bytes = b"") -> bool:
    """A WebSocket handshake from Python (and one masked echo): is the server serving?"""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            if not data.startswith(b"HTTP/1.1 101"):
                return False
            if message:  # mask key 0: the payload goes as is
                s.sendall(bytes([0x81, 0x80 | len(message), 0, 0, 0, 0]) + message)
                want = 2 + len(message)
                data = data[data.index(b"\r\n\r\n") + 4:]
                while len(data) < want:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                if data[2:want] != message:
                    return False
            s.sendall(bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]))
            return True
    except OSError:
        return False


class ServerProcess:
    def __init__(self, name: str, logdir: Path) -> None:
        self.name = name
        self.port = free_port()
        cmd = [part.format(port=self.port) for part in SERVERS[name]]
        self.log = open(logdir / f"{name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=APPS, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=pinned(SERVER_CPU),
                                     start_new_session=True)
        self.pids: list[int] = [self.proc.pid]

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
            if ws_roundtrip(self.port, "/echo", b"ready?"):
                time.sleep(0.2)
                self.pids = descendants(self.proc.pid)
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not serving after {timeout} s")

    def stop(self) -> None:
        pids = descendants(self.proc.pid) if self.proc.poll() is None else self.pids
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        for pid in pids:  # anything of ours still alive: kill it by PID
            if pid == self.proc.pid and self.proc.poll() is not None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


# ------------------------------------------------------------------------------ runs


def build_loadgen(workdir: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        sys.exit("gcc is needed to build the load generator (apt-get install gcc)")
    out = workdir / "loadgen"
    subprocess.run([gcc, "-O2", "-Wall", "-o", str(out), str(HERE / "loadgen.c")], check=True)
    return out


def run_one(loadgen: Path, server: str, scen: Scenario, timing: dict[str, float],
            logdir: Path, make_server: Any = None) -> dict[str, Any]:
    """One server, one scenario. ``make_server(name, logdir)`` builds the server process
    (default :class:`ServerProcess`; bench/hub.py passes its own)."""
    srv = (make_server or ServerProcess)(server, logdir)
    try:
        srv.wait_ready()
        args = dict(scen.args, port=srv.port, spids=",".join(map(str, srv.pids)), **timing)
        cmd = [str(loadgen), scen.mode] + [f"{k}={v}" for k, v in args.items()]
        limit = 60 + 3 * (timing["warmup"] + timing["duration"])
        if scen.mode != "idle":
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                                  preexec_fn=pinned(LOADGEN_CPU))
            stdout, stderr = done.stdout, done.stderr
            extra: dict[str, Any] = {}
        else:
            for _ in range(20):  # warm-up: lazy imports and first allocations
                ws_roundtrip(srv.port, "/echo", b"warm-up")
            time.sleep(1.0)
            before = rss_kib(srv.pids)
            gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=pinned(LOADGEN_CPU))
            assert gen.stdout is not None and gen.stdin is not None
            line = gen.stdout.readline()  # "READY n", or the result JSON on failure
            extra = {"rss_before_kib": before}
            if line.startswith("READY"):
                opened = int(line.split()[1])
                time.sleep(1.0)
                after = rss_kib(srv.pids)
                for _ in range(10):  # settle: until two readings 0.5 s apart agree
                    time.sleep(0.5)
                    again = rss_kib(srv.pids)
                    if abs(again - after) < 256:
                        break
                    after = again
                extra.update(rss_after_kib=after, opened=opened,
                             kib_per_conn=(after - before) / opened)
                gen.stdin.write("go\n")
                gen.stdin.flush()
                line = ""
            try:
                stdout, stderr = gen.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                gen.kill()
                stdout, stderr = gen.communicate()
            stdout = line + stdout
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            result = {"ok": False, "error": f"no result from loadgen: {stderr.strip()[-200:]}"}
        result.update(extra)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result = {"ok": False, "error": str(exc)}
    finally:
        srv.stop()
    if srv.proc.returncode not in (0, -signal.SIGTERM, None) and result.get("ok"):
        result["server_exit"] = srv.proc.returncode
    return result


def value_of(fig: Figure, scen: Scenario, result: dict[str, Any]) -> float | None:
    if not result.get("ok"):
        return None
    suffix = fig.key[len(fig.scenario):]
    if suffix == "_p50":
        return float(result["p50_us"])
    if suffix == "_p99":
        return float(result["p99_us"])
    if scen.mode == "idle":
        return float(result.get("kib_per_conn", "nan"))
    if fig.unit == "MB/s":
        return result["bytes"] / result["seconds"] / 1e6
    return result["count"] / result["seconds"]


def counted(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that count: the passing ones, only the quiet ones if there are any."""
    passing = [r for r in results if r.get("ok")]
    return [r for r in passing if not r.get("noisy")] or passing


def figure_value(fig: Figure, scen: Scenario, chosen: dict[str, Any],
                 results: list[dict[str, Any]]) -> float | None:
    """A figure comes from the chosen (best) run; a latency, which is a single noisy
    sample per run, is the lowest over the runs that count: the same rule, "only other
    work makes a server look slower", applied to that figure itself."""
    if fig.unit != "us" or not chosen.get("ok"):
        return value_of(fig, scen, chosen)
    values = [v for v in (value_of(fig, scen, r) for r in counted(results)) if v is not None]
    return min(values, default=None)


def best(results: list[dict[str, Any]], scen: Scenario) -> dict[str, Any]:
    """The best passing run (highest rate, or lowest memory), quiet runs first; a failing
    run if none passed."""
    passing = counted(results)
    if not passing:
        return results[0]
    if scen.mode == "idle":
        return min(passing, key=lambda r: r.get("kib_per_conn", float("inf")))
    return max(passing, key=lambda r: r["count"] / r["seconds"])


# ---------------------------------------------------------------------------- report


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "FAIL"
    if unit in ("us",):
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} us"
    if unit == "KiB" or value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(fig: Figure, value: float | None, base: float | None) -> float | None:
    if value is None or base is None or value <= 0 or base <= 0:
        return None
    return value / base if fig.higher_is_better else base / value


def report(servers: list[str], scens: list[Scenario], runs: dict[tuple[str, str], list],
           meta: dict[str, Any]) -> dict[str, Any]:
    by_name = {s.name: s for s in scens}
    table: dict[str, dict[str, Any]] = {}
    chosen = {(srv, sc.name): best(runs[srv, sc.name], sc) for srv in servers for sc in scens}
    for fig in figures(scens):
        row = table[fig.key] = {"label": fig.label, "unit": fig.unit,
                                "headline": fig.headline, "servers": {}}
        base = value_of(fig, by_name[fig.scenario], chosen.get((BASELINE, fig.scenario), {})) \
            if BASELINE in servers else None
        for srv in servers:
            res = chosen[srv, fig.scenario]
            val = figure_value(fig, by_name[fig.scenario], res, runs[srv, fig.scenario])
            row["servers"][srv] = {"value": val, "ratio": ratio(fig, val, base),
                                   "loadgen_bound": bool(res.get("loadgen_cpu", 0) > 0.9)}
        lg = row["servers"].get("legato", {}).get("ratio")
        ah = row["servers"].get("aiohttp", {}).get("ratio")
        row["bar"] = None if lg is None or ah is None or not fig.headline else lg >= ah

    width = 19
    lines = ["", f"{'figure':<30}" + "".join(f"{s:>{width}}" for s in servers) + "   bar"]
    lines.append("-" * len(lines[-1]))
    for fig in figures(scens):
        row = table[fig.key]
        cells = []
        for srv in servers:
            cell = row["servers"][srv]
            text = fmt(cell["value"], fig.unit)
            if cell["loadgen_bound"] and cell["value"] is not None and fig.headline:
                text = "~" + text
            if cell["ratio"] is not None and srv != BASELINE:
                text += f" ({cell['ratio']:.2f}x)"
            cells.append(f"{text:>{width}}")
        bar = {True: "  ok", False: "  MISS", None: ""}[row["bar"]]
        lines.append(f"{fig.label:<30}" + "".join(cells) + bar)
    lines.append("")
    lines.append("Ratios vs uvicorn+starlette, > 1 = better (memory, latency: baseline/server).")
    lines.append("'~': the load generator used > 90% of its CPU in that run (a lower bound).")
    lines.append("")
    lines.append("Chosen runs: loadgen CPU / server CPU / CPU 1 busy / other processes' CPU"
                 " (cores; '!' = noisy)")
    lines.append(f"{'scenario':<14}" + "".join(f"{s:>{width}}" for s in servers))
    for sc in scens:
        cells = []
        for srv in servers:
            r = chosen[srv, sc.name]
            if not r.get("ok") or sc.mode == "idle":
                cells.append(f"{'FAIL' if not r.get('ok') else 'n/a':>{width}}")
                continue
            cells.append((f"{r['loadgen_cpu']:.2f}/{r['server_cpu']:.2f}/{r['cpu1_busy']:.2f}"
                          f"/{r.get('other_cpu', 0):.2f}" + ("!" if r.get("noisy") else " "))
                         .rjust(width))
        lines.append(f"{sc.name:<14}" + "".join(cells))
    rounds = sorted({r.get("round", 1) for rs in runs.values() for r in rs})
    if "legato" in servers and "aiohttp" in servers and len(rounds) > 1:
        lines.append("")
        lines.append("legato / aiohttp within each round (same conditions; > 1 = legato ahead):")
        for fig in figures(scens):
            if not fig.headline:
                continue
            sc = by_name[fig.scenario]
            per = []
            for rnd in rounds:
                pair = [best([r for r in runs[srv, sc.name] if r.get("round", 1) == rnd] or
                             [{"ok": False}], sc) for srv in ("legato", "aiohttp")]
                vals = [value_of(fig, sc, r) for r in pair]
                per.append(ratio(fig, vals[0], vals[1]))
            lines.append(f"  {fig.label:<30}" + "  ".join(
                "  -  " if x is None else f"{x:.2f}" for x in per))
    failures = [(srv, sc, r) for (srv, sc), rs in runs.items() for r in rs if not r.get("ok")]
    if failures:
        lines.append("")
        lines.append("FAILED runs (not counted):")
        for srv, sc, r in failures:
            lines.append(f"  {srv} {sc}: {r.get('error')} "
                         f"(mismatches {r.get('mismatches')}, lost {r.get('lost')})")
    print("\n".join(lines))
    return {"meta": meta, "figures": table,
            "runs": {f"{srv}/{sc}": rs for (srv, sc), rs in runs.items()}}


def collect_meta(packages: list[str], **fields: Any) -> dict[str, Any]:
    """What a run measured on: machine, versions, and which legato (the commit, and the
    files of src/ changed since, printed so an uncommitted measurement shows)."""
    meta: dict[str, Any] = {
        "python": platform.python_version(), "kernel": platform.release(),
        "cpus": os.cpu_count(), **fields, "versions": {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3]}
    try:
        git = ["git", "-C", str(HERE.parent)]
        meta["git_head"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True).stdout.strip()
        meta["src_changed"] = subprocess.run(git + ["status", "--porcelain", "src"],
                                             capture_output=True, text=True).stdout.split()[1::2]
    except OSError:
        pass
    for pkg in packages:
        try:
            meta["versions"][pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            meta["versions"][pkg] = None
    if meta.get("git_head"):
        print(f"legato at {meta['git_head']}"
              + (f" + uncommitted {', '.join(meta['src_changed'])}" if meta.get("src_changed")
                 else ""))
    return meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(ap, SERVERS, quick_minutes="2")
    opts = ap.parse_args()
    servers = list(SERVERS) if not opts.only else [s.strip() for s in opts.only.split(",")]
    unknown = [s for s in servers if s not in SERVERS]
    if unknown:
        ap.error(f"unknown server(s) {unknown}; choose from {list(SERVERS)}")
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs 2 CPUs (server on CPU 1, load generator on CPU 0)")
    scens = scenarios(opts.quick)
    if opts.scenarios:
        wanted = opts.scenarios.split(",")
        scens = [s for s in scens if s.name in wanted or s.name.split("_")[0] in wanted]
    repeat = opts.repeat or (1 if opts.quick else 3)
    timing = {"warmup": 0.3 if opts.quick else 1.0,
              "duration": opts.duration or (1.0 if opts.quick else 5.0)}
    os.sched_setaffinity(0, {LOADGEN_CPU})
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="legato-bench-"))
    loadgen = build_loadgen(workdir)
    meta = collect_meta(PACKAGES, repeat=repeat, **timing, quick=opts.quick)
    try:
        from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol as uvicorn_ws
        meta["uvicorn_ws"] = getattr(uvicorn_ws, "__name__", str(uvicorn_ws))
    except ImportError:
        pass
    print(f"servers: {', '.join(servers)}; {repeat} round(s) x {len(scens)} scenarios; "
          f"window {timing['duration']} s after {timing['warmup']} s warm-up", flush=True)
    runs, scens = run_rounds(
        servers, scens, repeat, opts, meta,
        lambda srv, sc: run_one(loadgen, srv, sc, timing, workdir), progress_line)
    return finish(opts, workdir, runs, report(servers, scens, runs, meta))


def progress_line(sc: Scenario, res: dict[str, Any]) -> str:
    """bench/server.py's figure for one run, in the progress lines."""
    if sc.mode == "idle" and "kib_per_conn" in res:
        return f"{res['kib_per_conn']:.1f} KiB/conn"
    return f"{res['count'] / res['seconds']:,.0f}/s" if res.get("seconds") else ""


def add_common_arguments(ap: argparse.ArgumentParser, servers: Any, quick_minutes: str) -> None:
    """The options bench/server.py and bench/hub.py share."""
    ap.add_argument("--quick", action="store_true",
                    help=f"short smoke run (~{quick_minutes} min)")
    ap.add_argument("--only", help="comma-separated servers: " + ",".join(servers))
    ap.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--repeat", type=int, help="runs per server and scenario (best counts)")
    ap.add_argument("--duration", type=float, help="measuring window, s (default 5; quick 1)")
    ap.add_argument("--max-noise", type=float, default=0.15,
                    help="other processes' CPU (cores) above which a run is retried")
    ap.add_argument("--retries", type=int, default=2, help="extra attempts for a noisy run")
    ap.add_argument("--keep-logs", action="store_true", help="print where server logs are")


def run_rounds(servers: list[str], scens: list[Scenario], repeat: int, opts: Any,
               meta: dict[str, Any], run: Any, figure: Any,
               applies: Any = lambda srv, sc: True,
               ) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[Scenario]]:
    """``repeat`` rounds of every scenario on every server, interleaved so that noise
    spreads over all of them; a run with other processes above ``--max-noise`` is tried
    again (``--retries``). ``run(srv, sc)`` runs one; ``figure(sc, res)`` is its figure
    in the progress line; ``applies(srv, sc)`` skips pairs. Ctrl-C keeps what ran. The
    time taken and the load after go into ``meta``."""
    done: dict[tuple[str, str], list[dict[str, Any]]] = {
        (srv, sc.name): [] for srv in servers for sc in scens if applies(srv, sc)}
    t0 = time.monotonic()
    try:
        for rnd in range(repeat):
            for sc in scens:
                for srv in servers:
                    if not applies(srv, sc):
                        continue
                    for _attempt in range(1 + opts.retries):
                        res = run(srv, sc)
                        res["noisy"] = res.get("other_cpu", 0) > opts.max_noise
                        res["round"] = rnd + 1
                        done[srv, sc.name].append(res)
                        if not res["noisy"] or not res.get("ok"):
                            break
                    status = "ok" if res.get("ok") else f"FAIL: {res.get('error')}"
                    p99 = (f"  p99 {res['p99_us'] / 1000:7.2f} ms" if sc.mode == "bcast"
                           and "p99_us" in res else "")
                    split = res.get("worker_subscribers")
                    print(f"[{time.monotonic() - t0:6.0f}s] round {rnd + 1} {sc.name:<12} "
                          f"{srv:<18} {figure(sc, res):>16}{p99}  "
                          f"lg {res.get('loadgen_cpu', 0):.2f} "
                          f"srv {res.get('server_cpu', 0):.2f} other {res.get('other_cpu', 0):.2f}"
                          f"{' (noisy)' if res['noisy'] else ''}"
                          f"{f' workers {split}' if split else ''}  {status}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: reporting what ran", flush=True)
        done = {k: v for k, v in done.items() if v}
        scens = [sc for sc in scens
                 if all((srv, sc.name) in done for srv in servers if applies(srv, sc))]
    meta["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["seconds"] = round(time.monotonic() - t0)
    return done, scens


def finish(opts: Any, workdir: Path, done: dict[tuple[str, str], list[dict[str, Any]]],
           data: dict[str, Any]) -> int:
    """Write the JSON, keep or remove the server logs; exit status 1 if a run failed."""
    if opts.json:
        Path(opts.json).write_text(json.dumps(data, indent=1))
        print(f"\nJSON written to {opts.json}")
    if opts.keep_logs:
        print(f"server logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any(not r.get("ok") for rs in done.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
