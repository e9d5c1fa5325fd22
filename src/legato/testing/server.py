"""legato's own server, without sockets: every connection is an ``HttpProtocol`` over a
:class:`~legato.testing.transport.MemoryTransport`, exactly as if a client had connected
over TCP, so tests exercise the code path production runs.

The app is wrapped once (:class:`RecordingApp`) so that each connection's test learns
when that connection's ASGI call ended and what escaped from it: that is how an app's
exception is re-raised in the test (``raise_server_exceptions``) and how the client
waits for background work after a response, as Starlette's TestClient does. Calls are
matched to connections by the client address in the scope, which is unique per
in-memory connection.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from typing import Any

from ..server.config import ServerConfig
from ..server.http import HttpProtocol
from ..server.lifespan import Lifespan
from ..server.state import ASGIApp, ServerState, settings_for
from ..server.websocket import ClientDisconnected
from .transport import ClientEnd, MemoryTransport

__all__ = ["AppCall", "RecordingApp", "MemoryServer", "CLIENT_HOST"]

#: The client host in every scope, as Starlette's TestClient reports it.
CLIENT_HOST = "testclient"
_FIRST_PORT = 50000  # client ports count up from here, one per connection
_PORTS = 15000
# Seconds a cancelled app call gets to unwind (its finally blocks) before we move on.
_CANCEL_GRACE = 1.0


class AppCall:
    """One ASGI call of the app on one connection, as the test sees it."""

    __slots__ = ("started", "task", "error", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.started = False
        self.task: asyncio.Task[Any] | None = None
        #: The exception that escaped the app (not cancellation, not a client that left).
        self.error: BaseException | None = None
        self.done: asyncio.Future[None] = loop.create_future()


class RecordingApp:
    """Calls the app and records, per connection, when the call ends and what it raised."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Calls announced by :meth:`MemoryServer.connect`, by client address.
        self.expected: dict[tuple[str, int], AppCall] = {}
        #: What escaped the app's lifespan call, if anything.
        self.lifespan_error: BaseException | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                self.lifespan_error = exc
                raise
            return
        call = self.expected.pop(scope.get("client"), None)  # type: ignore[arg-type]
        if call is None:
            await self.app(scope, receive, send)
            return
        call.started = True
        call.task = asyncio.current_task()
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            # ClientDisconnected is the server telling the app the client left: how a
            # client hangs up is the test's doing, not a bug in the app.
            if not isinstance(exc, ClientDisconnected):
                call.error = exc
            raise
        finally:
            if not call.done.done():
                call.done.set_result(None)


class MemoryServer:
    """The built-in server's state for one TestClient, and its in-memory connections."""

    def __init__(self, app: ASGIApp, config: ServerConfig, loop: asyncio.AbstractEventLoop,
                 *, raise_app_errors: bool = True) -> None:
        self.loop = loop
        self.raise_app_errors = raise_app_errors
        self.app = RecordingApp(app)
        # The App's settings meet the server's as on a real server (W15), though the
        # recording wrapper stands in for the App below.
        self.state = ServerState(settings_for(app, config), self.app, loop)
        self.lifespan: Lifespan | None = None
        self._ports = itertools.count()
        self._tls: ssl.SSLContext | None = None

    def connect(self, client: ClientEnd, *, server: tuple[str, int], tls: bool
                ) -> tuple[MemoryTransport, AppCall]:
        """Open a connection from ``client`` (the server's protocol sees it at once)."""
        peer = (CLIENT_HOST, _FIRST_PORT + next(self._ports) % _PORTS)
        call = AppCall(self.loop)
        self.app.expected[peer] = call
        extra = {"peername": peer, "sockname": server,
                 "sslcontext": self._tls_context() if tls else None}
        transport = MemoryTransport(self.loop, client, extra)
        protocol = HttpProtocol(self.state)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        return transport, call

    def _tls_context(self) -> ssl.SSLContext:
        # Only its presence matters: the server reports https/wss when a transport has one.
        if self._tls is None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        return self._tls

    async def settle(self, transport: MemoryTransport, call: AppCall, timeout: float) -> bool:
        """Wait until the server dropped the connection and the app call returned.

        Both waits share ``timeout`` seconds; a connection still open then is aborted and
        an app call still running is cancelled (as Starlette cancels the app). Returns
        True when the app had to be cancelled.
        """
        deadline = self.loop.time() + timeout
        if not await _wait(transport.lost, deadline, self.loop):
            transport.client_close()
            transport.abort()
            await _wait(transport.lost, self.loop.time() + _CANCEL_GRACE, self.loop)
        await asyncio.sleep(0)  # an app task spawned by the last bytes gets to start
        if not call.started:
            self.app.expected = {k: v for k, v in self.app.expected.items() if v is not call}
            return False
        if await _wait(call.done, deadline, self.loop):
            return False
        if call.task is not None:
            call.task.cancel()
        await _wait(call.done, self.loop.time() + _CANCEL_GRACE, self.loop)
        return True

    # ------------------------------------------------------------------------ lifespan

    async def startup(self) -> None:
        """Run the app's lifespan startup (mode from ``config.lifespan``).

        Raises the app's own exception when one made startup fail (``raise_app_errors``),
        else ``RuntimeError`` with the app's failure message.
        """
        lifespan = self.lifespan = Lifespan(self.app, self.state.config.lifespan)
        if not await lifespan.startup():
            self.lifespan = None
            raise self._lifespan_failure("startup", lifespan.failed)
        # mode "auto": an app that raised at once does not speak lifespan; not an error.
        self.app.lifespan_error = None
        self.state.lifespan_state = lifespan.state

    async def shutdown(self, timeout: float) -> BaseException | None:
        """Stop the server: close what is open (1001 to WebSockets), cancel app calls
        left after ``timeout`` seconds, run lifespan shutdown. Returns a lifespan
        shutdown failure instead of raising it, so the loop still stops."""
        state = self.state
        state.shutting_down = True
        for connection in list(state.connections):
            connection.shutdown()
        deadline = self.loop.time() + timeout
        while state.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.005)
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        tasks = [t for t in state.tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE)
        lifespan = self.lifespan
        if lifespan is None:
            return None
        self.lifespan = None
        try:
            await asyncio.wait_for(lifespan.shutdown(), timeout)
        except asyncio.TimeoutError:
            return TimeoutError(f"application shutdown did not complete within {timeout:g} s")
        if lifespan.failed is not None:
            return self._lifespan_failure("shutdown", lifespan.failed)
        return None

    def _lifespan_failure(self, stage: str, message: str | None) -> BaseException:
        error, self.app.lifespan_error = self.app.lifespan_error, None
        if error is not None and self.raise_app_errors:
            return error
        return RuntimeError(f"application {stage} failed: {message}")


async def _wait(future: asyncio.Future[Any], deadline: float,
                loop: asyncio.AbstractEventLoop) -> bool:
    """Wait for ``future`` until ``deadline`` without cancelling it; True if it is done."""
    if not future.done():
        await asyncio.wait({future}, timeout=max(0.0, deadline - loop.time()))
    return future.done()
