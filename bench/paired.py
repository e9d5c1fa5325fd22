"""What legato's App costs over the bare server, measured in pairs: both served at once.

Why: bench/server.py runs one server at a time, and on this (virtual) machine the speed
of CPU 1 drifts by 5-10 % between two runs a few seconds apart — as much as the 10 % the
App may cost (issue 4) — so the App's figure and the bare server's can come from
different machines, in effect. Here the two servers run at the same time, both pinned to
CPU 1, each loaded by its own load generator (bench/loadgen.c) on CPU 0. Both are always
runnable, so the kernel gives each half of CPU 1 and both see the same machine: the ratio
of their rates is the inverse ratio of their costs per message, delivery or handshake.
Every round starts fresh processes (memory layout and hash seed differ per process,
about 1 % per round) and alternates which starts first.

Checks: every run passes the load generator's correctness checks (bench/server.py's); each
server's CPU share is reported (both should be ~0.50); when CPU 0 (both generators) is
above 90 % busy, a generator may hold back the faster server, which would move the ratio
toward 1, so the row is flagged '~'.

Usage: python bench/paired.py [--pair legato-app,legato] [--scenarios echo_rr,handshake]
       [--rounds 6] [--duration 3]        (~1 min per scenario at the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from server import (
    LOADGEN_CPU,
    SERVERS,
    Scenario,
    ServerProcess,
    build_loadgen,
    figures,
    fmt,
    pinned,
    raise_nofile,
    scenarios,
    value_of,
)


def run_pair(loadgen: Path, names: tuple[str, str], scen: Scenario,
             timing: dict[str, float], logdir: Path, first: int) -> list[dict[str, Any]]:
    """One round: both servers started (``names[first]`` first), both loaded at once."""
    procs: list[ServerProcess | None] = [None, None]
    try:
        for i in (first, 1 - first):
            procs[i] = ServerProcess(names[i], logdir)
        gens = []
        for srv in procs:
            assert srv is not None
            srv.wait_ready()
        for srv in procs:
            assert srv is not None
            args = dict(scen.args, port=srv.port, spids=",".join(map(str, srv.pids)),
                        **timing)
            cmd = [str(loadgen), scen.mode] + [f"{k}={v}" for k, v in args.items()]
            gens.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, preexec_fn=pinned(LOADGEN_CPU)))
        results = []
        limit = 60 + 3 * (timing["warmup"] + timing["duration"])
        for gen in gens:
            try:
                stdout, stderr = gen.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                gen.kill()
                stdout, stderr = gen.communicate()
            try:
                results.append(json.loads(stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                results.append({"ok": False,
                                "error": f"no result from loadgen: {stderr.strip()[-200:]}"})
        return results
    except RuntimeError as exc:  # a server that did not start
        return [{"ok": False, "error": str(exc)}] * 2
    finally:
        for srv in procs:
            if srv is not None:
                srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", default="legato-app,legato",
                    help="two servers of bench/server.py, the measured one first")
    ap.add_argument("--scenarios", default="echo_rr,echo_pipe,echo_64k,bcast,handshake",
                    help="comma-separated scenario names (idle_rss: see bench/server.py)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=float, default=3.0, help="measuring window, s")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    opts = ap.parse_args()
    names = tuple(s.strip() for s in opts.pair.split(","))
    if len(names) != 2 or any(n not in SERVERS for n in names):
        ap.error(f"--pair takes two of {list(SERVERS)}")
    if os.cpu_count() is None or os.cpu_count() < 2:  # type: ignore[operator]
        sys.exit("needs 2 CPUs (servers on CPU 1, load generators on CPU 0)")
    wanted = opts.scenarios.split(",")
    scens = [s for s in scenarios(False) if s.mode != "idle"
             and (s.name in wanted or s.name.split("_")[0] in wanted)]
    timing = {"warmup": 1.0, "duration": opts.duration}
    os.sched_setaffinity(0, {LOADGEN_CPU})
    raise_nofile()
    workdir = Path(tempfile.mkdtemp(prefix="legato-paired-"))
    loadgen = build_loadgen(workdir)
    print(f"{names[0]} / {names[1]}, both at once on CPU 1; {opts.rounds} rounds of "
          f"{opts.duration} s per scenario", flush=True)
    rows: dict[str, Any] = {}
    failed = False
    for scen in scens:
        fig = next(f for f in figures([scen]) if f.headline)
        ratios, cells = [], []
        for rnd in range(opts.rounds):
            pair = run_pair(loadgen, names, scen, timing, workdir, rnd % 2)
            measured = [value_of(fig, scen, r) for r in pair]
            values = [v for v in measured if v is not None]
            if len(values) < 2:
                failed = True
                print(f"  {scen.name} round {rnd + 1}: FAIL "
                      f"{[r.get('error') for r in pair]}", flush=True)
                continue
            cpu0 = max(r.get("cpu0_busy", 0) for r in pair)
            ratios.append(values[0] / values[1])
            cells.append({"values": values, "server_cpu": [r["server_cpu"] for r in pair],
                          "cpu0_busy": cpu0})
            print(f"  {scen.name:<11} round {rnd + 1}: {fmt(values[0], fig.unit):>9} / "
                  f"{fmt(values[1], fig.unit):>9} {fig.unit} = {ratios[-1]:.3f}   server CPU "
                  f"{pair[0]['server_cpu']:.2f}/{pair[1]['server_cpu']:.2f}, CPU 0 busy "
                  f"{cpu0:.2f}", flush=True)
        if ratios:
            rows[scen.name] = {"label": fig.label, "ratios": ratios, "runs": cells,
                               "mean": statistics.mean(ratios),
                               "sd": statistics.stdev(ratios) if len(ratios) > 1 else 0.0,
                               "generator_bound": any(c["cpu0_busy"] > 0.9 for c in cells)}
    print(f"\n{names[0]} / {names[1]} (same instant, same CPU; < 1 = {names[0]} slower)")
    for row in rows.values():
        flag = "~" if row["generator_bound"] else " "
        print(f"  {row['label']:<28} {flag}{row['mean']:.3f}  (sd {row['sd']:.3f}; "
              f"{row['mean'] - 1:+.1%}; rounds {' '.join(f'{r:.3f}' for r in row['ratios'])})")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"pair": names, "rows": rows}, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
