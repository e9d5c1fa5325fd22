"""The App: routes, hooks, providers, sessions, lifespan, and the ASGI 3 entry point.

``App`` is an ASGI 3 application, so the same object runs on legato's built-in server
(``app.run()``, ``legato run module:app``) and, unchanged, under uvicorn, hypercorn,
granian or daphne. Scopes are dispatched to http_endpoint.py, ws_endpoint.py or the
lifespan handler here.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, overload

from .exceptions import HTTPError, MethodNotAllowed, NotFound
from .annotations import caller_namespace, check_deferred, check_registered, hints_of
from .exception_handlers import ExceptionHandlers
from .params import BY_NAME, Plan, is_model_type, unwrap_optional
from .plans import Plans
from .providers import Context, Providers, call_plan
from .responses import traceback_text
from .routing import Mount, Route, Router, WebSocketOptions
from .http_endpoint import HttpEndpoint
from .scope import route_path
from .ws_endpoint import WebSocketEndpoint

__all__ = ["App"]

logger = logging.getLogger("legato.app")

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_CAUGHT = (1000, 1001)
_MiB = 1024 * 1024
_PING = 20.0

#: App settings the built-in server has too: the server's name, the App's default
#: (configure_server() merges them).
_SERVER_SETTINGS: dict[str, tuple[str, Any]] = {
    "max_message_size": ("ws_max_message_size", _MiB),
    "ping_interval": ("ws_ping_interval", _PING),
    "ping_timeout": ("ws_ping_timeout", _PING),
    "max_body_size": ("max_body_size", _MiB),
}


class App:
    """A legato application.

    Options (all keyword): ``websocket`` (False: upgrade requests are plain HTTP, R8),
    ``debug`` (traceback pages, H6), ``secret_key`` (signed-cookie sessions, H4),
    ``docs`` (serve ``/asyncapi.json``, W17), ``max_body_size`` (413 above it),
    WebSocket defaults for every route — ``max_message_size`` (1 MiB, W15),
    ``ping_interval``/``ping_timeout`` (20 s/20 s), ``allowed_origins``,
    ``caught_close_codes`` ((1000, 1001)) — and ``hub`` (the pub/sub backend URL;
    ``hub_strict=True``: ``app.hub.publish()`` raises ``HubUnavailable`` during an
    outage instead of logging a warning and returning None, docs/hub.md).
    """

    def __init__(self, *, websocket: bool = True, debug: bool = False,
                 secret_key: str | bytes | None = None, session_cookie: str = "session",
                 session_max_age: int = 14 * 24 * 3600, https_only_session: bool = False,
                 docs: bool = False, title: str = "legato app", version: str = "1.0.0",
                 max_body_size: int | None = _MiB, max_message_size: int | None = _MiB,
                 ping_interval: float | None = _PING, ping_timeout: float | None = _PING,
                 allowed_origins: Sequence[str] | str | None = None,
                 caught_close_codes: Sequence[int] | str = _DEFAULT_CAUGHT,
                 hub: str = "memory://", hub_envelope: bool = True, hub_history: int = 0,
                 hub_policy: str = "drop_oldest", hub_buffer: int = 256,
                 hub_strict: bool = False,
                 metrics: bool = False, channels_path: str = "/_legato",
                 channels_heartbeat: float = 25.0,
                 channels_reconnect_jitter: float | None = None,
                 channels_max_connections: int | None = None) -> None:
        self.websocket_enabled = websocket
        self.docs = docs
        self.title = title
        self.version = version
        self.max_body_size = max_body_size
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.allowed_origins = _origin_list(allowed_origins)
        self.caught_close_codes = caught_close_codes
        self.hub_url = hub
        self._hub_options: dict[str, Any] = {"envelope": hub_envelope, "history": hub_history,
                             "policy": hub_policy, "buffer": hub_buffer,
                             "strict": hub_strict}
        self._hub: Any = None
        self._channels_options: dict[str, Any] = {
            "path": channels_path, "heartbeat": channels_heartbeat,
            "reconnect_jitter": channels_reconnect_jitter,
            "max_connections": channels_max_connections}
        self._channels: Any = None
        #: Set when legato's server took the App's settings (configure_server).
        self._on_legato_server = False
        self.router = Router()
        self.providers = Providers(self)
        #: Compiled call plans of handlers, hooks and callbacks (plans.py).
        self.plans = Plans(self.providers)
        self.http_hooks: list[Callable[..., Any]] = []
        self.websocket_hooks: list[Callable[..., Any]] = []
        self.after_hooks: list[Callable[..., Any]] = []
        self.startup_hooks: list[Callable[..., Any]] = []
        self.shutdown_hooks: list[Callable[..., Any]] = []
        #: Functions registered while an annotation named something not defined yet
        #: (a forward reference?): checked again at startup (annotations.py).
        self._unresolved: list[tuple[Callable[..., Any], str, tuple[str, ...], Any]] = []
        self._settings: dict[int, WebSocketOptions] = {}
        self._endpoints: dict[Route, WebSocketEndpoint] = {}
        self._http_endpoints: dict[Route, HttpEndpoint] = {}
        self.sessions: Any = None
        if secret_key is not None:
            from .sessions import SessionCodec  # noqa: PLC0415 - needs itsdangerous

            self.sessions = SessionCodec(secret_key, cookie_name=session_cookie,
                                         max_age=session_max_age,
                                         https_only=https_only_session)
        #: ``@app.exception_handler`` handlers and what an error becomes (with ``debug``).
        self.errors = ExceptionHandlers(self.plans, self.sessions, debug=debug)
        self.exception_handlers = self.errors.handlers
        if docs:
            self.route("/asyncapi.json", name="asyncapi")(self._asyncapi_endpoint)
        #: P7 counters, or None (the default: counting costs a little per message).
        self.metrics: Any = None
        if metrics:
            from .metrics import Metrics  # noqa: PLC0415

            self.metrics = Metrics()
            self.route("/metrics", name="metrics")(self._metrics_endpoint)

    # --------------------------------------------------------------- registration

    def route(self, path: str, methods: Iterable[str] | None = None, *,
              websocket: bool = False, name: str | None = None,
              **ws_options: Any) -> Callable[[F], F]:
        """Register an HTTP handler (R2); ``websocket=True`` makes it a WebSocket route
        (R3). A handler with a ``websocket`` parameter is hybrid: it gets the WebSocket
        on upgrade requests and ``None`` otherwise, and takes the options of
        :meth:`websocket` (``max_message_size``, ``ping_interval``...)."""
        if websocket:
            return self.websocket(path, name=name, **ws_options)

        def register(func: F) -> F:
            self._check_annotations(func, "HTTP handler")
            hybrid = _declares_websocket(func)
            if ws_options and not hybrid:
                raise TypeError(f"WebSocket options for an HTTP route that takes no "
                                f"websocket parameter: {sorted(ws_options)}")
            # A hybrid route has the WebSocket options of any other (W15).
            options = self._ws_options(**{"auto_accept": False, **ws_options}) \
                if hybrid else None
            self.router.add(Route(path, func, methods=methods, websocket=hybrid,
                                  options=options, name=name))
            return func

        return register

    def get(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["GET"], **kw)

    def post(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["POST"], **kw)

    def put(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["PUT"], **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["PATCH"], **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[F], F]:
        return self.route(path, ["DELETE"], **kw)

    def websocket(self, path: str, *, name: str | None = None, **options: Any
                  ) -> Callable[[F], F]:
        """Register a WebSocket handler (R1). Options: ``receive_type``, ``send_type``,
        ``value_type`` (both), ``auto_accept``, ``caught_close_codes``, ``on_connect``,
        ``on_disconnect``, ``on_close``, ``subprotocols``, ``max_message_size``,
        ``ping_interval``, ``ping_timeout``, ``allowed_origins``, ``summary``."""
        ws_options = self._ws_options(**options)

        def register(func: F) -> F:
            self._check_annotations(func, "WebSocket handler")
            self.router.add(Route(path, func, http=False, websocket=True,
                                  options=ws_options, name=name))
            return func

        return register

    #: Bocadillo's spelling (seed 002).
    websocket_route = websocket

    def _ws_options(self, **options: Any) -> WebSocketOptions:
        value_type = options.pop("value_type", None)
        if value_type is not None:
            options.setdefault("receive_type", value_type)
            options.setdefault("send_type", value_type)
        for key in ("receive_type", "send_type"):
            kind = options.get(key)
            if kind is not None and kind not in ("text", "bytes", "json") \
                    and not is_model_type(kind) and not _is_typing_form(kind):
                raise ValueError(f"{key} must be 'text', 'bytes', 'json' or a model type, "
                                 f"not {kind!r}")
        if "allowed_origins" in options:
            options["allowed_origins"] = _origin_list(options["allowed_origins"])
        for key in ("on_connect", "on_disconnect", "on_close"):
            if callable(options.get(key)):
                self._check_annotations(options[key], f"{key} callback", ("code", "reason"))
        known = {f.name for f in dataclasses.fields(WebSocketOptions)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown WebSocket route options: {sorted(unknown)}")
        return WebSocketOptions(**options)

    def mount(self, prefix: str, app: Any, name: str | None = None) -> None:
        """Serve any ASGI app under ``prefix`` (R9)."""
        self.router.mount(Mount(prefix, app, name))

    def static(self, prefix: str, directory: str, *, html: bool = False) -> None:
        """Serve the files of ``directory`` under ``prefix`` (H3)."""
        from .staticfiles import StaticFiles  # noqa: PLC0415

        self.mount(prefix, StaticFiles(directory, html=html), name="static")

    @overload
    def before_request(self, func: F, *, websocket: bool = False) -> F: ...
    @overload
    def before_request(self, *, websocket: bool = False) -> Callable[[F], F]: ...

    def before_request(self, func: F | None = None, *, websocket: bool = False) -> Any:
        """Run before every HTTP request, or with ``websocket=True`` before every
        WebSocket handler (R6). Raise an ``HTTPError`` to deny; an HTTP hook may also
        return a response to answer in the handler's place."""
        def register(f: F) -> F:
            self._check_annotations(f, "before_request hook")
            (self.websocket_hooks if websocket else self.http_hooks).append(f)
            return f

        return register(func) if func is not None else register

    #: Tremolo's spelling (seed 001).
    on_request = before_request

    def after_request(self, func: F) -> F:
        """Run after HTTP handlers with ``(request, response)``; returning a Response
        replaces it."""
        self._check_annotations(func, "after_request hook", ("response",))
        self.after_hooks.append(func)
        return func

    def on_startup(self, func: F) -> F:
        self._check_annotations(func, "on_startup hook")
        self.startup_hooks.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        self._check_annotations(func, "on_shutdown hook")
        self.shutdown_hooks.append(func)
        return func

    @overload
    def provider(self, func: F, *, scope: str = "request", name: str | None = None) -> F: ...
    @overload
    def provider(self, *, scope: str = "request", name: str | None = None
                 ) -> Callable[[F], F]: ...

    def provider(self, func: F | None = None, *, scope: str = "request",
                 name: str | None = None) -> Any:
        """Register a provider (R10): its value is injected by name."""
        def register(f: F) -> F:
            self._check_annotations(f, "provider")
            self.providers.add(f, name, scope)
            # Plans made earlier may have taken this name as a query parameter.
            self._forget_endpoints()
            return f

        return register(func) if func is not None else register

    def exception_handler(self, exc_type: type[BaseException]) -> Callable[[F], F]:
        """Answer ``exc_type`` (and subclasses) with ``handler(request, exc)``'s value."""
        def register(func: F) -> F:
            self._check_annotations(func, "exception handler", ("exc", "error"))
            self.exception_handlers.append((exc_type, func))
            return func

        return register

    @property
    def hub(self) -> Any:
        """The pub/sub hub (SPEC §6), made on first use with the App's hub settings."""
        if self._hub is None:
            from .hub import Hub  # noqa: PLC0415

            self._hub = Hub(self.hub_url, **self._hub_options)
        return self._hub

    @property
    def channels(self) -> Any:
        """The channel endpoint (docs/channels.md), made when the first channel or rpc
        is declared."""
        if self._channels is None:
            from .channels import Channels  # noqa: PLC0415

            options = dict(self._channels_options)
            self._channels = Channels(self, options.pop("path"), **options)
        return self._channels

    def channel(self, pattern: str, *, message: Any = None, history: int | None = None,
                presence: bool | Callable[..., Any] = False, summary: str | None = None
                ) -> Any:
        """Declare a channel: topics matching ``pattern`` (``"room:{id}"``) that clients
        join over ``{channels_path}/ws``. Returns the :class:`legato.channels.Channel`;
        decorate its ``authorize``, ``on_join`` and ``on_publish`` hooks."""
        if message is not None and not is_model_type(message):
            raise TypeError(f"message= is a pydantic model or a dataclass, not {message!r}")
        if callable(presence):
            from .channels.calls import EVENT_VALUES  # noqa: PLC0415

            self._check_annotations(presence, "channel presence hook", EVENT_VALUES)
        return self.channels.channel(pattern, message=message, history=history,
                                     presence=presence, summary=summary)

    def rpc(self, name: str, *, summary: str | None = None) -> Callable[[F], F]:
        """Register a handler clients ``call`` by ``name`` (docs/channels.md)."""
        from .channels.calls import EVENT_VALUES  # noqa: PLC0415

        def register(func: F) -> F:
            self._check_annotations(func, "rpc handler", EVENT_VALUES)
            self.channels.rpc(name, func, summary)
            return func

        return register

    # ------------------------------------------------------------------- plumbing

    def _check_annotations(self, func: Callable[..., Any], what: str,
                           extras: tuple[str, ...] = ()) -> None:
        """An annotation that cannot resolve fails here, at registration; one naming
        what is not defined yet (a class further down the module?) is checked again
        at startup and at first use, and fails there with the same message."""
        localns = caller_namespace(func)
        if not check_registered(func, what, decided_by_name=self._named(extras),
                                localns=localns):
            self._unresolved.append((func, what, extras, localns))

    def _named(self, extras: tuple[str, ...]) -> set[str]:
        """Parameters filled by name, whatever their annotation says."""
        return {*BY_NAME, *extras, *self.providers.by_name}

    def _check_unresolved(self) -> None:
        while self._unresolved:
            func, what, extras, localns = self._unresolved[0]
            check_deferred(func, what, decided_by_name=self._named(extras), localns=localns)
            self._unresolved.pop(0)
        for route in self.router.routes:
            # Every route's plan now, with every provider known: a parameter that no
            # string converts to (``when: datetime``) fails startup, not a request.
            self.plan_for(route)

    @property
    def debug(self) -> bool:
        """Traceback pages and denials (H6); ``app.run(debug=True)`` sets it."""
        return self.errors.debug

    @debug.setter
    def debug(self, value: bool) -> None:
        self.errors.debug = value

    def plan_for(self, route: Route) -> Plan:
        return self.plans.for_route(route)

    def plan_for_callable(self, func: Callable[..., Any], extras: tuple[str, ...] = ()
                          ) -> Plan:
        return self.plans.for_callable(func, extras)

    def _forget_endpoints(self) -> None:
        """Plans, settings and endpoints made so far are made again on first use (a
        provider was added, the server's settings were taken)."""
        self.plans.clear()
        self._settings.clear()
        self._endpoints.clear()
        self._http_endpoints.clear()

    def websocket_settings(self, route: Route) -> WebSocketOptions:
        """The route's options with the App's defaults filled in."""
        settings = self._settings.get(id(route))
        if settings is None:
            o = route.options
            settings = dataclasses.replace(
                o,
                caught_close_codes=o.caught_close_codes if o.caught_close_codes is not None
                else self.caught_close_codes,
                max_message_size=o.max_message_size if o.max_message_size is not None
                else self.max_message_size,
                allowed_origins=o.allowed_origins if o.allowed_origins is not None
                else self.allowed_origins,
                ping_interval=o.ping_interval if o.ping_interval is not None
                else self.ping_interval,
                ping_timeout=o.ping_timeout if o.ping_timeout is not None
                else self.ping_timeout)
            self._settings[id(route)] = settings
        return settings

    def websocket_endpoint(self, route: Route) -> WebSocketEndpoint:
        """The route made ready to serve connections (made on first use)."""
        endpoint = self._endpoints.get(route)
        if endpoint is None:
            metrics = self.metrics.route(route.path) if self.metrics is not None else None
            endpoint = self._endpoints[route] = WebSocketEndpoint(
                route, self.websocket_settings(route), self.plans,
                hooks=self.websocket_hooks, sessions=self.sessions, errors=self.errors,
                metrics=metrics, hub=self._made_hub)
        return endpoint

    def _http_endpoint(self, route: Route) -> HttpEndpoint:
        endpoint = self._http_endpoints.get(route)
        if endpoint is None:
            endpoint = self._http_endpoints[route] = HttpEndpoint(
                route, self.plans, before=self.http_hooks, after=self.after_hooks,
                errors=self.errors, sessions=self.sessions, metrics=self.metrics,
                max_body_size=self.max_body_size)
        return endpoint

    def _made_hub(self) -> Any:
        """The hub if it was made (None: nothing was ever subscribed)."""
        return self._hub

    def load_session(self, scope: dict[str, Any]) -> None:
        if self.sessions is not None:
            self.sessions.load_into(scope)

    def session_headers(self, scope: dict[str, Any]) -> list[tuple[str, str]]:
        return self.sessions.headers_for(scope) if self.sessions is not None else []

    def debug_text(self, exc: BaseException) -> str:
        return traceback_text(exc)

    # ---------------------------------------------------------------------- ASGI

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        scope["app"] = self
        if kind == "websocket" and self.websocket_enabled:
            # Awaited here rather than in a helper coroutine: one frame less per open
            # connection.
            serving = self._serving(scope, receive, send)
            if serving is not None:
                await serving
                return
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            raise RuntimeError(f"unsupported ASGI scope type {kind!r}")

    def websocket_call(self, scope: dict[str, Any], receive: Any,
                       send: Any) -> Awaitable[None]:
        """What ``await app(scope, receive, send)`` does for a ``websocket`` scope, as
        the coroutine that serves the connection. legato's server calls this instead of
        the App: without the App's own frame, an open connection holds ~300 bytes less.
        A subclass that overrides ``__call__`` keeps being called as usual."""
        if type(self).__call__ is App.__call__ and self.websocket_enabled:
            scope["app"] = self
            serving = self._serving(scope, receive, send)
            if serving is not None:
                return serving
        return self(scope, receive, send)

    def _serving(self, scope: dict[str, Any], receive: Any,
                 send: Any) -> Awaitable[None] | None:
        """The coroutine serving a WebSocket connection on one of this App's routes, or
        None when no route matches (a mount's, or 404)."""
        path = scope["path"] if not scope.get("root_path") else route_path(scope)
        # A static path (the common case): one dict lookup, no RouteMatch.
        route = self.router.websocket_paths.get(path)
        params: dict[str, str] = {}
        if route is None:
            match = self.router.match_websocket(path)
            if match.route is None:
                return None
            route, params = match.route, match.params
        return self.websocket_endpoint(route).serve(scope, receive, send, params)

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from .requests import Request  # noqa: PLC0415

        match = self.router.match_http(route_path(scope), scope["method"])
        if match.route is not None:
            await self._http_endpoint(match.route).serve(scope, receive, send, match.params)
            return
        if match.mount is not None:
            await match.mount.app(_child_scope(scope, match.mount, match.subpath),
                                  receive, send)
            return
        if match.allowed:
            exc: HTTPError = MethodNotAllowed(
                headers={"allow": ", ".join(sorted(match.allowed))})
        else:
            exc = NotFound()
        request = Request(scope, receive)
        self.load_session(scope)
        response = await self.errors.respond(request, exc)
        assert response is not None
        await response(scope, receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not self.websocket_enabled:
            await self._upgrade_as_http(scope, receive, send)
            return
        match = self.router.match_websocket(route_path(scope))
        if match.route is not None:
            await self.websocket_endpoint(match.route).serve(scope, receive, send,
                                                             match.params)
        elif match.mount is not None:
            await match.mount.app(_child_scope(scope, match.mount, match.subpath),
                                  receive, send)
        else:
            # R7: no WebSocket route here: 404 before any upgrade.
            from .websocket import WebSocket  # noqa: PLC0415

            await WebSocket(scope, receive, send).send_denial(404, "Not Found")

    async def _upgrade_as_http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """R8 under a server that upgraded anyway: answer the request as plain HTTP
        through the denial-response extension."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        http_scope = dict(scope, type="http", method="GET",
                          scheme="https" if scope.get("scheme") == "wss" else "http")
        await receive()  # websocket.connect

        async def no_body() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def as_denial(message: dict[str, Any]) -> None:
            kind = message["type"].replace("http.", "websocket.http.", 1)
            await send(dict(message, type=kind))

        await self._http(http_scope, no_body, as_denial)

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:  # noqa: BLE001
                    logger.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Startup hooks, then app-scoped providers (H5, R10)."""
        if not self._on_legato_server and (self.ping_interval, self.ping_timeout) != (
                _PING, _PING):
            logger.warning("ping_interval/ping_timeout are enforced by legato's server; "
                           "this server keeps its own keepalive settings (uvicorn: "
                           "--ws-ping-interval, --ws-ping-timeout)")
        self._check_unresolved()
        ctx = Context(self.providers, {"type": "lifespan", "app": self})
        await self.hub.start()  # first: startup hooks may publish
        for hook in self.startup_hooks:
            await call_plan(self.plan_for_callable(hook), ctx)
        await self.providers.startup(ctx)

    async def shutdown(self) -> None:
        ctx = Context(self.providers, {"type": "lifespan", "app": self})
        try:
            for hook in self.shutdown_hooks:
                await call_plan(self.plan_for_callable(hook), ctx)
        finally:
            await self.providers.shutdown()
            if self._hub is not None:
                await self._hub.stop()

    # --------------------------------------------------------------------- W17

    def asyncapi(self) -> dict[str, Any]:
        """An AsyncAPI 3 document of the WebSocket routes (W17)."""
        from .asyncapi import build_document  # noqa: PLC0415

        routes = [(r, self.websocket_settings(r)) for r in self.router.websocket_routes()]
        channels = self._channels
        if channels is None:
            return build_document(self.title, self.version, routes)
        return build_document(self.title, self.version, routes, channels.registry,
                              channels.path)

    async def _asyncapi_endpoint(self) -> dict[str, Any]:
        return self.asyncapi()

    async def _metrics_endpoint(self) -> Any:
        from .metrics import render  # noqa: PLC0415
        from .responses import PlainTextResponse  # noqa: PLC0415

        return PlainTextResponse(render(self.metrics, self._hub),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    # --------------------------------------------------------------------- S1

    def run(self, host: str = "127.0.0.1", port: int = 8000, debug: bool = False,
            reload: bool = False, workers: int = 1, ssl_certfile: str | None = None,
            ssl_keyfile: str | None = None, **config: Any) -> None:
        """Serve on the built-in server (S1); blocks until SIGINT/SIGTERM.

        ``ValueError`` for a port outside 0..65535 or ``workers`` below 1; an address
        that cannot be bound (in use, say) or TLS files that do not load print one line
        saying so and exit with status 1 (``SystemExit``)."""
        from .server.config import ServerConfig  # noqa: PLC0415
        from .server.serve import (  # noqa: PLC0415
            CannotServe,
            Server,
            check_port,
            configure_logging,
            exit_cannot_serve,
            new_event_loop,
        )

        check_port(port)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a whole number of at least 1, not {workers!r}")
        if debug:
            self.debug = True
        server_config = ServerConfig(host=host, port=port, ssl_certfile=ssl_certfile,
                                     ssl_keyfile=ssl_keyfile, **config)
        if debug:
            server_config.log_level = "debug"
        configure_logging(server_config.log_level, server_config.access_log)
        if workers > 1 or reload:
            from .server.supervisor import Supervisor  # noqa: PLC0415

            try:
                code = Supervisor(self._import_target(), server_config, workers=workers,
                                  reload=reload, options={"debug": debug}).run()
            except CannotServe as exc:
                raise exit_cannot_serve(exc) from None
            if code:
                raise SystemExit(code)
            return
        loop = new_event_loop()
        try:
            loop.run_until_complete(Server(self, server_config).serve())
        except CannotServe as exc:
            raise exit_cannot_serve(exc) from None
        finally:
            loop.close()

    def configure_server(self, config: Any) -> None:
        """Meet legato's built-in server (R8, W15). The server calls this itself, on
        every entry point (``app.run()``, ``legato run``, ``--workers N``, TestClient).

        For each setting both have: one the App changed from its default holds, and the
        server is told; one the App left at its default takes the server's value (a
        ``legato run --ws-ping-interval 5`` flag), so the App and the server agree. A
        flag that an App setting overrides is logged as a warning. Route settings are
        told to the server per connection, at accept.
        """
        from .server.config import ServerConfig  # noqa: PLC0415

        self._on_legato_server = True
        if not self.websocket_enabled:
            config.ws = False
        server_defaults = ServerConfig()
        for attribute, (name, default) in _SERVER_SETTINGS.items():
            mine, theirs = getattr(self, attribute), getattr(config, name)
            flagged = theirs != getattr(server_defaults, name)
            if mine == default and flagged:
                setattr(self, attribute, theirs)
                continue
            if flagged and theirs != mine:
                logger.warning("App(%s=%r) overrides the server's %s=%r", attribute, mine,
                               name, theirs)
            setattr(config, name, mine)
        # Routes made ready before now took the App's old defaults.
        self._forget_endpoints()

    def _import_target(self) -> str:
        """``module:attribute`` naming this App, for worker processes to import."""
        for module_name in ("__main__", *sorted(sys.modules)):
            module = sys.modules.get(module_name)
            for attribute, value in list(vars(module).items()) if module else ():
                if value is self:
                    return f"{module_name}:{attribute}"
        raise RuntimeError("workers/reload need the App at module level (module:attribute)")


def _declares_websocket(func: Callable[..., Any]) -> bool:
    from .websocket import WebSocket  # noqa: PLC0415

    # Evaluated: ``ws: WebSocket | None = None`` under ``from __future__ import annotations``
    hints = hints_of(func).resolved
    for p in inspect.signature(func).parameters.values():
        if p.name == "websocket":
            return True
        ann = unwrap_optional(hints.get(p.name, p.annotation))
        if isinstance(ann, type) and issubclass(ann, WebSocket):
            return True
    return False


def _origin_list(origins: Sequence[str] | str | None) -> list[str] | None:
    """``allowed_origins`` as a list: ``"*"`` (any Origin, the check off) is ``["*"]``."""
    if origins is None:
        return None
    return [origins] if isinstance(origins, str) else list(origins)


def _is_typing_form(tp: Any) -> bool:
    import typing  # noqa: PLC0415

    return typing.get_origin(tp) is not None


def _child_scope(scope: dict[str, Any], mount: Mount, subpath: str) -> dict[str, Any]:
    child = dict(scope)
    # ASGI: the mounted app gets the full path and a root_path that ends at the mount.
    child["root_path"] = scope.get("root_path", "") + mount.prefix
    return child
