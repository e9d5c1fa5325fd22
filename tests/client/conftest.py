"""Fixtures for the channel client tests: ``async def`` tests run on a fresh loop with a
deadline; ``live`` is channel_apps.app served in-process on a real socket (one server
for the module: tests use topics of their own)."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import WS_PATH, LegatoProcess, RedisProcess, serve_in_thread

#: Seconds an ``async def`` test may take, so a hung await fails instead of stalling.
ASYNC_TEST_TIMEOUT = 20.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


@pytest.fixture(scope="module")
def live_port() -> Iterator[int]:
    from channel_apps import app

    with serve_in_thread(app) as port:
        yield port


@pytest.fixture
def live(live_port: int) -> str:
    """The channel endpoint's URL of the in-process server."""
    return f"ws://127.0.0.1:{live_port}{WS_PATH}"


@pytest.fixture
def room() -> str:
    """A topic name of this test's own."""
    return f"room:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of the test's own (killed by PID at the end)."""
    server = RedisProcess(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[LegatoProcess]]:
    """``legato run`` processes the test starts; each is killed at the end."""
    started: list[LegatoProcess] = []
    yield started
    for process in started:
        process.kill()
