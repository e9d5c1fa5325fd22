"""Where the memory of an idle WebSocket connection goes (issue 15, goal 2).

A server process runs legato's server with the App (or the bare ASGI app) under
tracemalloc; bench/loadgen.c opens N idle connections to it. Between a snapshot taken
after a warm-up (N/10 connections opened and closed: lazy imports, caches, free lists)
and one taken with the N connections open, the growth is what the connections hold:

- by allocation site: each traced block is put in a kind by the innermost frame of
  legato's that allocated it (the HTTP connection, the head and scope, the WebSocket
  session, the protocol core, the App's frames, the hub subscription...); blocks with no
  legato frame are the event loop's (uvloop's transports and handles);
- by object type: live objects counted with ``gc.get_objects()`` before and after, and
  their ``sys.getsizeof`` (shallow: a coroutine's includes its frame);
- RSS growth: under tracemalloc it includes tracemalloc's own record of every block, so
  it is reported for completeness only; bench/server.py's idle_rss is the RSS figure.

Usage: python bench/memory.py [--conns 2000] [--apps app,app_hub,bare] [--json PATH]
       (``app_redis`` needs a Redis at REDIS_URL, default redis://127.0.0.1:6379)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "servers"))

#: (path fragment, function name or "", kind), tried in order on the innermost legato
#: frame of an allocation.
KINDS: list[tuple[str, str, str]] = [
    ("legato/server/http.py", "on_header", "HTTP head: header list"),
    ("legato/server/http.py", "on_url", "HTTP head: header list"),
    ("legato/server/http.py", "_scope", "ASGI scope"),
    ("legato/server/http.py", "on_headers_complete", "ASGI scope"),
    ("legato/server/http.py", "_upgrade", "WebSocket session"),
    ("legato/server/http.py", "", "HTTP connection (HttpProtocol, parser)"),
    ("legato/server/link.py", "", "HTTP connection (HttpProtocol, parser)"),
    ("legato/server/direct.py", "", "HTTP connection (HttpProtocol, parser)"),
    ("legato/server/state.py", "spawn", "task"),
    ("legato/server/websocket.py", "", "WebSocket session"),
    ("legato/protocol/", "", "protocol core (Connection, handshake)"),
    ("legato/websocket.py", "", "WebSocket object"),
    ("legato/hub/", "", "hub subscription"),
    ("legato/ws_endpoint.py", "", "App: endpoint and handler frames"),
    ("legato/app.py", "", "App: endpoint and handler frames"),
    ("legato/", "", "other legato"),
]
LOOP_KIND = "event loop (transport, handles)"

APPS = ("app", "app_hub", "app_redis", "bare")


# ------------------------------------------------------------------ the server side

def _the_app(name: str) -> Any:
    if name == "bare":
        from legato_app import app as bare  # bench/servers: the ASGI app without the App

        return bare
    from legato import App, WebSocket

    hub = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379") if name == "app_redis" \
        else "memory://"
    app = App(hub=hub)

    if name == "app":
        @app.websocket("/echo")
        async def echo(ws: WebSocket) -> None:
            async for message in ws:
                await ws.send(message)
    else:
        @app.websocket("/echo")
        async def subscribed(ws: WebSocket) -> None:
            await app.hub.subscribe(ws, "room")
            async for message in ws:
                await ws.send(message)
    return app


def _kind(trace: tracemalloc.Traceback) -> str:
    for frame in reversed(trace):  # tracemalloc lists the oldest frame first
        name = frame.filename.replace(os.sep, "/")
        if "/legato/" not in name:
            continue
        for fragment, function, kind in KINDS:
            if fragment in name and (not function or _function(frame) == function):
                return kind
    return LOOP_KIND


_FUNCTIONS: dict[tuple[str, int], str] = {}


def _function(frame: tracemalloc.Frame) -> str:
    """The name of the function around ``frame``'s line (tracemalloc keeps lines only)."""
    key = (frame.filename, frame.lineno)
    if key not in _FUNCTIONS:
        import ast

        found = ""
        try:
            tree = ast.parse(Path(frame.filename).read_text())
        except (OSError, SyntaxError):
            tree = None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.lineno <= frame.lineno <= (node.end_lineno or node.lineno):
                found = node.name  # the innermost wins: walk visits outer ones first
        _FUNCTIONS[key] = found
    return _FUNCTIONS[key]


