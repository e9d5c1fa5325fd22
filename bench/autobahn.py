"""The Autobahn|Testsuite conformance run (all 517 cases) against legato's echo servers.

Why: an outside judge of RFC 6455 (and RFC 7692) conformance that nobody here wrote.
Each case is rated OK, NON-STRICT (allowed, but not what a careful implementation does),
INFORMATIONAL, UNIMPLEMENTED or FAILED; the goal is 0 FAILED and 0 NON-STRICT. Too slow
for ``make test`` (several minutes); the shapes of the cases legato once got NON-STRICT
are pinned in tests/protocol and tests/server instead.

Targets (each a fresh ``python -m legato run`` subprocess on 127.0.0.1, stopped by PID):
  app     legato's App (bench/autobahn_app.py: ``async for`` echo, a 64 MiB limit)
  server  the bare server with a plain ASGI echo app (bench/servers/legato_app.py)

The suite (the last release of ``autobahntestsuite``, 0.8.2) runs on Python 2.7 only.
``--install`` puts it into ``--suite-dir`` with that Python's pip::

    python bench/autobahn.py --install --python2 ~/.pyenv/versions/2.7.18/bin/python
    python bench/autobahn.py [--targets app,server] [--cases '*'] [--outdir DIR]

Prints per target the count of each rating and every case not OK (with the report's
description of what happened); exits 1 when any case is FAILED or NON-STRICT.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: target: (folder to run in, module:attribute)
TARGETS = {"app": (HERE, "autobahn_app:app"), "server": (HERE / "servers", "legato_app:app")}
SUITE_VERSION = "0.8.2"
#: Case 9.x sends messages of up to 16 MiB: the server must take them (1 MiB default).
MAX_MESSAGE = 64 * 1024 * 1024
#: The report's ratings, in the order they are printed.
RATINGS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def start_target(name: str, logdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cwd, target = TARGETS[name]
    log = open(logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "legato", "run", target, "--port", str(port),
         "--ws-max-message-size", str(MAX_MESSAGE)],
        cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def install(python2: str, suite_dir: Path) -> None:
    subprocess.run([python2, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    "--target", str(suite_dir), f"autobahntestsuite=={SUITE_VERSION}"],
                   check=True, cwd=tempfile.gettempdir())


def run_suite(python2: str, suite_dir: Path, spec: Path) -> None:
    # site.addsitedir, not PYTHONPATH: zope's namespace package needs its .pth file.
    boot = ("import site, sys; site.addsitedir(sys.argv.pop(1)); "
            "from autobahntestsuite.wstest import run; sys.argv[0] = 'wstest'; run()")
    subprocess.run([python2, "-c", boot, str(suite_dir), "-m", "fuzzingclient",
                    "-s", str(spec)], check=True, cwd=spec.parent,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def summarize(index: dict[str, dict[str, Any]], outdir: Path) -> bool:
    """Print the ratings per agent; True when none is FAILED or NON-STRICT."""
    clean = True
    for agent, cases in sorted(index.items()):
        counts = collections.Counter(result["behavior"] for result in cases.values())
        line = ", ".join(f"{counts.get(r, 0)} {r}" for r in RATINGS)
        print(f"{agent}: {len(cases)} cases: {line}")
        for case, result in sorted(cases.items(), key=lambda item: _case_key(item[0])):
            if result["behavior"] in ("NON-STRICT", "FAILED"):
                clean = False
            if result["behavior"] not in ("OK", "INFORMATIONAL"):
                report = json.loads((outdir / result["reportfile"]).read_text())
                print(f"  {case:8} {result['behavior']:13} close {result['behaviorClose']}: "
                      f"{report.get('result', '')}")
    return clean


def _case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="app,server", help="app, server or both")
    parser.add_argument("--cases", default="*", help="comma-separated case ids or globs")
    parser.add_argument("--exclude", default="", help="case ids or globs to skip")
    parser.add_argument("--python2", default=shutil.which("python2.7") or "python2.7")
    parser.add_argument("--suite-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "autobahn-py2")
    parser.add_argument("--install", action="store_true",
                        help=f"pip install autobahntestsuite=={SUITE_VERSION} first")
    parser.add_argument("--outdir", type=Path, default=None,
                        help="where the report goes (default: a fresh temporary folder)")
    args = parser.parse_args()
    if args.install:
        install(args.python2, args.suite_dir)
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="autobahn-"))
    outdir.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        servers = []
        for name in args.targets.split(","):
            proc, port = start_target(name, outdir)
            procs.append(proc)
            servers.append({"agent": f"legato-{name}", "url": f"ws://127.0.0.1:{port}/echo"})
        spec = outdir / "fuzzingclient.json"
        spec.write_text(json.dumps({
            "outdir": str(outdir / "reports"), "servers": servers,
            "cases": args.cases.split(","),
            "exclude-cases": [c for c in args.exclude.split(",") if c],
            "exclude-agent-cases": {}}, indent=2))
        run_suite(args.python2, args.suite_dir, spec)
    finally:
        for proc in procs:
            stop(proc)
    reports = outdir / "reports"
    clean = summarize(json.loads((reports / "index.json").read_text()), reports)
    print(f"report: {reports / 'index.html'}")
    return 0 if clean else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
