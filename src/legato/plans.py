"""The compiled call plans of one App (params.build_plan): for each route's handler,
and for each hook, callback and exception handler with the values it takes by name.

A plan is made once per function and kept; adding a provider drops them all, since a
plan made earlier may have taken the provider's name for a query parameter. Endpoints
are handed this object, not the App, to get the plans of what they call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .params import Plan, build_plan
from .providers import Providers
from .routing import Route

__all__ = ["Plans"]


class Plans:
    """Plans by route and by (function, names filled from the event)."""

    __slots__ = ("providers", "_plans")

    def __init__(self, providers: Providers) -> None:
        self.providers = providers
        self._plans: dict[Any, Plan] = {}

    def for_route(self, route: Route) -> Plan:
        plan = self._plans.get(route)
        if plan is None:
            names = {n: route.pattern.types.get(n, "str") for n in route.pattern.names}
            plan = build_plan(route.endpoint, path_names=names,
                              providers=self.providers.by_name, http=route.http)
            self._plans[route] = plan
        return plan

    def for_callable(self, func: Callable[..., Any], extras: tuple[str, ...] = ()) -> Plan:
        key = (func, extras)
        plan = self._plans.get(key)
        if plan is None:
            plan = build_plan(func, providers=self.providers.by_name, extras=extras,
                              http=False)
            self._plans[key] = plan
        return plan

    def clear(self) -> None:
        self._plans.clear()
