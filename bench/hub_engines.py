"""The hub's broker engines side by side (issue 16): Redis and NATS with JetStream, each
through its Backend, in one process (a sender and a receiver on separate connections):
publish → other connection latency, serial and gathered publishes/s, history() time.

Usage: PYTHONPATH=tests/hub:tests python bench/hub_engines.py [redis] [nats]
       (the Redis at 127.0.0.1:6379 and the NATS at 127.0.0.1:4222; each run uses a
       prefix of its own and deletes it afterwards)
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

from nats_servers import delete_prefix as delete_nats
from redis_servers import delete_prefix as delete_redis

from legato.hub.nats import NatsBackend
from legato.hub.redis import RedisBackend

NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379/0"


def make(kind: str, prefix: str) -> Any:
    if kind == "nats":
        return NatsBackend(NATS_URL, prefix=prefix)
    return RedisBackend(REDIS_URL, prefix=prefix)


async def run(kind: str) -> tuple[dict[str, Any], str]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    sender, receiver = make(kind, prefix), make(kind, prefix)
    arrived: dict[Any, float] = {}
    got = asyncio.Event()
    want = [0]

    def sink(topic: str, message_id: str, payload: Any, key: Any) -> None:
        arrived[payload] = time.perf_counter()
        if len(arrived) >= want[0]:
            got.set()

    await sender.start(lambda *a: None, lambda *a: None)
    await receiver.start(sink, lambda *a: None)
    out: dict[str, Any] = {}
    try:
        await receiver.listen("lat")
        latencies = []
        for n in range(1000):
            started = time.perf_counter()
            want[0] = len(arrived) + 1
            got.clear()
            await sender.publish("lat", f"l{n}")
            await got.wait()
            latencies.append(arrived[f"l{n}"] - started)
        latencies.sort()
        out["latency ms p50/p99"] = f"{latencies[500] * 1e3:.2f}/{latencies[990] * 1e3:.2f}"
        started = time.perf_counter()
        for _ in range(2000):
            await sender.publish("serial", "x")
        out["serial publishes/s (1 topic)"] = round(2000 / (time.perf_counter() - started))
        started = time.perf_counter()
        await asyncio.gather(*(sender.publish("hot", "x") for _ in range(5000)))
        out["gathered publishes/s (1 topic)"] = round(5000 / (time.perf_counter() - started))
        started = time.perf_counter()
        await asyncio.gather(*(sender.publish(f"t{n % 100}", "x") for n in range(5000)))
        out["gathered publishes/s (100 topics)"] = round(
            5000 / (time.perf_counter() - started))
        for n in range(100):
            await sender.publish("hist", f"h{n}", history=100)
        started = time.perf_counter()
        for _ in range(20):
            assert len(await sender.history("hist")) == 100
        out["history() of 100, ms"] = round((time.perf_counter() - started) / 20 * 1e3, 2)
    finally:
        await sender.stop()
        await receiver.stop()
    return out, prefix


def main() -> None:
    for kind in sys.argv[1:] or ["redis", "nats"]:
        out, prefix = asyncio.run(run(kind))
        if kind == "nats":
            delete_nats(NATS_URL, prefix)
        else:
            delete_redis("redis://127.0.0.1:6379", prefix)
        print(kind, out, flush=True)


if __name__ == "__main__":
    main()
