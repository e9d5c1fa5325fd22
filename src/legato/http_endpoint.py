"""Serving one HTTP request with a route's handler (SPEC §4).

    before_request hooks (a returned value short-cuts the handler, R6) → parameters
    (400/422) → handler (its return value becomes a Response, H2; an async generator
    streams) → after_request hooks (may replace the response) → session cookie (H4) →
    response sent → request-scoped providers torn down

``HTTPError`` anywhere becomes its status; exception handlers registered with
``@app.exception_handler`` get their exception types; anything else is a 500 (with the
traceback page when ``debug=True``, H6) and is re-raised for the server to log.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from .exceptions import HTTPError
from .params import Plan, fill_path_params
from .providers import Context, call_plan
from .requests import Request
from .responses import (
    Response,
    StreamingResponse,
    error_response,
    server_error_response,
    to_response,
)
from .routing import Route

if TYPE_CHECKING:
    from .app import App

__all__ = ["serve_http", "respond_error"]


async def serve_http(app: App, route: Route, params: dict[str, str],
                     scope: dict[str, Any], receive: Any, send: Any) -> None:
    request = Request(scope, receive, max_body_size=app.max_body_size)
    ctx = Context(app, scope, request=request, path_params=params)
    try:
        try:
            response = await _handle(app, route, request, ctx)
        except Exception as exc:  # noqa: BLE001 - turned into a response below
            handled = await respond_error(app, request, exc)
            if handled is None:
                error = server_error_response(exc, app.debug)
                await error(scope, receive, send)
                raise
            response = handled
        await response(scope, receive, send)
        if app.metrics is not None:
            app.metrics.http_requests[(route.path, response.status_code)] += 1
    finally:
        await ctx.aclose()


async def _handle(app: App, route: Route, request: Request, ctx: Context) -> Response:
    app.load_session(request.scope)
    response: Response | None = None
    for hook in app.http_hooks:
        result = await call_plan(app.plan_for_callable(hook), ctx)
        if result is not None:
            response = to_response(result)
            break
    if response is None:
        plan = app.plan_for(route)
        kwargs = await ctx.kwargs(plan)
        fill_path_params(request.path_params, ctx.path_params, route.pattern.types, plan,
                         kwargs)
        response = await _call(plan, kwargs)
    for hook in app.after_hooks:
        ctx.extras = {"response": response}
        result = await call_plan(app.plan_for_callable(hook, ("response",)), ctx)
        if isinstance(result, Response):
            response = result
    _add_session_cookie(app, request, response)
    return response


async def _call(plan: Plan, kwargs: dict[str, Any]) -> Response:
    func = plan.func
    if plan.is_async_gen or plan.is_sync_gen:
        return StreamingResponse(func(**kwargs), media_type="text/html; charset=utf-8")
    if plan.is_coroutine:
        result = await func(**kwargs)
    else:
        # Plain functions run in a worker thread so a slow one cannot stall the loop.
        result = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(func, **kwargs))
        if hasattr(result, "__await__"):
            result = await result
    return to_response(result)


async def respond_error(app: App, request: Request, exc: Exception) -> Response | None:
    """The response for an exception, or None when it is unhandled (a 500 to log)."""
    for exc_type, handler in app.exception_handlers:
        if isinstance(exc, exc_type):
            ctx = Context(app, request.scope, request=request)
            ctx.extras = {"exc": exc, "error": exc}
            result = await call_plan(app.plan_for_callable(handler, ("exc", "error")), ctx)
            return to_response(result)
    if isinstance(exc, HTTPError):
        response = error_response(exc)
        _add_session_cookie(app, request, response)
        return response
    return None


def _add_session_cookie(app: App, request: Request, response: Response) -> None:
    if app.sessions is not None:
        for name, value in app.session_headers(request.scope):
            response.headers.append(name, value)
