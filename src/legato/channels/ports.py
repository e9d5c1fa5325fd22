"""What each part of the channels needs of the parts above it, typed here, below them
all, so that imports run one way (docs/design.md, "Layers"):

- ``Host``: what the channel service needs of the App that declares it (its routes, its
  hub, its providers and plans, its WebSocket hooks). The App is one; the channels import
  nothing of the App's module.
- ``Service``: what a channel connection and the SSE transport need of the service that
  made them (``channels.service.Channels`` is one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..plans import Plans
from ..providers import Providers
from .calls import Hook
from .registry import Channel, Registry

__all__ = ["Host", "Service"]


class Host(Protocol):
    debug: bool
    providers: Providers
    plans: Plans
    websocket_hooks: list[Callable[..., Any]]

    @property
    def hub(self) -> Any: ...

    def websocket(self, path: str, *, name: str | None = None, **options: Any
                  ) -> Callable[[Any], Any]: ...

    def route(self, path: str, methods: Any = None, *, websocket: bool = False,
              name: str | None = None, **ws_options: Any) -> Callable[[Any], Any]: ...


class Service(Protocol):
    app: Host
    path: str
    heartbeat: float
    registry: Registry
    connections: set[Any]

    def hook(self, func: Callable[..., Any], channel: Channel | None = None) -> Hook: ...

    def admit(self) -> bool: ...

    def advice(self, reason: str) -> str: ...
