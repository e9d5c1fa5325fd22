"""The hub's side of a backend in tests: a sink and an event handler that record what
they get, and a way to wait until they got it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from legato.hub.backend import Backend


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, str | bytes]] = []  # (topic, id, payload)
        self.keys: list[str | None] = []  # the key of each message, in the same order
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def sink(self, topic: str, message_id: str, payload: str | bytes,
             key: str | None = None) -> None:
        self.messages.append((topic, message_id, payload))
        self.keys.append(key)
        self._changed.set()

    def on_event(self, kind: str, details: dict[str, Any]) -> None:
        self.events.append((kind, details))
        self._changed.set()

    def payloads(self, topic: str) -> list[str | bytes]:
        return [payload for t, _, payload in self.messages if t == topic]

    def ids(self, topic: str) -> list[str]:
        return [message_id for t, message_id, _ in self.messages if t == topic]

    def event(self, kind: str) -> dict[str, Any] | None:
        """The details of the last ``kind`` event, if any."""
        found = [details for k, details in self.events if k == kind]
        return found[-1] if found else None

    async def wait_until(self, condition: Callable[[], object], timeout: float = 3.0) -> None:
        """Wait until ``condition()`` holds; AssertionError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out; messages={self.messages} "
                                     f"events={self.events}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except asyncio.TimeoutError:
                pass

    async def wait_for_payloads(self, topic: str, count: int, timeout: float = 3.0) -> None:
        await self.wait_until(lambda: len(self.payloads(topic)) >= count, timeout)


@asynccontextmanager
async def running(backend: Backend) -> AsyncIterator[Recorder]:
    """Start ``backend`` with a Recorder as its hub; stop it on exit."""
    recorder = Recorder()
    await backend.start(recorder.sink, recorder.on_event)
    try:
        yield recorder
    finally:
        await backend.stop()
