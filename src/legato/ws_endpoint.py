"""Serving one WebSocket connection with a route's handler (SPEC §2-3).

Order of events for a connection::

    match route (none → 404, R7) → Origin check (403, W15) → session → parameters
    (400 naming the one that does not convert, R1) → before_request(websocket=True)
    hooks (R6) → on_connect (R5) → auto-accept (W10) → handler (coroutine, async
    generator R4, or hybrid R2) → close 1000 if still open → on_disconnect (peer closed)
    → on_close (always, once accepted) → request-scoped providers torn down

Errors: an ``HTTPError`` before accept denies with its status (after: closes with 1008,
1013 for 503, 1011 for the other 5xx); a ``HubUnavailable`` is a 503 (a warning, no
traceback); an ``InvalidMessage`` closes with its code (1007/1003, W13); a
``WebSocketDisconnect`` whose code the route catches ends quietly (W8); anything else
closes with 1011 (or 500 before accept) and is re-raised so the server logs it with its
traceback (W9).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .exception_handlers import ExceptionHandlers
from .exceptions import HTTPError, HubUnavailable, InvalidMessage, WebSocketDisconnect
from .metrics import RouteMetrics
from .origins import refused_cross_site
from .params import fill_path_params
from .plans import Plans
from .providers import Context, call_plan
from .responses import traceback_text
from .routing import Route, WebSocketOptions
from .sessions import SEALED_AFTER_ACCEPT, Session, SessionCodec
from .websocket import Close, Rejected, WebSocket, WebSocketState, is_caught

__all__ = ["WebSocketEndpoint"]

logger = logging.getLogger("legato.websocket")

_RAW_EVENTS = ("websocket.send", "websocket.close", "websocket.accept")
#: What on_disconnect and on_close take by name.
_CLOSE_EXTRAS = ("code", "reason")


class WebSocketEndpoint:
    """A WebSocket route made ready to serve: its options with the App's defaults
    filled in, its call plan, and what a connection needs before the handler runs —
    worked out once per route instead of on every connection.

    A route whose handler takes only the WebSocket, without ``on_connect``, an Origin
    check or sessions (and while the App has no WebSocket hooks), is *direct*: nothing
    to check, resolve or call before the handler, so no context is made.

    Handed what it needs, never the App: ``opts`` (the route's settings with the App's
    defaults filled in), the plans, ``hooks`` (the App's list of WebSocket hooks
    itself, so a hook registered later is seen), the session codec, the exception
    handlers (their ``debug``, read when a handler crashes), the route's counters, and
    ``hub``: the App's hub if one was made (it is made on first
    use, maybe after this endpoint), for the connection to leave its topics at the end.
    """

    __slots__ = ("route", "opts", "plan", "plans", "hooks", "sessions", "errors", "hub",
                 "direct", "finishes", "metrics", "same_site", "keepalive")

    def __init__(self, route: Route, opts: WebSocketOptions, plans: Plans, *,
                 hooks: list[Callable[..., Any]], sessions: SessionCodec | None,
                 errors: ExceptionHandlers, metrics: RouteMetrics | None,
                 hub: Callable[[], Any]) -> None:
        self.route = route
        self.opts = opts
        self.plan = plan = plans.for_route(route)
        self.plans = plans
        self.hooks = hooks
        self.sessions = sessions
        self.errors = errors
        self.hub = hub
        origins = opts.allowed_origins
        #: W15: without ``allowed_origins``, a cross-site handshake that carries
        #: credentials is refused (``["*"]`` switches the check off).
        self.same_site = origins is None
        self.direct = (plan.only_websocket and opts.on_connect is None
                       and (origins is None or "*" in origins) and sessions is None)
        #: Lifecycle callbacks to run at the end (request-scoped providers aside).
        self.finishes = opts.on_close is not None or opts.on_disconnect is not None
        #: The route's own keepalive (interval, timeout), told to legato's server per
        #: connection; None: the App's, which the server has already (configure_server).
        own = route.options
        self.keepalive = (opts.ping_interval, opts.ping_timeout) if (
            own.ping_interval is not None or own.ping_timeout is not None) else None
        #: The route's counters when the App has metrics on (P7).
        self.metrics = metrics

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any,
                    params: dict[str, str]) -> None:
        """Serve one connection, from the checks before accept to the last callback."""
        opts = self.opts
        # Positional: a class called with keywords builds a dict for them first.
        ws = WebSocket(scope, receive, send, opts.receive_type, opts.send_type,
                       opts.caught_close_codes, opts.max_message_size)
        ws.metrics = self.metrics
        if self.keepalive is not None and ws._session is not None:
            ws._session.keepalive = self.keepalive
        ctx: Context | None = None
        try:
            plan = self.plan
            if self.same_site and refused_cross_site(scope, self.sessions is not None):
                raise HTTPError(403, "cross-site WebSocket handshake refused")
            if self.direct and not self.hooks:
                kwargs = dict.fromkeys(plan.names, ws)
                if params:
                    fill_path_params(ws.path_params, params, self.route.pattern.types,
                                     plan, kwargs)
            else:
                ctx, kwargs = await self._open(ws, params)
            if opts.auto_accept and ws.state is WebSocketState.CONNECTING:
                await ws.accept(_pick_subprotocol(ws, opts.subprotocols))
            # The handler runs in this frame (no helper coroutine): an idle connection's
            # memory is mostly the frames it waits in.
            result = plan.func(**kwargs)
            del kwargs
            if plan.is_async_gen:
                await _drive_generator(ws, result)
            elif plan.is_coroutine or hasattr(result, "__await__"):
                await result
            del result
            await ws.ensure_closed(1000)
        except Rejected:
            pass
        except HTTPError as exc:
            await _http_error(ws, exc)
        except InvalidMessage as exc:
            logger.info("closing WebSocket %s: %s", ws.path, exc)
            await ws.ensure_closed(exc.close_code, _short(str(exc)))
        except HubUnavailable as exc:
            # The hub's broker is down (App(hub_strict=True) lets it out): not a bug in
            # the handler, an outage the client outlasts by coming back later.
            logger.warning("WebSocket %s: %s", ws.path, exc)
            await _http_error(ws, HTTPError(503, "hub unavailable: try again later"))
        except WebSocketDisconnect as exc:
            if exc.code == 1006 and not is_caught(exc.code, ws.caught_close_codes):
                # A peer that vanished (no closing handshake) is normal on the web: the
                # handler learned it from the exception; no error, no traceback.
                logger.debug("WebSocket %s: the peer went away without a Close (1006)",
                             ws.path)
            elif not is_caught(exc.code, ws.caught_close_codes):
                raise
        except BaseException as exc:
            if isinstance(exc, Exception):
                await _crashed(ws, exc, self.errors.debug)
            raise
        finally:
            if ws.metrics is not None and ws.opened:
                ws.metrics.open -= 1
                ws.metrics.close_codes[ws.close_code if ws.close_code is not None
                                       else 1006] += 1
            hub = self.hub()
            if hub is not None and hub.knows(ws):
                await hub.forget(ws)  # P1: a closed connection leaves all its topics
            if ctx is not None or self.finishes:
                await self._finish(ws, ctx, params)

    async def _open(self, ws: WebSocket, params: dict[str, str]
                    ) -> tuple[Context | None, dict[str, Any]]:
        """What a route that is not direct does before accept: checks, parameters
        (providers included), hooks, on_connect.

        Returns the context only when something must be torn down later (request-scoped
        providers), so an idle connection does not keep it; serve() tears it down.
        """
        opts, plan, plans = self.opts, self.plan, self.plans
        ctx = Context(plans.providers, ws.scope, websocket=ws, path_params=params)
        try:
            if opts.allowed_origins is not None or self.sessions is not None:
                self._prepare(ws)
            kwargs = await ctx.kwargs(plan)
            if params:
                fill_path_params(ws.path_params, params, self.route.pattern.types, plan,
                                 kwargs)
            for hook in self.hooks:
                await call_plan(plans.for_callable(hook), ctx)
            if opts.on_connect is not None:
                await _on_connect(ws, await call_plan(plans.for_callable(opts.on_connect),
                                                      ctx))
        except BaseException:
            await ctx.aclose()
            raise
        return (ctx if ctx.stack is not None else None), kwargs

    def _prepare(self, ws: WebSocket) -> None:
        origins = self.opts.allowed_origins
        if origins is not None and "*" not in origins:
            origin = ws.headers.get("origin")
            if origin is not None and origin not in origins:
                # RFC 6455 §10.2: refuse cross-site WebSocket hijacking with 403.
                raise HTTPError(403, "origin not allowed")
        sessions = self.sessions
        if sessions is not None:
            sessions.load_into(ws.scope)
            ws.accept_headers = lambda: _session_cookie(sessions, ws.scope)

    async def _finish(self, ws: WebSocket, ctx: Context | None,
                      params: dict[str, str]) -> None:
        code = ws.close_code if ws.close_code is not None else 1006
        if ctx is None:
            ctx = Context(self.plans.providers, ws.scope, websocket=ws, path_params=params)
        ctx.extras = {"code": code, "reason": ws.close_reason}
        opts, plans = self.opts, self.plans
        try:
            opened = ws.opened
            if opened and ws.client_closed and opts.on_disconnect is not None:
                await call_plan(plans.for_callable(opts.on_disconnect, _CLOSE_EXTRAS), ctx)
            if opened and opts.on_close is not None:
                await call_plan(plans.for_callable(opts.on_close, _CLOSE_EXTRAS), ctx)
        except Exception:  # noqa: BLE001 - a callback's bug must not hide the handler's
            logger.exception("exception in a WebSocket lifecycle callback")
        finally:
            await ctx.aclose()


def _session_cookie(sessions: SessionCodec, scope: dict[str, Any]) -> list[tuple[str, str]]:
    """At accept: the session's Set-Cookie for the 101, its only chance to reach the
    client; then the session is sealed, so a later change fails where it is made."""
    headers = sessions.headers_for(scope)
    session = scope.get("session")
    if isinstance(session, Session):
        session.seal(SEALED_AFTER_ACCEPT)
    return headers


async def _on_connect(ws: WebSocket, result: Any) -> None:
    """What ``on_connect`` returned: go on, deny, or accept/close itself."""
    if result is None or result is True or ws.state is not WebSocketState.CONNECTING:
        return
    if result is False:
        raise HTTPError(403)
    if isinstance(result, dict):
        kind = result.get("type")
        if kind == "websocket.accept":
            await ws.accept(result.get("subprotocol"))
            return
        if kind == "websocket.close":
            raise HTTPError(403)
    raise TypeError("on_connect returns None/True (go on), False (deny), or a "
                    f"websocket.accept/close event, not {result!r}")


def _pick_subprotocol(ws: WebSocket, supported: list[str] | None) -> str | None:
    if not supported:
        return None
    offered = ws.subprotocols
    for name in supported:
        if name in offered:
            return name
    return None


async def _drive_generator(ws: WebSocket, gen: Any) -> None:
    """R4: send what the generator yields; Close / a close event ends it."""
    try:
        async for value in gen:
            if isinstance(value, Close):
                await ws.close(value.code, value.reason)
                return
            if isinstance(value, dict) and value.get("type") in _RAW_EVENTS:
                await ws.send_event(value)
                if value["type"] == "websocket.close":
                    return
                continue
            if ws.state is WebSocketState.CONNECTING:
                await ws.accept()
            await ws.send(value)
    finally:
        await gen.aclose()


async def _http_error(ws: WebSocket, exc: HTTPError) -> None:
    if ws.state is WebSocketState.CONNECTING:
        detail = exc.detail
        body = detail if isinstance(detail, (str, bytes)) else str(detail)
        await ws.send_denial(exc.status_code, body, exc.headers)
        return
    # After accept an HTTP status cannot be sent: policy violation, try again later
    # (503: the service is unavailable for now), or internal error.
    code = 1013 if exc.status_code == 503 else 1008 if exc.status_code < 500 else 1011
    await ws.ensure_closed(code, _short(str(exc.detail)))


async def _crashed(ws: WebSocket, exc: Exception, debug: bool) -> None:
    """W9: the peer sees 1011 (or 500 before accept); the server logs the traceback."""
    if ws.state is WebSocketState.CONNECTING:
        body = traceback_text(exc) if debug else "Internal Server Error"
        try:
            await ws.send_denial(500, body)
        except Exception:  # noqa: BLE001
            logger.debug("could not send the 500 denial", exc_info=True)
    else:
        await ws.ensure_closed(1011, "internal error")


def _short(reason: str) -> str:
    """RFC 6455 §5.5: a close reason fits in 123 bytes of UTF-8."""
    data = reason.encode("utf-8")
    if len(data) <= 123:
        return reason
    return data[:120].decode("utf-8", "ignore") + "..."
