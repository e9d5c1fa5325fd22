"""Serving HTTP requests with one route's handler (SPEC §4).

    before_request hooks (a returned value short-cuts the handler, R6) → parameters
    (400/422) → handler (its return value becomes a Response, H2; an async generator
    streams) → after_request hooks (may replace the response) → session cookie (H4) →
    response sent → request-scoped providers torn down

``HTTPError`` anywhere becomes its status; exception handlers registered with
``@app.exception_handler`` get their exception types; anything else is a 500 (with the
traceback page when ``debug=True``, H6) and is re-raised for the server to log.

The endpoint is handed what it needs (the handler's plan, the hooks, the exception
handlers, the session codec, the limits); it never reaches back into the App.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from .exception_handlers import ExceptionHandlers
from .metrics import Metrics
from .params import Plan, fill_path_params
from .plans import Plans
from .providers import Context, call_plan
from .requests import Request
from .responses import Response, StreamingResponse, server_error_response, to_response
from .routing import Route
from .sessions import SessionCodec

__all__ = ["HttpEndpoint"]

_AFTER_EXTRAS = ("response",)


class HttpEndpoint:
    """An HTTP route made ready to serve: its plan and what every request needs.

    ``before`` and ``after`` are the App's hook lists themselves (a hook registered
    later is seen)."""

    __slots__ = ("route", "plan", "plans", "before", "after", "errors", "sessions",
                 "metrics", "max_body_size")

    def __init__(self, route: Route, plans: Plans, *, before: list[Callable[..., Any]],
                 after: list[Callable[..., Any]], errors: ExceptionHandlers,
                 sessions: SessionCodec | None, metrics: Metrics | None,
                 max_body_size: int | None) -> None:
        self.route = route
        self.plan = plans.for_route(route)
        self.plans = plans
        self.before = before
        self.after = after
        self.errors = errors
        self.sessions = sessions
        self.metrics = metrics
        self.max_body_size = max_body_size

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any,
                    params: dict[str, str]) -> None:
        request = Request(scope, receive, max_body_size=self.max_body_size)
        ctx = Context(self.plans.providers, scope, request=request, path_params=params)
        try:
            try:
                response = await self._handle(request, ctx)
            except Exception as exc:  # noqa: BLE001 - turned into a response below
                handled = await self.errors.respond(request, exc)
                if handled is None:
                    error = server_error_response(exc, self.errors.debug)
                    await error(scope, receive, send)
                    raise
                response = handled
            await response(scope, receive, send)
            if self.metrics is not None:
                self.metrics.http_requests[(self.route.path, response.status_code)] += 1
        finally:
            await ctx.aclose()

    async def _handle(self, request: Request, ctx: Context) -> Response:
        sessions, plans = self.sessions, self.plans
        if sessions is not None:
            sessions.load_into(request.scope)
        response: Response | None = None
        for hook in self.before:
            result = await call_plan(plans.for_callable(hook), ctx)
            if result is not None:
                response = to_response(result)
                break
        if response is None:
            plan = self.plan
            kwargs = await ctx.kwargs(plan)
            fill_path_params(request.path_params, ctx.path_params,
                             self.route.pattern.types, plan, kwargs)
            response = await _call(plan, kwargs)
        for hook in self.after:
            ctx.extras = {"response": response}
            result = await call_plan(plans.for_callable(hook, _AFTER_EXTRAS), ctx)
            if isinstance(result, Response):
                response = result
        if sessions is not None:
            for name, value in sessions.headers_for(request.scope):
                response.headers.append(name, value)
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
