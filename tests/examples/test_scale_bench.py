"""bench/scale.py, the load test of docs/scale.md, still runs (so it does not rot):
``load --smoke`` (two workers, a Redis of its own, 64 sockets, 1.5 s) delivers every
message once, in each publisher's order, and says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_scale_bench_smoke_run_loses_and_repeats_nothing() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "load", "--smoke"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ok: lost 0 duplicated 0 out-of-order 0" in done.stdout
    assert "deliveries_per_s" in done.stdout
