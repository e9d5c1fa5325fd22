"""The channel endpoint of one App: the WebSocket route at ``{path}/ws``, the browser
client at ``{path}/client.js``, and the reconnect advice a closing server gives.

The endpoint is an ordinary WebSocket route of the App, so every entry point serves it
(``app.run()``, ``legato run``, ``--workers``, uvicorn, TestClient) and the App's hooks,
sessions and origin checks apply to its handshake as to any route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from .. import jsoncodec
from ..exceptions import HTTPError
from .calls import Hook
from .connection import OVERLOADED, ChannelConnection
from .ports import Host
from .registry import Channel, Registry, Rpc

if TYPE_CHECKING:
    from ..websocket import WebSocket

__all__ = ["SUBPROTOCOL", "Channels"]

logger = logging.getLogger("legato.channels")

SUBPROTOCOL = "legato.v1"


class Channels:
    """Channels and rpcs of one App, and the connections speaking to them."""

    def __init__(self, app: Host, path: str, *, heartbeat: float = 25.0,
                 reconnect_jitter: float | None = None,
                 max_connections: int | None = None) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"channels_path starts with '/' and does not end with it: {path!r}")
        if heartbeat <= 0:
            raise ValueError("channels_heartbeat must be > 0 seconds")
        if max_connections is not None and max_connections < 1:
            raise ValueError("channels_max_connections must be >= 1")
        self.app = app
        self.path = path
        self.heartbeat = heartbeat
        self.reconnect_jitter = reconnect_jitter
        self.max_connections = max_connections
        self.registry = Registry()
        self.connections: set[ChannelConnection] = set()
        self._hooks: dict[Any, Hook] = {}
        self._mounted = False
        self._configured: set[str] = set()
        self._listening = False
        self._gaps: dict[str, str] = {}  # topic → reason, gathered during a reconnect
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------- declaring

    def channel(self, pattern: str, **options: Any) -> Channel:
        channel = Channel(pattern, **options)
        self.registry.add_channel(channel)
        self._mount()
        return channel

    def rpc(self, name: str, func: Callable[..., Any], summary: str | None = None) -> None:
        self.registry.add_rpc(Rpc(name, func, summary))
        self._mount()

    def _mount(self) -> None:
        if self._mounted:
            return
        self._mounted = True
        # Any close code ends a channel connection quietly: the peer went away (1006),
        # or the ASGI server shut down (uvicorn closes with 1012 itself).
        self.app.websocket(f"{self.path}/ws", name="legato-channels", auto_accept=False,
                           subprotocols=[SUBPROTOCOL], caught_close_codes="all",
                           summary="legato.v1 channels (docs/channels.md)")(self.serve)
        self.app.route(f"{self.path}/client.js", name="legato-client")(self.client_js)
        from .sse import SseTransport  # noqa: PLC0415

        self.sse = SseTransport(self)
        self.sse.mount()

    def hook(self, func: Callable[..., Any], channel: Channel | None = None) -> Hook:
        """The hook made ready to call (once per function): a channel's hooks take its
        placeholders, an rpc's (no channel) none."""
        hook = self._hooks.get(func)
        if hook is None:
            names = channel.topic.names if channel is not None else None
            hook = self._hooks[func] = Hook(func, names)
        return hook

    def admit(self) -> bool:
        """A new connection, over either transport: False past ``max_connections``
        (the caller advises and closes with 1013); else the hub is set up for the
        channels (their history, the outage listener) if it is not yet."""
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            return False
        if len(self._configured) < len(self.registry.channels):
            self._configure_hub()
        self._listen_to_hub()
        return True

    def _listen_to_hub(self) -> None:
        if not self._listening:
            self._listening = True
            self.app.hub.listeners.append(self._hub_event)

    def _hub_event(self, kind: str, details: dict[str, Any]) -> None:
        """After an outage the broker may have lost messages (its history trimmed, or
        gone with a restart): the clients joined to those topics are told now, while
        connected, not at their next reconnect (docs/channels.md, ``lost``)."""
        if kind == "gap" and details.get("resume") is None:
            topic = details.get("topic")
            if isinstance(topic, str):
                reason = details.get("reason")
                self._gaps[topic] = "trimmed" if reason == "trimmed" else "lost"
        elif kind == "reconnected":
            gaps, self._gaps = self._gaps, {}
            task = asyncio.get_running_loop().create_task(self._after_outage(gaps))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _after_outage(self, gaps: dict[str, str]) -> None:
        by_topic: dict[str, list[ChannelConnection]] = {}
        for conn in list(self.connections):
            for topic in conn.joined:
                by_topic.setdefault(topic, []).append(conn)
        for topic, conns in by_topic.items():
            try:
                epoch = await self.app.hub.epoch(topic)
            except Exception:  # noqa: BLE001 - the broker went away again: next time
                logger.info("channels: epoch of %r unknown after an outage", topic)
                continue
            for conn in conns:
                await conn.tell_lost(topic, epoch, gaps.get(topic))

    def _configure_hub(self) -> None:
        """Each channel's history, set once on the hub for its topics' prefix."""
        for channel in self.registry.channels:
            if channel.pattern in self._configured:
                continue
            self._configured.add(channel.pattern)
            if channel.history is None:
                continue
            names = channel.topic.names
            static = channel.pattern.split("{", 1)[0] if names else channel.pattern
            self.app.hub.configure(static + "*" if names else static, history=channel.history)

    # ------------------------------------------------------------- serving

    async def serve(self, ws: WebSocket) -> None:
        if SUBPROTOCOL not in ws.subprotocols:
            raise HTTPError(400, f"this endpoint speaks the {SUBPROTOCOL} subprotocol: "
                                 f"offer it in Sec-WebSocket-Protocol")
        await ws.accept(SUBPROTOCOL)
        if not self.admit():
            await ws.send(self.advice("overload"))
            await ws.close(1013, OVERLOADED)
            return
        conn = ChannelConnection(self, ws)
        session = getattr(ws, "_session", None)
        if session is not None:  # legato's server: advice before the shutdown close
            session.on_shutdown = self._shutting_down
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

    def advice(self, reason: str) -> str:
        """The ``reconnect`` frame: spread the clients' return over ``jitter`` ms, which
        grows with the number of connections (1 ms each, 1-30 s) unless set."""
        jitter = self.reconnect_jitter
        if jitter is None:
            jitter = min(30.0, max(1.0, len(self.connections) / 1000))
        delay = 0 if reason == "shutdown" else 1000
        return jsoncodec.dumps_str({"t": "reconnect", "delay": delay,
                                    "jitter": int(jitter * 1000), "reason": reason})

    def _shutting_down(self) -> tuple[int, str, str | None]:
        return 1012, "server restarting", self.advice("shutdown")

    async def client_js(self) -> Any:
        from ..responses import Response  # noqa: PLC0415

        return Response(_client_source(), media_type="text/javascript",
                        headers={"cache-control": "no-cache"})


_SOURCE: bytes | None = None


def _client_source() -> bytes:
    """The browser client. This file is its one source: clients/js/legato.js (the JS
    package, with its tests) is a link to it."""
    global _SOURCE
    if _SOURCE is None:
        _SOURCE = resources.files(__package__).joinpath("client.js").read_bytes()
    return _SOURCE

