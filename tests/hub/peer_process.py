"""A Redis hub backend in an OS process of its own, driven by test_redis.py (a
``redis+cluster://`` URL: by test_redis_cluster.py): it echoes every message of topic
"ping" to topic "pong", is member "peer" of topic "room", says "ready" on stdout, and
runs until it is killed."""

from __future__ import annotations

import asyncio
import os
import sys

from legato.hub.redis import RedisBackend
from legato.hub.redis_cluster import RedisClusterBackend


async def main(url: str, prefix: str) -> None:
    kind = RedisClusterBackend if url.startswith("redis+cluster://") else RedisBackend
    backend = kind(url, prefix=prefix, presence_ttl=0.5)
    echoes: set[asyncio.Task[str]] = set()

    def sink(topic: str, message_id: str, payload: str | bytes, key: str | None) -> None:
        task = asyncio.ensure_future(backend.publish("pong", payload))
        echoes.add(task)
        task.add_done_callback(echoes.discard)

    await backend.start(sink, lambda kind, details: None)
    await backend.listen("ping")
    await backend.join("room", "peer", {"pid": os.getpid()})
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
