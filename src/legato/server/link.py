"""The transport side of one client connection: what the request cycle (cycle.py) and
the WebSocket session (websocket.py) use to write, wait for the peer to drain, pause
reading and close, and the server state they share.

It sits below both of them and below the HTTP/1.1 connection (http.py), which is a
Link that also parses requests and decides what follows a response: the cycle and the
session depend on this class, never on the parser above them, so imports run one way
(docs/design.md, "Layers"). One object per connection still: HttpProtocol is a Link.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .config import ServerConfig
from .direct import Sender, Writer
from .state import ServerState

__all__ = ["Link"]


def _no_writer(data: bytes) -> None:
    """Before connection_made there is nothing to write to."""


class Link(asyncio.Protocol):
    """Writes, flow control and closing of one connection."""

    __slots__ = ("state", "config", "loop", "transport", "client", "server", "scheme",
                 "_reading_paused", "write_paused", "_drain_waiter", "websocket", "writer")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config: ServerConfig = state.config
        self.loop = state.loop
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.scheme = "http"
        self._reading_paused = False
        self.write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.websocket: Any = None  # the WebSocketSession once upgraded
        #: Every write of this connection goes through it (direct.py): send(2) straight
        #: to a plain TCP socket while the transport holds nothing, else transport.write.
        self.writer: Writer = _no_writer

    # ------------------------------------------------------------ asyncio callbacks

    def pause_writing(self) -> None:
        self.write_paused = True
        websocket = self.websocket
        if websocket is not None and websocket.on_paused is not None:
            websocket.on_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        websocket = self.websocket
        if websocket is not None and websocket.on_writable is not None:
            websocket.on_writable()

    # ---------------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.writer(data)

    def write_soon(self, data: bytes) -> None:
        """Write ``data`` with the next write, or at the end of this loop iteration at
        the latest: the answers to pipelined messages leave in one system call (plain
        TCP with the compiled Sender; otherwise now)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        writer = self.writer
        if type(writer) is Sender:
            if writer.hold(data):  # type: ignore[attr-defined]
                self.loop.call_soon(self._flush_held)
        else:
            writer(data)

    def _flush_held(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self.writer.flush()  # type: ignore[attr-defined]

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.write_paused and self.transport is not None \
                and not self.transport.is_closing():
            self._drain_waiter = self.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_ws_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = False
            self.transport.resume_reading()

    # ------------------------------------- what the HTTP connection above decides

    def resume_reading(self) -> None:
        """Read again, unless the connection has reasons not to (http.py)."""
        raise NotImplementedError

    def body_consumed(self) -> None:
        """The app read the request body it was given: more may be read."""
        raise NotImplementedError

    def response_complete(self, cycle: Any) -> None:
        """Called by the request cycle once its response is written."""
        raise NotImplementedError

    def abort_response(self) -> None:
        """The response cannot be completed: the only honest signal is closing."""
        raise NotImplementedError

    def close_transport(self) -> None:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Server shutdown: close idle connections, let requests in flight finish."""
        raise NotImplementedError
