"""The `make run` demo: a browser page and an echo WebSocket over a real socket, driven
by clients nobody here wrote (the `websockets` library, raw HTTP over asyncio)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest
from ports import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

EXAMPLE = Path(__file__).parents[2] / "examples" / "echo_core.py"


def _load_example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("echo_core", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["echo_core"] = module
    spec.loader.exec_module(module)
    return module


async def _with_server(check) -> None:  # type: ignore[no-untyped-def]
    module = _load_example()
    port = free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(module.serve("127.0.0.1", port, ready))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        await asyncio.wait_for(check(port), 20)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("compression", ["deflate", None])
def test_demo_echoes_text_and_binary_to_the_websockets_client(compression) -> None:
    async def check(port: int) -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws", compression=compression) as ws:
            await ws.send("hello")
            assert await ws.recv() == "You said: hello"
            await ws.send(b"\x00\x01" * 40000)
            assert await ws.recv() == b"\x00\x01" * 40000
        assert ws.close_code == 1000

    asyncio.run(_with_server(check))


def test_demo_serves_the_page_over_http() -> None:
    async def check(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read()
        writer.close()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"new WebSocket" in data

    asyncio.run(_with_server(check))


def test_demo_refuses_a_bad_handshake_with_its_status() -> None:
    async def check(port: int) -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/nowhere"):
                pass
        assert info.value.response.status_code == 404

    asyncio.run(_with_server(check))
