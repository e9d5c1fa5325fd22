"""Calling handlers: which value goes to which parameter (R1, R2, R10).

A handler's signature is read once (on first use) into a :class:`Plan`. Each parameter
is filled, in this order of precedence, by:

- its annotation or name: ``WebSocket``/``ws``/``websocket``, ``Request``/``request``,
  ``scope``, ``receiver`` (the WebSocket as an async iterator, seed 003), ``session``,
  ``app``, and the extras a callback receives (``code``, ``reason``);
- a path parameter of the same name;
- a provider of the same name (providers.py);
- for HTTP handlers, a parameter annotated with a pydantic model or a dataclass: the JSON
  body, validated (422 when it does not validate);
- otherwise a query parameter of the same name, converted to the annotation (``list[X]``
  takes every value); its default when absent, else 400.

Values convert to ``str``, ``int``, ``float``, ``bool``, ``UUID``, enums and
``Optional``/``X | None`` of those. A value that does not convert raises
:class:`ParameterError`, answered with 400 naming the parameter (R1).

Annotations are evaluated by annotations.py: one that does not resolve (``n: itn``)
raises ``AnnotationError`` naming the function and the parameter, unless the parameter's
value does not depend on it (filled by name: the WebSocket, the request, a provider...).
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, is_dataclass
from functools import cached_property
from typing import Any
from uuid import UUID

from .annotations import AnnotationError, annotation_error, hints_of
from .exceptions import BadRequest

__all__ = ["Plan", "Param", "Kind", "ParameterError", "AnnotationError", "build_plan",
           "converter_for", "is_model_type", "unwrap_optional", "fill_path_params",
           "EMPTY", "BY_NAME"]

EMPTY: Any = inspect.Parameter.empty

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
#: The types a route pattern can name (``{id:int}``), for parameters without annotation.
PATTERN_TYPES: dict[str, Any] = {"int": int, "float": float, "uuid": UUID, "bool": bool}


class ParameterError(BadRequest):
    """A path or query parameter is missing or does not convert (HTTP 400)."""

    def __init__(self, where: str, name: str, problem: str) -> None:
        super().__init__(f"{where} parameter {name!r}: {problem}")
        self.where = where
        self.name = name


class Kind(enum.Enum):
    WEBSOCKET = "websocket"
    REQUEST = "request"
    SCOPE = "scope"
    RECEIVER = "receiver"
    SESSION = "session"
    APP = "app"
    EXTRA = "extra"
    PATH = "path"
    PROVIDER = "provider"
    BODY = "body"
    QUERY = "query"
    SKIP = "skip"


@dataclass
class Param:
    name: str
    kind: Kind
    annotation: Any = EMPTY
    default: Any = EMPTY
    convert: Callable[[str], Any] | None = None
    many: bool = False


@dataclass
class Plan:
    """How to call one function; built once, used on every request."""

    func: Callable[..., Any]
    params: list[Param]
    is_async_gen: bool
    is_coroutine: bool
    is_sync_gen: bool

    @cached_property
    def only_websocket(self) -> bool:
        """Every parameter is the WebSocket itself (nothing to resolve per call)."""
        return all(p.kind in (Kind.WEBSOCKET, Kind.RECEIVER, Kind.SKIP) for p in self.params)

    @cached_property
    def names(self) -> list[str]:
        return [p.name for p in self.params if p.kind is not Kind.SKIP]

    @cached_property
    def path_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.kind is Kind.PATH)


def fill_path_params(target: dict[str, Any], raw: Mapping[str, str],
                     pattern_types: Mapping[str, str], plan: Plan,
                     kwargs: Mapping[str, Any]) -> None:
    """W11/H1: ``path_params`` holds every path parameter: the handler's converted value
    where it names one, else the raw value converted by the pattern's type (``{n:int}``)."""
    named = plan.path_names
    for name, value in raw.items():
        if name in named:
            target[name] = kwargs[name]
        else:
            tp = PATTERN_TYPES.get(pattern_types.get(name, "str"), str)
            target[name] = convert(Param(name, Kind.PATH, convert=converter_for(tp)),
                                   value, "path")


def unwrap_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _convert_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


def converter_for(tp: Any) -> Callable[[str], Any] | None:
    """A str → value function for an annotation, None for "keep the string"."""
    tp = unwrap_optional(tp)
    if tp is EMPTY or tp is str or tp is Any:
        return None
    if tp is bool:
        return _convert_bool
    if tp is int:
        return _convert_int
    if tp is float:
        return _convert_float
    if tp is UUID:
        return _convert_uuid
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return lambda v: _convert_enum(tp, v)
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        return lambda v: _convert_literal(choices, v)
    return None


def _keeps_the_string(tp: Any) -> bool:
    """An annotation under which the raw string is the value (no conversion)."""
    return unwrap_optional(tp) in (EMPTY, str, Any, object)


