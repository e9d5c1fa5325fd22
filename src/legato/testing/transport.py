"""An in-memory stand-in for a TCP connection: the server's end is an asyncio
``Transport``, the client's end is two methods and a callback object.

It keeps the promises a socket transport makes to the server's protocol, because the
server's flow control and shutdown depend on them:

* bytes arrive through ``data_received`` on a later loop iteration, never inside the
  call that wrote them, and at most ``READ_SIZE`` bytes at a time (a socket read), so a
  large upload is seen in pieces and the app runs between them;
* ``pause_reading()`` holds client bytes (and the client's EOF) until ``resume_reading()``;
* ``pause_writing()`` is called while more than the high-water mark of server bytes is
  waiting for the client, ``resume_writing()`` once the client has taken them;
* ``close()`` delivers what was written, then EOF, then ``connection_lost(None)``;
  ``abort()`` drops what was not delivered yet.

Both ends run on the same event loop (the test client's loop thread).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

__all__ = ["ClientEnd", "MemoryTransport", "READ_SIZE"]

#: Bytes handed to the server per ``data_received`` call: a typical socket read.
READ_SIZE = 64 * 1024


class ClientEnd(Protocol):
    """What the client side of a connection is told (the server's bytes and its EOF)."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...


class MemoryTransport(asyncio.Transport):
    """The server's view of one in-memory connection; the client drives the other end
    with :meth:`client_write` and :meth:`client_close`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: ClientEnd,
                 extra: dict[str, Any]) -> None:
        super().__init__(extra)
        self._loop = loop
        self._client = client
        self._protocol: asyncio.Protocol | None = None
        # server -> client
        self._to_client: list[bytes] = []
        self._to_client_size = 0
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._writing_paused = False
        self._flush_scheduled = False
        self._closing = False
        #: Done once the server's protocol got ``connection_lost``.
        self.lost: asyncio.Future[None] = loop.create_future()
        # client -> server
        self._to_server: deque[bytes] = deque()
        self._client_eof = False  # the client closed its end (EOF after the queued bytes)
        self._eof_delivered = False
        self._reading = True
        self._feed_scheduled = False

    # ----------------------------------------------------------- asyncio.Transport API

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return  # like a socket transport after close(): nothing more goes out
        self._to_client.append(bytes(data))
        self._to_client_size += len(data)
        self._schedule_flush()
        if self._to_client_size > self._high and not self._writing_paused:
            self._writing_paused = True
            self._server().pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._schedule_flush()  # what was written still reaches the client, then EOF

    def abort(self) -> None:
        self._to_client.clear()
        self._to_client_size = 0
        self.close()

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule_feed()

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        return self._to_client_size

    # ----------------------------------------------------------------- the client end

    def client_write(self, data: bytes) -> None:
        """The client sends ``data``; dropped once either side has closed."""
        if self._client_eof or self.lost.done() or not data:
            return
        self._to_server.append(data)
        self._schedule_feed()

    def client_close(self) -> None:
        """The client closes its end: the server reads EOF after the bytes still queued,
        and nothing the server writes from now on is delivered."""
        if not self._client_eof:
            self._client_eof = True
            self._schedule_feed()

    # ------------------------------------------------------------------------ delivery

    def _server(self) -> asyncio.Protocol:
        assert self._protocol is not None, "set_protocol() first"
        return self._protocol

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Hand the client what the server wrote; finish closing once it is all out."""
        self._flush_scheduled = False
        if self._to_client:
            data = b"".join(self._to_client)
            self._to_client.clear()
            self._to_client_size = 0
            if not self._client_eof:
                self._client.data_received(data)
        if self._writing_paused and self._to_client_size <= self._low and not self.lost.done():
            self._writing_paused = False
            self._server().resume_writing()
        if self._closing and not self._to_client:
            self._connection_lost()

    def _connection_lost(self) -> None:
        if self.lost.done():
            return
        self.lost.set_result(None)
        self._to_server.clear()
        if not self._client_eof:
            self._client.eof_received()
        self._server().connection_lost(None)

    def _schedule_feed(self) -> None:
        if not self._feed_scheduled and self._reading:
            self._feed_scheduled = True
            self._loop.call_soon(self._feed)

    def _feed(self) -> None:
        """Deliver one socket read of client bytes (or the client's EOF) to the server."""
        self._feed_scheduled = False
        if not self._reading or self.lost.done():
            return
        queue = self._to_server
        if queue:
            data = queue.popleft()
            if len(data) > READ_SIZE:
                queue.appendleft(data[READ_SIZE:])
                data = data[:READ_SIZE]
            self._server().data_received(data)
            if queue or self._client_eof:
                self._schedule_feed()
        elif self._client_eof and not self._eof_delivered:
            # As asyncio does: a protocol that does not keep the half-open connection is
            # closed after EOF (HttpProtocol has no eof_received, so it is).
            self._eof_delivered = True
            if not self._server().eof_received():
                self.close()
