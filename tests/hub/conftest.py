"""Fixtures for hub tests: a Redis to talk to, throwaway redis-servers for fault tests,
one key prefix per test (its keys are deleted afterwards: the shared Redis stays clean),
and ``async def`` tests run on a fresh asyncio loop."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ports import free_port
from nats_servers import NatsServer, need_nats_server, shared_nats
from nats_servers import delete_prefix as delete_nats_prefix
from redis_cluster import RedisCluster
from redis_servers import RedisServer, delete_prefix, need_redis_server, session_redis

from legato.hub.backend import Backend, MemoryBackend
from legato.hub.redis import RedisBackend

#: Seconds an ``async def`` test may take, so a hung await fails instead of stalling.
ASYNC_TEST_TIMEOUT = 20.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """REDIS_URL (default redis://127.0.0.1:6379) if it answers PING, else a redis-server
    of our own for the session."""
    with session_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which the test may kill, pause and restart."""
    need_redis_server()
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of the session's own: three masters, no replicas (the failover
    tests start one with replicas). Tests that migrate slots leave it whole: every slot
    served, keys unique to their prefix."""
    need_redis_server()
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"legato-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_prefix(redis_url, name)


@pytest.fixture(scope="session")
def nats_url() -> str:
    """NATS_URL (default nats://127.0.0.1:4222) if it answers, else the test is skipped."""
    return shared_nats()


@pytest.fixture
def nats_prefix(nats_url: str) -> Iterator[str]:
    """A NATS prefix of this test's own; its stream and buckets are deleted afterwards."""
    name = f"legato-test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_nats_prefix(nats_url, name)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own, which the test may kill, pause and restart."""
    need_nats_server()
    server = NatsServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


#: Options of the Redis backend that the NATS one has no use for (its trimming is
#: JetStream's max_history), dropped when a parametrized test passes them.
REDIS_ONLY = {"gap_window", "gap_ttl", "max_pending"}


@pytest.fixture(params=["memory", "redis", "cluster", "nats"])
def make_backend(request: pytest.FixtureRequest) -> Callable[..., Backend]:
    """``make_backend(**options)``: a new backend of the parametrized kind."""
    if request.param == "memory":
        return lambda **options: MemoryBackend()  # it has no options
    if request.param == "cluster":
        from legato.hub.redis_cluster import RedisClusterBackend  # noqa: PLC0415

        url = request.getfixturevalue("redis_cluster").url
        name = f"legato-test-{uuid.uuid4().hex[:12]}"
        return lambda **options: RedisClusterBackend(url, prefix=name, **options)
    if request.param == "nats":
        from legato.hub.nats import NatsBackend  # noqa: PLC0415 - needs the 'nats' extra

        url, name = request.getfixturevalue("nats_url"), request.getfixturevalue("nats_prefix")
        return lambda **options: NatsBackend(url, prefix=name, **{
            k: v for k, v in options.items() if k not in REDIS_ONLY})
    url = request.getfixturevalue("redis_url")
    key_prefix = request.getfixturevalue("prefix")
    return lambda **options: RedisBackend(url, prefix=key_prefix, **options)


@pytest.fixture(params=["memory", "redis", "cluster", "nats"])
def hub_url(request: pytest.FixtureRequest) -> str:
    """``App(hub=...)`` of the parametrized backend (on Redis, Redis Cluster or NATS,
    this test's own prefix)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
        return f"{url}?prefix=legato-test-{uuid.uuid4().hex[:12]}"
    if request.param == "nats":
        url = request.getfixturevalue("nats_url")
        return f"{url}?prefix={request.getfixturevalue('nats_prefix')}"
    url = request.getfixturevalue("redis_url")
    return f"{url}/0?prefix={request.getfixturevalue('prefix')}"
