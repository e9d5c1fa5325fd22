"""The chat example across two processes through Redis (SPEC §8), with one command.

    python examples/chat_redis.py        # http://127.0.0.1:8001/ and http://127.0.0.1:8002/
    python examples/chat_redis.py --redis redis://10.0.0.5:6379/0 --ports 9001 9002 9003

It starts the chat of ``make run`` (examples/chat/app.py, unchanged) once per port, each
its own process with the hub on the same Redis (``LEGATO_HUB``), prints their addresses
and waits: open one page on each, join the same room, and what is typed on one shows on
the other. Ctrl-C (or SIGTERM) stops every server (each closes its sockets with 1001).
If a server exits by itself, the others are stopped too and the exit status is 1.

Needs a Redis (``apt-get install redis-server``) and ``pip install 'legato[redis]'``; the
hub's keys start with ``chat:`` (``?prefix=`` in the URL) so they stay apart from others.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CHAT = Path(__file__).parent / "chat" / "app.py"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0?prefix=chat"
STARTUP = 30.0  # seconds a server may take to accept connections (a loaded machine)
STOP_GRACE = 10.0  # seconds a server may take to close its connections and exit


def redis_answers(url: str) -> bool:
    import redis  # noqa: PLC0415 - the 'redis' extra, needed by the hub anyway

    base = url.partition("?")[0]  # the query holds the hub's options, not redis-py's
    client = redis.Redis.from_url(base, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def start(host: str, port: int, hub: str) -> subprocess.Popen[bytes]:
    """One chat server. Its own session: a Ctrl-C reaches only this script, which then
    stops each server once (SIGTERM), instead of every process getting the signal."""
    return subprocess.Popen(
        [sys.executable, str(CHAT), "--host", host, "--port", str(port)],
        env={**os.environ, "LEGATO_HUB": hub}, start_new_session=True)


def wait_until_serving(servers: dict[int, subprocess.Popen[bytes]], host: str) -> int | None:
    """None once every server accepts connections, else the port of one that exited."""
    deadline = time.monotonic() + STARTUP
    waiting = set(servers)
    while waiting:
        for port in list(waiting):
            if servers[port].poll() is not None:
                return port
            if accepts(host, port):
                waiting.discard(port)
        if time.monotonic() > deadline:
            return min(waiting)
        time.sleep(0.05)
    return None


def stop(servers: dict[int, subprocess.Popen[bytes]]) -> None:
    for proc in servers.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in servers.values():
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(host: str, ports: list[int], hub: str) -> int:
    servers = {port: start(host, port, hub) for port in ports}
    try:
        failed = wait_until_serving(servers, host)
        if failed is not None:
            print(f"chat_redis: the server on port {failed} did not start (see above)",
                  file=sys.stderr)
            return 1
        print(f"chat through {hub}, one process per address:", flush=True)
        for port, proc in servers.items():
            print(f"  http://{host}:{port}/  (pid {proc.pid})", flush=True)
        print("open one page on each, join the same room and talk; Ctrl-C stops all",
              flush=True)
        while all(proc.poll() is None for proc in servers.values()):
            time.sleep(0.2)
        exited = [port for port, proc in servers.items() if proc.poll() is not None]
        print(f"chat_redis: the server on port {exited[0]} exited; stopping the others",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(servers)


def main() -> int:
    parser = argparse.ArgumentParser(description="the legato chat on several processes "
                                                 "sharing one Redis")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"default {DEFAULT_REDIS}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", type=int, nargs="+", default=[8001, 8002],
                        help="one server per port (default 8001 8002)")
    args = parser.parse_args()
    if len(set(args.ports)) != len(args.ports):
        parser.error("--ports must be different ports")
    if not redis_answers(args.redis):
        print(f"chat_redis: no Redis answers at {args.redis.partition('?')[0]}: start one "
              "(redis-server; apt-get install redis-server) or pass --redis URL",
              file=sys.stderr)
        return 1
    # Ctrl-C and SIGTERM stop the servers, also when started in the background (where a
    # shell ignores SIGINT for its children).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    return serve(args.host, args.ports, args.redis)


if __name__ == "__main__":
    sys.exit(main())
