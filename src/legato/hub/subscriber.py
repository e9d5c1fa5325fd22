"""The pub/sub connection to Redis: replies parsed as they arrive, a chunk at a time.

Every complete reply in what one ``recv`` brought is handed over in one call
(``on_replies(connection, replies)``): a burst of pub/sub messages costs one callback
and no coroutine step per message, and the hub then writes what one loop iteration
delivered in one go (hub/__init__.py, ``_flush``). Nothing here waits: liveness is the
owner's (``heard``, the loop time of the last byte, and ``closed``, resolved with the
reason when the connection ends), so a PING policy lives in one place (redis.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from .pipeline import handshake, open_connection
from .resp import ProtocolError, Reply, ReplyError, ReplyParser, encode_command

__all__ = ["PubSubConnection"]


class PubSubConnection(asyncio.Protocol):
    """One connection in subscribed mode; open it with :meth:`open`."""

    def __init__(self, on_replies: Callable[[PubSubConnection, list[Reply]], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_replies = on_replies
        self._parser = ReplyParser()
        self._answers: deque[asyncio.Future[Reply]] = deque()  # the handshake's
        self.transport: asyncio.Transport | None = None
        #: Resolved with the reason (an exception) when the connection ends.
        self.closed: asyncio.Future[BaseException] = self._loop.create_future()
        self.heard = self._loop.time()

    @classmethod
    async def open(cls, options: dict[str, Any], client_name: str, timeout: float,
                   on_replies: Callable[[PubSubConnection, list[Reply]], None],
                   ) -> PubSubConnection:
        """Connect and run the handshake, each within ``timeout`` (OSError,
        TimeoutError or ConnectionError otherwise)."""
        conn = cls(on_replies)
        try:
            await asyncio.wait_for(open_connection(options, conn), timeout)
            commands = handshake(options, client_name)
            futures = [conn._loop.create_future() for _ in commands]
            conn._answers.extend(futures)
            conn.send_many(commands)
            replies = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except BaseException:
            conn.abort()
            raise
        refused = [r for r in replies if isinstance(r, ReplyError)]
        if refused:
            conn.abort()
            raise ConnectionError(f"Redis refused the connection: {refused[0]}")
        return conn

    def send(self, *args: bytes | str | int) -> None:
        if self.transport is not None and not self.closed.done():
            self.transport.write(encode_command(*args))

    def send_many(self, commands: list[tuple[bytes | str | int, ...]]) -> None:
        if self.transport is not None and not self.closed.done():
            self.transport.write(b"".join(encode_command(*c) for c in commands))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._end(ConnectionError("the pub/sub connection was closed"))

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.heard = self._loop.time()
        self._parser.feed(data)
        try:
            replies = self._parser.replies()
        except ProtocolError as exc:
            self._end(exc)
            if self.transport is not None:
                self.transport.abort()
            return
        answers = self._answers
        while answers and replies:
            answer = answers.popleft()
            if not answer.done():
                answer.set_result(replies.pop(0))
        if replies:
            self._on_replies(self, replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("Redis closed the pub/sub connection"))

    def _end(self, exc: BaseException) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)
        while self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_exception(ConnectionError(str(exc)))
