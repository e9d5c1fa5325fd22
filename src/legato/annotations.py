"""A function's parameter annotations, evaluated, for injection (params.py): an
annotation that does not resolve is an error naming the function and the parameter,
never a silent ``str``.

Under ``from __future__ import annotations`` an annotation is only a string until
someone evaluates it, so ``n: itn`` (a typo, a missing import) goes unnoticed at
``def`` time. ``typing.get_type_hints`` evaluates all of a function's annotations at
once and fails all at once; here each parameter is evaluated alone, so the one that
fails is named, and a parameter whose value its annotation does not decide (``ws``,
``request``, a provider's name, a callback's ``code``: see params.py) may keep an
annotation only a type checker can see (an ``if TYPE_CHECKING:`` import).

When (the App's registration methods call :func:`check_registered`):

- at registration, in the namespace of the code that registers, so the local imports
  and classes of an app factory resolve as they would at ``def`` time without the
  future import;
- a name not defined *yet* while the function's module is still being imported (or is
  the script being run) may be a class further down the module, a legitimate forward
  reference: that function is checked again at startup (:func:`check_deferred`) and at
  first use (``build_plan``), and fails there with the same message.
"""

from __future__ import annotations

import builtins
import difflib
import functools
import inspect
import sys
import types
import typing
import weakref
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AnnotationError", "Hints", "hints_of", "check_registered", "check_deferred",
           "caller_namespace", "annotation_error"]

Namespace = dict[str, Any]


class AnnotationError(NameError):
    """A parameter annotation of a handler, hook, provider or callback does not resolve
    (a typo, a missing import): a bug in the app, raised before a request meets it."""


@dataclass
class Hints:
    """A function's annotations by parameter: those that evaluate, and why the others
    do not."""

    resolved: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, BaseException] = field(default_factory=dict)


# Evaluated once per function (registration evaluates in the registering code's
# namespace, which the later build_plan no longer has); weak, so a function can go.
_cache: weakref.WeakKeyDictionary[Any, Hints] = weakref.WeakKeyDictionary()


def hints_of(func: Callable[..., Any], localns: Namespace | None = None, *,
             fresh: bool = False) -> Hints:
    """``func``'s annotations, evaluated in its module (and ``localns``); cached."""
    key = getattr(func, "__func__", func)  # a bound method: its function
    if not fresh:
        try:
            cached = _cache.get(key)
        except TypeError:  # not weak-referenceable or not hashable
            cached = None
        if cached is not None:
            return cached
    hints = _evaluate(func, localns)
    try:
        _cache[key] = hints
    except TypeError:
        pass
    return hints


def check_registered(func: Callable[..., Any], what: str, *,
                     decided_by_name: Container[str], localns: Namespace | None) -> bool:
    """At registration: True when every annotation that matters resolves; False when
    one names what is not defined yet in a module still being executed (check again
    later with :func:`check_deferred`). :class:`AnnotationError` otherwise."""
    hints = hints_of(func, localns, fresh=True)
    found = _first_problem(hints, decided_by_name)
    if found is None:
        return True
    name, exc = found
    if isinstance(exc, NameError) and _module_still_running(func):
        return False
    raise annotation_error(func, what, name, exc)


def check_deferred(func: Callable[..., Any], what: str, *,
                   decided_by_name: Container[str], localns: Namespace | None) -> None:
    """At startup, for what registration deferred: :class:`AnnotationError` if still
    unresolved."""
    hints = hints_of(func, localns, fresh=True)
    found = _first_problem(hints, decided_by_name)
    if found is not None:
        raise annotation_error(func, what, *found)


def caller_namespace(func: Callable[..., Any]) -> Namespace | None:
    """The local namespace of the code registering ``func`` (the first frame outside
    legato): where its annotations would have been evaluated at ``def`` time."""
    if _module_name(func).startswith("legato."):
        return None  # the App's own endpoints: their module says it all
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("legato."):
        frame = frame.f_back  # type: ignore[assignment]
    return frame.f_locals if frame is not None else None


def annotation_error(func: Callable[..., Any], what: str, parameter: str,
                     exc: BaseException) -> AnnotationError:
    """The error for ``parameter`` of ``func``, with a near miss for a typo."""
    qualname = f"{_module_name(func)}.{getattr(func, '__qualname__', func)!s}"
    annotation = _raw_annotations(func).get(parameter)
    problem = f"{type(exc).__name__}: {exc}"
    missing = getattr(exc, "name", None) if isinstance(exc, NameError) else None
    if missing:
        types_known = [n for n, v in [*vars(builtins).items(), *_globals_of(func).items()]
                       if isinstance(v, type) or getattr(v, "__module__", "") == "typing"]
        close = difflib.get_close_matches(missing, types_known, n=1)
        problem = f"{missing!r} is not defined" + (f" (did you mean {close[0]!r}?)"
                                                   if close else " (a missing import?)")
    return AnnotationError(f"{what} {qualname}: parameter {parameter!r} is annotated "
                           f"{annotation!r}: {problem}", name=missing)


# ---------------------------------------------------------------------- evaluation

def _evaluate(func: Callable[..., Any], localns: Namespace | None) -> Hints:
    hints = Hints()
    globalns = _globals_of(func)
    for name, annotation in _raw_annotations(func).items():
        if name == "return":
            continue
        one = types.SimpleNamespace(__annotations__={name: annotation})
        try:
            hints.resolved[name] = typing.get_type_hints(one, globalns, localns)[name]
        except Exception as exc:  # noqa: BLE001 - any failure to evaluate is the app's bug
            hints.failed[name] = exc
    return hints


def _first_problem(hints: Hints, decided_by_name: Container[str]
                   ) -> tuple[str, BaseException] | None:
    for name, exc in hints.failed.items():
        if name not in decided_by_name:
            return name, exc
    return None


def _raw_annotations(func: Callable[..., Any]) -> dict[str, Any]:
    annotations = getattr(func, "__annotations__", None)
    if isinstance(annotations, dict) and not inspect.isclass(func):
        return dict(annotations)
    try:  # a partial or a callable object: what its signature shows
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.annotation for p in parameters if p.annotation is not p.empty}


def _target(func: Callable[..., Any]) -> Any:
    """The function whose module the annotations were written in."""
    while isinstance(func, functools.partial):
        func = func.func
    func = inspect.unwrap(func)
    if callable(func) and not (inspect.isfunction(func) or inspect.ismethod(func)
                               or inspect.isclass(func)):
        func = type(func).__call__  # a callable object: its __call__ method
    return func


def _module_name(func: Callable[..., Any]) -> str:
    return str(getattr(_target(func), "__module__", None) or "?")


def _globals_of(func: Callable[..., Any]) -> Namespace:
    target = _target(func)
    namespace = getattr(target, "__globals__", None)
    if namespace is None:
        module = sys.modules.get(_module_name(func))
        namespace = vars(module) if module is not None else {}
    return namespace


def _module_still_running(func: Callable[..., Any]) -> bool:
    """Whether the module that defines ``func`` may still define more names: it is
    being imported (importlib marks its spec ``_initializing`` until the body has
    run) or it is the script being run (``__main__``). Unknown counts as running."""
    name = _module_name(func)
    module = sys.modules.get(name)
    if module is None or name == "__main__" or module.__spec__ is None:
        return True
    return bool(getattr(module.__spec__, "_initializing", False))