def _unconvertible(func: Callable[..., Any], param: Param, where: str,
                   tp: Any) -> TypeError:
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)!s}"
    return TypeError(
        f"handler {name}: parameter {param.name!r} is annotated {tp!r}, which a {where} "
        "value (a string) cannot be converted to: annotate it str, int, float, bool, "
        "UUID, an Enum or a Literal (or Optional of one; list[...] for a repeated "
        "query parameter), or take it as str and convert it in the handler")


def _convert_int(value: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ValueError("expected an integer") from None


def _convert_float(value: str) -> float:
    try:
        result = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError("expected a finite number")
    return result


def _convert_uuid(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise ValueError("expected a UUID") from None


def _convert_literal(choices: tuple[Any, ...], value: str) -> Any:
    for choice in choices:
        if str(choice) == value:
            return choice
    raise ValueError("expected one of " + ", ".join(repr(str(c)) for c in choices))


def _convert_enum(tp: type[enum.Enum], value: str) -> Any:
    for member in tp:
        if str(member.value) == value:
            return member
    raise ValueError("expected one of " + ", ".join(repr(str(m.value)) for m in tp))


def is_model_type(tp: Any) -> bool:
    """A pydantic model or a dataclass: a structured value read from JSON."""
    tp = unwrap_optional(tp)
    if not isinstance(tp, type):
        return False
    if is_dataclass(tp):
        return True
    return hasattr(tp, "model_validate") and hasattr(tp, "model_fields")


#: Parameters filled by their name alone (their annotation may be anything).
BY_NAME = {
    "ws": Kind.WEBSOCKET, "websocket": Kind.WEBSOCKET, "request": Kind.REQUEST,
    "req": Kind.REQUEST, "scope": Kind.SCOPE, "receiver": Kind.RECEIVER,
    "session": Kind.SESSION, "app": Kind.APP,
}


def build_plan(func: Callable[..., Any], *, path_names: Mapping[str, str] | None = None,
               providers: Mapping[str, Any] | None = None, extras: tuple[str, ...] = (),
               http: bool = True) -> Plan:
    """Read ``func``'s signature into a :class:`Plan` (see the module docstring).

    ``path_names`` are the route's path parameters (optionally with pattern types),
    ``extras`` names values the caller passes itself (``code`` for ``on_close``).
    """
    from .requests import Request  # noqa: PLC0415 - these import the framework
    from .websocket import WebSocket  # noqa: PLC0415

    hints = hints_of(func)
    pattern_types = dict(path_names or {})
    providers = providers or {}
    params: list[Param] = []
    for p in inspect.signature(func).parameters.values():
        ann = hints.resolved.get(p.name, EMPTY)
        plain = unwrap_optional(ann)
        param = Param(p.name, Kind.QUERY, ann, p.default)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            param.kind = Kind.SKIP
        elif p.name in extras:
            param.kind = Kind.EXTRA
        elif isinstance(plain, type) and issubclass(plain, WebSocket):
            param.kind = Kind.WEBSOCKET
        elif isinstance(plain, type) and issubclass(plain, Request):
            param.kind = Kind.REQUEST
        elif p.name in BY_NAME:
            param.kind = BY_NAME[p.name]
        elif p.name in pattern_types:
            param.kind = Kind.PATH
            if ann is EMPTY:
                ann = PATTERN_TYPES.get(pattern_types[p.name], EMPTY)
            param.convert = converter_for(ann)
            if param.convert is None and not _keeps_the_string(ann):
                raise _unconvertible(func, param, "path", ann)
        elif p.name in providers:
            param.kind = Kind.PROVIDER
        elif http and is_model_type(ann):
            param.kind = Kind.BODY
        else:
            origin = typing.get_origin(plain)
            if origin in (list, tuple, set, frozenset):
                args = typing.get_args(plain)
                param.many = True
                item = args[0] if args else str
                param.convert = converter_for(item)
                if param.convert is None and not _keeps_the_string(item):
                    raise _unconvertible(func, param, "query", item)
            else:
                param.convert = converter_for(ann)
                if param.convert is None and not _keeps_the_string(ann):
                    raise _unconvertible(func, param, "query", ann)
        if p.name in hints.failed and param.kind in (Kind.PATH, Kind.QUERY, Kind.BODY):
            # Its annotation would decide the value: never guess str.
            raise annotation_error(func, "handler", p.name, hints.failed[p.name])
        params.append(param)
    return Plan(func, params, inspect.isasyncgenfunction(func),
                inspect.iscoroutinefunction(func), inspect.isgeneratorfunction(func))


def convert(param: Param, value: str, where: str) -> Any:
    """Convert one raw value; :class:`ParameterError` naming the parameter if it fails."""
    if param.convert is None:
        return value
    try:
        return param.convert(value)
    except ValueError as exc:
        raise ParameterError(where, param.name, f"{exc} (got {value[:64]!r})") from None
