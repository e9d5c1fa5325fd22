"""What every connection of one running server shares."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from email.utils import formatdate
from typing import Any, Protocol

from ..protocol import ServerHandshake, encode_server_frame
from .config import ServerConfig
from .pings import PingSchedule

__all__ = ["ServerState", "ASGIApp", "logger", "access_logger", "escape_log"]

ASGIApp = Any  # async (scope, receive, send) -> None

logger = logging.getLogger("legato.server")
access_logger = logging.getLogger("legato.access")

_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}


def escape_log(text: str) -> str:
    """Escape control characters so a request cannot forge or split log lines."""
    return text.translate(_CONTROL)


def settings_for(app: ASGIApp, config: ServerConfig) -> ServerConfig:
    """The server's settings for ``app``: a copy of ``config`` that the app may adjust.

    An app with a ``configure_server(config)`` method (a legato App) meets the server
    here, whatever started it (``app.run()``, ``legato run``, a worker of ``--workers N``,
    the TestClient): its WebSocket and body limits hold on every entry point (W15).
    """
    configure = getattr(app, "configure_server", None)
    if configure is None:
        return config
    config = dataclasses.replace(config)
    configure(config)
    return config


class Connection(Protocol):
    """What the server's shutdown needs of a live connection (link.Link is one; that
    module is above this one)."""

    transport: asyncio.Transport | None

    def shutdown(self) -> None: ...


class ServerState:
    """Configuration, the app, and the set of live connections of one server."""

    def __init__(self, config: ServerConfig, app: ASGIApp,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.config = config = settings_for(app, config)
        self.app = app
        #: ``app.websocket_call`` when the app offers it (a legato App): called instead
        #: of the app for WebSocket scopes, it returns the coroutine that serves the
        #: connection, so the app's own __call__ frame does not stay alive with it.
        hook = getattr(app, "websocket_call", None)
        # Only the app's own method: a wrapper that forwards attributes to an inner App
        # (middleware) must keep being called itself.
        self.app_websocket: Any = hook if getattr(hook, "__self__", None) is app else None
        self.loop = loop
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        #: Set when shutdown begins; HTTP scopes carry it (extension "legato.shutdown")
        #: so that endless responses (the channels' SSE streams) can end in time.
        self.shutdown_event = asyncio.Event()
        #: The ASGI lifespan state dict, copied into each request's scope.
        self.lifespan_state: dict[str, Any] = {}
        #: The keepalive pings of every WebSocket connection (one timer per interval).
        self.pings = PingSchedule(loop)
        self.handshake = ServerHandshake(
            deflate=config.ws_deflate, allowed_origins=config.ws_allowed_origins)
        self._date = b""
        self._date_second = -1
        # The last message encoded as a frame, by identity: an app that loops over its
        # connections sending the same str/bytes object encodes it once (RFC 6455 §5.1:
        # server frames are unmasked, so the same bytes serve every connection).
        self._last_message: str | bytes | None = None
        self._last_frame = b""

    def frame_for(self, message: str | bytes) -> bytes:
        """The unmasked frame carrying ``message``, reused while the same object repeats."""
        if message is self._last_message:
            return self._last_frame
        if isinstance(message, str):
            frame = encode_server_frame(0x81, message.encode("utf-8"))
        else:
            frame = encode_server_frame(0x82, bytes(message))
        self._last_message = message
        self._last_frame = frame
        return frame

    def date_header(self) -> bytes:
        """``date: ...\\r\\n`` for responses, formatted once per second."""
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self._date = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a connection's app call as a task the server can wait for on shutdown."""
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task
