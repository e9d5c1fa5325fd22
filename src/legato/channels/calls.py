"""Calling channel hooks and rpc handlers with what they ask for.

They are injected like WebSocket handlers (``ws``, ``session``, ``app``, providers) and
get the event's own values by name: ``topic``, ``action``, ``data``, ``message``,
``name``, ``member`` (this connection's presence value on the topic), and the channel
pattern's placeholders (``id`` for ``room:{id}``, converted to
the annotation). A parameter annotated with a pydantic model or dataclass gets ``data``
validated into it (``invalid`` with the errors when it does not validate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..annotations import hints_of
from ..params import Plan, build_plan, is_model_type
from ..providers import Context, Providers, call_plan
from ..typed import validator_for

__all__ = ["EVENT_VALUES", "Hook"]

#: What every hook may take by name, filled from the event.
EVENT_VALUES = ("topic", "action", "data", "message", "name", "member")


class Hook:
    """One hook or handler, its plan built on first use (every provider known)."""

    __slots__ = ("func", "path_names", "plan", "models")

    def __init__(self, func: Callable[..., Any], path_names: list[str] | None = None) -> None:
        self.func = func
        self.path_names = path_names or []
        self.plan: Plan | None = None
        #: Parameters annotated with a model: name → validator of the event's data.
        self.models: dict[str, Callable[[Any], Any]] = {}

    def _plan(self, providers: Providers) -> Plan:
        if self.plan is None:
            resolved = hints_of(self.func).resolved
            for name, ann in resolved.items():
                if name not in EVENT_VALUES and name not in self.path_names \
                        and is_model_type(ann):
                    self.models[name] = validator_for(ann)
            self.plan = build_plan(
                self.func, path_names={n: "str" for n in self.path_names},
                providers=providers.by_name,
                extras=EVENT_VALUES + tuple(self.models), http=False)
        return self.plan

    async def __call__(self, ctx: Context, **values: Any) -> Any:
        plan = self._plan(ctx.providers)
        extras = dict.fromkeys(EVENT_VALUES)
        extras.update(values)
        for name, validate in self.models.items():
            extras[name] = validate(extras["data"])
        ctx.extras = extras
        return await call_plan(plan, ctx)