def _census() -> tuple[collections.Counter[str], collections.Counter[str]]:
    counts: collections.Counter[str] = collections.Counter()
    sizes: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" \
            else kind.__qualname__
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)
    return counts, sizes


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def serve(name: str, port: int) -> None:
    """The child: serve, and answer "base" / "snap" lines on stdin with JSON lines."""
    from legato.server import Server, ServerConfig
    from legato.server.serve import new_event_loop

    tracemalloc.start(12)
    app = _the_app(name)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    config = ServerConfig(host="127.0.0.1", port=port, log_level="warning",
                          access_log=False, gc_freeze=False)
    server = Server(app, config)
    loop.run_until_complete(server.start())
    state: dict[str, Any] = {}

    def command() -> None:
        line = sys.stdin.readline().strip()
        gc.collect()
        if line == "base":
            state["census"] = _census()  # before the snapshot: it is not the connections'
            state["rss"] = _rss()
            state["snap"] = tracemalloc.take_snapshot()
            print(json.dumps({"ok": True}), flush=True)
        elif line.startswith("snap"):
            conns = int(line.split()[1])
            after = tracemalloc.take_snapshot()
            counts, sizes = _census()
            kinds: collections.Counter[str] = collections.Counter()
            sites: collections.Counter[str] = collections.Counter()
            for diff in after.compare_to(state["snap"], "traceback"):
                if diff.size_diff:
                    kinds[_kind(diff.traceback)] += diff.size_diff
                    top = diff.traceback[-1]  # the innermost frame
                    sites[f"{Path(top.filename).name}:{top.lineno}"] += diff.size_diff
            base_counts, base_sizes = state["census"]
            per_type = {t: [(counts[t] - base_counts[t]) / conns,
                            (sizes[t] - base_sizes[t]) / conns]
                        for t in counts if counts[t] - base_counts[t] >= conns // 2}
            print(json.dumps({
                "kinds": {k: v / conns for k, v in kinds.items()},
                "sites": {k: v / conns for k, v in sites.most_common(40)},
                "types": per_type,
                "rss": (_rss() - state["rss"]) / conns,
            }), flush=True)
        elif line in ("", "quit"):
            os._exit(0)  # measured: nothing to shut down gracefully

    loop.add_reader(sys.stdin.fileno(), command)
    print(json.dumps({"ready": True}), flush=True)
    loop.run_forever()


# ------------------------------------------------------------------ the measuring side

def _idle(loadgen: Path, port: int, conns: int) -> subprocess.Popen[str]:
    gen = subprocess.Popen([str(loadgen), "idle", f"port={port}", "path=/echo",
                            f"conns={conns}", "size=32"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert gen.stdout is not None
    line = gen.stdout.readline()
    if not line.startswith("READY"):
        gen.kill()
        raise RuntimeError(f"the load generator did not open its connections: {line!r}")
    return gen


def _release(gen: subprocess.Popen[str]) -> None:
    assert gen.stdin is not None
    gen.stdin.write("\n")
    gen.stdin.flush()
    gen.wait(60)


def measure(loadgen: Path, name: str, conns: int) -> dict[str, Any]:
    from server import free_port

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=HERE / "servers")
    assert child.stdin is not None and child.stdout is not None

    def ask(line: str) -> dict[str, Any]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line + "\n")
        child.stdin.flush()
        answer: dict[str, Any] = json.loads(child.stdout.readline())
        return answer

    try:
        json.loads(child.stdout.readline())  # ready
        _release(_idle(loadgen, port, max(50, conns // 10)))  # warm-up
        time.sleep(0.5)
        ask("base")
        gen = _idle(loadgen, port, conns)
        time.sleep(1.0)
        result = ask(f"snap {conns}")
        _release(gen)
        return result
    finally:
        child.stdin.close()
        child.wait(10)


def report(name: str, result: dict[str, Any]) -> None:
    kinds = result["kinds"]
    total = sum(kinds.values())
    print(f"\n{name}: {total / 1024:.2f} KiB per idle connection traced by tracemalloc "
          f"(RSS growth under tracemalloc {result['rss'] / 1024:.1f} KiB)")
    print("  by kind (the innermost legato frame that allocated it):")
    for kind, size in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"    {kind:44s} {size:8.0f} B  {100 * size / total:5.1f} %")
    print("  by object type (live objects per connection, shallow sizes):")
    for kind, (count, size) in sorted(result["types"].items(), key=lambda kv: -kv[1][1])[:16]:
        print(f"    {kind:44s} {count:5.2f} × = {size:6.0f} B")
    print("  top allocation sites:")
    for site, size in list(result["sites"].items())[:int(os.environ.get("SITES", "12"))]:
        print(f"    {site:44s} {size:8.0f} B")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--apps", default="app,app_hub,bare", help=",".join(APPS))
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.serve:
        serve(opts.serve, opts.port)
        return
    from server import build_loadgen, raise_nofile

    raise_nofile()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        loadgen = build_loadgen(Path(tmp))
        for name in opts.apps.split(","):
            if name not in APPS:
                ap.error(f"unknown app {name!r}; choose from {APPS}")
            results[name] = measure(loadgen, name, opts.conns)
            report(name, results[name])
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
