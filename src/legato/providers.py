"""Providers (R10) and the per-request context that fills handler parameters.

``@app.provider`` registers a function by name; any handler, hook or other provider
that names it as a parameter receives its value. ``scope="app"`` values are made once
(at startup, or on first use) and torn down at shutdown; ``scope="request"`` values
once per HTTP request or WebSocket connection, torn down when it ends. A generator
provider's code after ``yield`` is its teardown. A cycle between providers is a
``RuntimeError`` naming the cycle.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from .exceptions import InvalidMessage, UnprocessableEntity
from .params import EMPTY, Kind, Param, Plan, build_plan, convert
from .typed import validator_for

if TYPE_CHECKING:
    from .requests import Request
    from .websocket import WebSocket

__all__ = ["Provider", "Providers", "Context", "call_plan"]


class Provider:
    def __init__(self, func: Callable[..., Any], name: str, scope: str) -> None:
        if scope not in ("app", "request"):
            raise ValueError(f"provider scope must be 'app' or 'request', not {scope!r}")
        self.func = func
        self.name = name
        self.scope = scope
        self.plan: Plan | None = None


class Providers:
    """The App's providers and the values and teardowns of the app-scoped ones.

    ``app`` is the value a parameter named ``app`` receives (the App that made this):
    the root of what can be injected, held here so that a Context needs nothing else.
    """

    def __init__(self, app: Any = None) -> None:
        self.app = app
        self.by_name: dict[str, Provider] = {}
        self.app_values: dict[str, Any] = {}
        self.app_stack = AsyncExitStack()
        self._lock: asyncio.Lock | None = None

    def add(self, func: Callable[..., Any], name: str | None = None,
            scope: str = "request") -> Provider:
        provider = Provider(func, name or func.__name__, scope)
        self.by_name[provider.name] = provider
        return provider

    async def startup(self, ctx: Context) -> None:
        """Create every app-scoped value (seed 002's client set and history)."""
        for provider in self.by_name.values():
            if provider.scope == "app":
                await ctx.provide(provider.name)

    async def shutdown(self) -> None:
        await self.app_stack.aclose()
        self.app_values.clear()
        self.app_stack = AsyncExitStack()

    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock


class Context:
    """What one request or connection can inject, and its request-scoped values."""

    __slots__ = ("providers", "scope", "request", "websocket", "path_params", "extras",
                 "cache", "stack", "_resolving", "query")

    def __init__(self, providers: Providers, scope: dict[str, Any], *,
                 request: Request | None = None, websocket: WebSocket | None = None,
                 path_params: dict[str, str] | None = None) -> None:
        self.providers = providers
        self.scope = scope
        self.request = request
        self.websocket = websocket
        self.path_params = path_params or {}
        self.extras: dict[str, Any] = {}
        self.cache: dict[str, Any] = {}
        self.stack: AsyncExitStack | None = None
        self._resolving: list[str] = []
        self.query: Any = None

    async def aclose(self) -> None:
        """Tear down request-scoped providers, last made first."""
        if self.stack is not None:
            stack, self.stack = self.stack, None
            await stack.aclose()

    async def provide(self, name: str) -> Any:
        providers = self.providers
        provider = providers.by_name[name]
        if provider.scope == "app":
            if name in providers.app_values:
                return providers.app_values[name]
            async with providers.lock() if not self._resolving else _nolock():
                if name not in providers.app_values:
                    value = await self._make(provider, providers.app_stack)
                    providers.app_values[name] = value
                return providers.app_values[name]
        if name in self.cache:
            return self.cache[name]
        if self.stack is None:
            self.stack = AsyncExitStack()
        value = await self._make(provider, self.stack)
        self.cache[name] = value
        return value

    async def _make(self, provider: Provider, stack: AsyncExitStack) -> Any:
        if provider.name in self._resolving:
            cycle = " -> ".join([*self._resolving, provider.name])
            raise RuntimeError(f"providers depend on each other in a cycle: {cycle}")
        if provider.plan is None:
            provider.plan = build_plan(provider.func, providers=self.providers.by_name,
                                       http=False)
        self._resolving.append(provider.name)
        try:
            plan = provider.plan
            kwargs = await self.kwargs(plan)
            func = plan.func
            if plan.is_async_gen:
                gen = func(**kwargs)
                value = await gen.__anext__()
                stack.push_async_callback(_finish_async_gen, gen)
                return value
            if plan.is_sync_gen:
                gen = func(**kwargs)
                value = next(gen)
                stack.callback(_finish_sync_gen, gen)
                return value
            value = func(**kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value
        finally:
            self._resolving.pop()

    async def kwargs(self, plan: Plan) -> dict[str, Any]:
        """The keyword arguments for one call of ``plan``."""
        out: dict[str, Any] = {}
        for param in plan.params:
            kind = param.kind
            if kind is Kind.SKIP:
                continue
            if kind is Kind.WEBSOCKET or kind is Kind.RECEIVER:
                out[param.name] = self.websocket
            elif kind is Kind.PATH:
                out[param.name] = convert(param, self.path_params[param.name], "path")
            elif kind is Kind.QUERY:
                self._query_value(param, out)
            elif kind is Kind.PROVIDER:
                out[param.name] = await self.provide(param.name)
            elif kind is Kind.REQUEST:
                out[param.name] = self._request()
            elif kind is Kind.SCOPE:
                out[param.name] = self.scope
            elif kind is Kind.SESSION:
                out[param.name] = self.scope.get("session")
            elif kind is Kind.APP:
                out[param.name] = self.providers.app
            elif kind is Kind.EXTRA:
                out[param.name] = self.extras.get(param.name, param.default)
            elif kind is Kind.BODY:
                out[param.name] = await _read_model(self._request(), param)
        return out

    def _request(self) -> Request | None:
        if self.request is None:
            from .requests import Request  # noqa: PLC0415

            # A WebSocket handler asking for `request` gets the handshake as a Request.
            self.request = Request(self.scope)
        return self.request

    def _query_value(self, param: Param, out: dict[str, Any]) -> None:
        query = self.query
        if query is None:
            from .datastructures import QueryParams  # noqa: PLC0415

            query = self.query = QueryParams(self.scope.get("query_string", b""))
        if param.many:
            values = query.getlist(param.name)
            if values or param.default is EMPTY:
                out[param.name] = [convert(param, v, "query") for v in values]
            return
        value = query.get(param.name)
        if value is not None:
            out[param.name] = convert(param, value, "query")
        elif param.default is EMPTY:
            from .params import ParameterError  # noqa: PLC0415

            raise ParameterError("query", param.name, "missing")


async def _read_model(request: Request | None, param: Param) -> Any:
    """A body parameter: the request's JSON validated into its model (422 if it does
    not fit)."""
    assert request is not None
    data = await request.json()
    try:
        return validator_for(param.annotation)(data)
    except InvalidMessage as exc:
        raise UnprocessableEntity({"detail": str(exc), "errors": exc.errors}) from None


async def call_plan(plan: Plan, ctx: Context) -> Any:
    """Call ``plan.func`` with its injected arguments; awaits coroutines. Generators are
    returned uncalled-through (the caller iterates them)."""
    kwargs = await ctx.kwargs(plan)
    result = plan.func(**kwargs)
    if plan.is_coroutine or (not plan.is_async_gen and inspect.isawaitable(result)):
        result = await result
    return result


class _nolock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


async def _finish_async_gen(gen: Any) -> None:
    try:
        await gen.__anext__()
    except StopAsyncIteration:
        return
    await gen.aclose()
    raise RuntimeError("a provider may yield only once")


def _finish_sync_gen(gen: Any) -> None:
    try:
        next(gen)
    except StopIteration:
        return
    gen.close()
    raise RuntimeError("a provider may yield only once")
