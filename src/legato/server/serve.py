"""Running the built-in server: start, serve, and shut down gracefully.

Shutdown (SIGTERM/SIGINT or :meth:`Server.request_exit`), in order: stop accepting;
answer WebSocket handshakes in flight with 503 and close open WebSockets with 1001; let
HTTP requests in flight finish; after ``shutdown_timeout`` (or at a second signal) abort
whatever is left; run the app's lifespan shutdown. The process then exits with status 0.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any

from .config import ServerConfig
from .http import HttpProtocol
from .lifespan import Lifespan
from .state import ASGIApp, ServerState, logger

__all__ = ["Server", "CannotServe", "check_port", "cannot_listen", "tls_context",
           "exit_cannot_serve", "import_app", "new_event_loop", "configure_logging"]

#: TCP ports are 16 bits (RFC 9293 §3.1); 0 asks the kernel for any free one.
MAX_PORT = 65535


class CannotServe(RuntimeError):
    """The server cannot listen where it was told: the address is in use, the port
    needs privileges, the host is not this machine's. The message is one line for the
    person who started the server (no traceback: nothing in the code is wrong)."""


def check_port(port: object) -> int:
    """``port`` if it is a TCP port, else ``ValueError``: asyncio would silently wrap
    99999 to 34463 (the port modulo 65536) and serve somewhere nobody looks."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise ValueError(f"port must be an integer from 0 to {MAX_PORT} "
                         f"(0: any free port), not {port!r}")
    return port


def cannot_listen(host: str, port: int, exc: OSError) -> CannotServe:
    """The one line that says why binding ``host:port`` failed and what to do."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        text = f"{where} is already in use (another server?); stop it or choose another --port"
    elif exc.errno == errno.EACCES:
        text = (f"no permission to listen on {where} (ports below 1024 need privileges); "
                "choose another --port")
    elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        text = (f"cannot listen on {where}: {host!r} is not an address of this machine "
                f"({_reason(exc)}); choose another --host")
    else:
        text = f"cannot listen on {where}: {_reason(exc)}"
    return CannotServe(text)


def _reason(exc: OSError) -> str:
    # asyncio's bind errors repeat the address in strerror; the errno's text says it all
    if isinstance(exc, socket.gaierror) or not exc.errno:
        return exc.strerror or str(exc)
    return os.strerror(exc.errno).lower()


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without a certificate; :class:`CannotServe`
    saying which file does not load and why (missing, unreadable, not PEM, a key that
    does not match the certificate)."""
    try:
        return config.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        files = f"{config.ssl_certfile}" + (f" / {config.ssl_keyfile}"
                                            if config.ssl_keyfile else "")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CannotServe(f"cannot use the TLS certificate {files}: {reason}") from None


def exit_cannot_serve(exc: CannotServe) -> SystemExit:
    """Say why on stderr, in one line; the exit (status 1) for ``app.run()`` to raise."""
    print(f"legato: {exc}", file=sys.stderr)
    return SystemExit(1)


def import_app(target: str) -> ASGIApp:
    """``"package.module:attribute"`` → the object; ``ValueError``/``ImportError`` if not."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    module = importlib.import_module(module_name)
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise ImportError(f"{module_name!r} has no attribute {attribute!r}") from None
    return app


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed (the 'speed' extra), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def configure_logging(level: str = "info", access_log: bool = False) -> None:
    root = logging.getLogger("legato")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False  # our handler prints it; the root logger's would repeat it
    root.setLevel(level.upper())
    logging.getLogger("legato.access").setLevel(logging.INFO if access_log else logging.WARNING)


class Server:
    """The built-in HTTP/1.1 + WebSocket server for one ASGI 3 app."""

    def __init__(self, app: ASGIApp, config: ServerConfig | None = None) -> None:
        self.app = app
        self.config = config or ServerConfig()
        self.state: ServerState | None = None
        self.sockets: list[socket.socket] = []
        self._server: asyncio.AbstractServer | None = None
        self._lifespan: Lifespan | None = None
        self._exit: asyncio.Event | None = None
        self._force = False
        self.started = False

    async def start(self, sock: socket.socket | None = None) -> None:
        """Run lifespan startup and begin accepting. ``ValueError`` for a port that is
        not one; ``RuntimeError`` if startup fails; :class:`CannotServe` when the TLS
        files do not load (before startup) or the address cannot be bound (lifespan
        shutdown has run then)."""
        if sock is None:
            check_port(self.config.port)
        ssl = tls_context(self.config)
        loop = asyncio.get_running_loop()
        self._exit = asyncio.Event()
        state = self.state = ServerState(self.config, self.app, loop)
        self._lifespan = Lifespan(self.app, self.config.lifespan)
        if not await self._lifespan.startup():
            raise RuntimeError("application startup failed")
        state.lifespan_state = self._lifespan.state
        if self.config.gc_freeze:
            # Everything alive now (modules, the app, its routes) lives as long as the
            # server: move it out of the cyclic GC's sight, so full collections scan
            # only what connections allocate (CPython's gc.freeze).
            gc.collect()
            gc.freeze()

        def factory() -> HttpProtocol:
            return HttpProtocol(state)

        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, ssl=ssl, backlog=2048)
        else:
            self._server = await self._listen(factory, ssl)
        self.sockets = list(self._server.sockets)
        self.started = True
        for s in self.sockets:
            host, port = s.getsockname()[:2]
            scheme = "https" if ssl else "http"
            logger.info("legato serving on %s://%s:%d", scheme, host, port)

    async def _listen(self, factory: Callable[[], HttpProtocol],
                      ssl: Any) -> asyncio.Server:
        host, port = self.config.host, self.config.port
        try:
            return await asyncio.get_running_loop().create_server(
                factory, host, port, ssl=ssl, backlog=2048, reuse_address=True)
        except OSError as exc:
            assert self._lifespan is not None
            await self._lifespan.shutdown()  # startup ran: undo it before giving up
            raise cannot_listen(host, port, exc) from None

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    def request_exit(self) -> None:
        """Begin a graceful shutdown; asked again during one, stop waiting for clients."""
        if self._exit is not None:
            if self._exit.is_set():
                self._force = True
            self._exit.set()

    async def serve(self, sock: socket.socket | None = None) -> None:
        """Start, serve until asked to exit (signal or :meth:`request_exit`), shut down."""
        await self.start(sock)
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_exit)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            assert self._exit is not None
            await self._exit.wait()
            await self.shutdown()  # a second signal meanwhile cuts the waiting short
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.shutdown()

    async def shutdown(self) -> None:
        state = self.state
        if state is None or state.shutting_down:
            return
        logger.info("shutting down")
        state.shutting_down = True
        state.shutdown_event.set()
        if self._server is not None:
            self._server.close()
        for connection in list(state.connections):
            connection.shutdown()
        deadline = state.loop.time() + self.config.shutdown_timeout
        while state.connections and state.loop.time() < deadline and not self._force:
            await asyncio.sleep(0.02)
        for connection in list(state.connections):
            if connection.transport is not None:
                connection.transport.abort()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        if self._server is not None:
            await self._server.wait_closed()
