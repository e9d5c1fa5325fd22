"""Routes: which handler serves a path, and with which path parameters.

A pattern is a path with ``{name}`` placeholders (one segment) or ``{name:path}`` (the
rest of the path, slashes included). ``{name:int}``, ``{name:float}``, ``{name:uuid}``,
``{name:bool}`` and ``{name:str}`` set the type when the handler does not annotate it.
Matching is by segment only; conversion to the annotated type happens afterwards so a
value that does not convert is a 400 that names the parameter (R1), not a 404.

One :class:`Route` can serve HTTP, WebSocket, or both (a hybrid handler, R2). Mounts hand
everything under a prefix to another ASGI app (R9).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PathPattern", "Route", "Mount", "Router", "WebSocketOptions", "RouteMatch"]

_PLACEHOLDER = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?}")
_PATTERN_TYPES = {"str", "int", "float", "uuid", "bool", "path"}


class PathPattern:
    """A compiled route path; :meth:`match` returns raw (unconverted) parameters."""

    __slots__ = ("path", "regex", "names", "types", "static")

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route paths start with '/': {path!r}")
        self.path = path
        self.names: list[str] = []
        #: Types named in the pattern (``{id:int}``), by parameter.
        self.types: dict[str, str] = {}
        regex, pos = "", 0
        for m in _PLACEHOLDER.finditer(path):
            name, kind = m.group(1), m.group(2) or "str"
            if kind not in _PATTERN_TYPES:
                raise ValueError(f"unknown parameter type {kind!r} in {path!r}")
            if name in self.names:
                raise ValueError(f"parameter {name!r} appears twice in {path!r}")
            regex += re.escape(path[pos:m.start()])
            regex += f"(?P<{name}>.*)" if kind == "path" else f"(?P<{name}>[^/]+)"
            self.names.append(name)
            if kind not in ("str", "path"):
                self.types[name] = kind
            pos = m.end()
        regex += re.escape(path[pos:])
        self.regex = re.compile(regex + r"\Z")
        self.static = not self.names

    def match(self, path: str) -> dict[str, str] | None:
        if self.static:
            return {} if path == self.path else None
        m = self.regex.match(path)
        return m.groupdict() if m else None


@dataclass
class WebSocketOptions:
    """Per-route WebSocket settings; ``None`` means "the App's default"."""

    receive_type: Any = None
    send_type: Any = None
    auto_accept: bool = True
    caught_close_codes: Any = None  # tuple of ints, "all" or ()
    on_connect: Callable[..., Any] | None = None
    on_disconnect: Callable[..., Any] | None = None
    on_close: Callable[..., Any] | None = None
    max_message_size: int | None = None
    ping_interval: float | None = None
    ping_timeout: float | None = None
    allowed_origins: list[str] | None = None
    #: Subprotocols the route speaks, best first; auto-accept picks the first offered.
    subprotocols: list[str] | None = None
    summary: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Route:
    """A path served by one handler, over HTTP (``methods``), WebSocket, or both."""

    def __init__(self, path: str, endpoint: Callable[..., Any], *,
                 methods: Iterable[str] | None = None, http: bool = True,
                 websocket: bool = False, options: WebSocketOptions | None = None,
                 name: str | None = None) -> None:
        self.path = path
        self.pattern = PathPattern(path)
        self.endpoint = endpoint
        self.http = http
        self.websocket = websocket
        methods = {m.upper() for m in (methods or ("GET",))}
        if "GET" in methods:
            methods.add("HEAD")  # RFC 9110 §9.3.2: HEAD is GET without the body
        self.methods = frozenset(methods)
        self.options = options or WebSocketOptions()
        self.name = name or getattr(endpoint, "__name__", path)
        #: Filled by the App on first use: how to call the endpoint (see params.py).
        self.plan: Any = None

    def __repr__(self) -> str:
        kinds = "+".join(k for k, on in (("http", self.http), ("ws", self.websocket)) if on)
        return f"Route({self.path!r}, {self.name}, {kinds})"


class Mount:
    """Everything under ``prefix`` goes to another ASGI app, with ``root_path`` extended
    and ``path`` relative to the prefix (ASGI's convention)."""

    def __init__(self, prefix: str, app: Any, name: str | None = None) -> None:
        if not prefix.startswith("/"):
            raise ValueError(f"mount prefixes start with '/': {prefix!r}")
        self.prefix = prefix.rstrip("/")
        self.app = app
        self.name = name

    def match(self, path: str) -> str | None:
        """The path below the prefix (``"/"`` at least), or None."""
        prefix = self.prefix
        if not prefix:
            return path
        if path == prefix:
            return "/"
        if path.startswith(prefix) and path[len(prefix)] == "/":
            return path[len(prefix):]
        return None


class RouteMatch:
    """What matched a path (a plain class: made once per request and connection)."""

    __slots__ = ("route", "params", "mount", "subpath", "allowed")

    def __init__(self, route: Route | None = None, params: dict[str, str] | None = None,
                 mount: Mount | None = None, subpath: str = "",
                 allowed: frozenset[str] = frozenset()) -> None:
        self.route = route
        self.params = params if params is not None else {}
        self.mount = mount
        self.subpath = subpath
        #: Methods allowed on the path when the method did not match (→ 405).
        self.allowed = allowed


class Router:
    """Routes and mounts, matched in the order they were added."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.mounts: list[Mount] = []
        #: Static WebSocket routes by exact path: what :meth:`match_websocket` finds
        #: for them, in one lookup (the App's dispatch tries it first on every
        #: connection); read-only, see _index_static.
        self.websocket_paths: dict[str, Route] = {}

    def add(self, route: Route) -> Route:
        self.routes.append(route)
        self._index_static()
        return route

    def _index_static(self) -> None:
        """Index the static WebSocket routes that win for their own path: those that no
        earlier WebSocket route also matches (routes match in the order they were added,
        so a ``/{name}`` added first shadows ``/echo``; such a path stays with the loop)."""
        index: dict[str, Route] = {}
        earlier: list[Route] = []
        for route in self.routes:
            if not route.websocket:
                continue
            path = route.pattern.path
            if route.pattern.static and not any(
                    r.pattern.match(path) is not None for r in earlier):
                index[path] = route
            earlier.append(route)
        self.websocket_paths = index

    def mount(self, mount: Mount) -> Mount:
        self.mounts.append(mount)
        # Longer prefixes first, so "/static/img" wins over "/static".
        self.mounts.sort(key=lambda m: len(m.prefix), reverse=True)
        return mount

    def match_http(self, path: str, method: str) -> RouteMatch:
        allowed: set[str] = set()
        for route in self.routes:
            if not route.http:
                continue
            params = route.pattern.match(path)
            if params is None:
                continue
            if method in route.methods:
                return RouteMatch(route, params)
            allowed |= route.methods
        if allowed:
            return RouteMatch(allowed=frozenset(allowed))
        return self._match_mount(path)

    def match_websocket(self, path: str) -> RouteMatch:
        for route in self.routes:
            if route.websocket:
                params = route.pattern.match(path)
                if params is not None:
                    return RouteMatch(route, params)
        return self._match_mount(path)

    def _match_mount(self, path: str) -> RouteMatch:
        for mount in self.mounts:
            sub = mount.match(path)
            if sub is not None:
                return RouteMatch(mount=mount, subpath=sub)
        return RouteMatch()

    def websocket_routes(self) -> list[Route]:
        return [r for r in self.routes if r.websocket]
