"""Typed messages (W14): JSON validated into pydantic models or dataclasses, and
models serialised back to JSON values.

pydantic v2 is optional (the ``pydantic`` extra). Without it, dataclasses still work:
fields are checked by name (missing or unknown ones are an :class:`InvalidMessage`), not
by type. With it, any type pydantic understands works, ``list[Model]`` included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .exceptions import InvalidMessage

__all__ = ["validator_for", "dump_value", "json_schema"]

_pydantic: Any = False  # not looked for yet


def _load_pydantic() -> Any:
    """pydantic, imported on first use (it takes ~0.1 s), or None when not installed."""
    global _pydantic
    if _pydantic is False:
        try:
            import pydantic  # noqa: PLC0415
        except ImportError:  # pragma: no cover - the extra is not installed
            pydantic = None  # type: ignore[assignment]
        _pydantic = pydantic
    return _pydantic


def validator_for(tp: Any) -> Callable[[Any], Any]:
    """A function JSON value → instance of ``tp``, raising :class:`InvalidMessage`."""
    pydantic = _load_pydantic()
    if pydantic is not None:
        adapter = pydantic.TypeAdapter(tp)

        def validate(value: Any) -> Any:
            try:
                return adapter.validate_python(value)
            except pydantic.ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False)
                first = errors[0] if errors else {"loc": (), "msg": "invalid"}
                where = ".".join(str(p) for p in first.get("loc", ())) or "message"
                raise InvalidMessage(f"{where}: {first.get('msg')}",
                                     [dict(e) for e in errors]) from None

        return validate
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return lambda value: _dataclass_from(tp, value)
    raise TypeError(f"typed messages of {tp!r} need pydantic: pip install legato[pydantic]")


def _dataclass_from(tp: type, value: Any) -> Any:
    if not isinstance(value, dict):
        raise InvalidMessage(f"expected a JSON object for {tp.__name__}")
    names = {f.name for f in dataclasses.fields(tp)}
    unknown = set(value) - names
    if unknown:
        raise InvalidMessage(f"unknown field {sorted(unknown)[0]!r} for {tp.__name__}")
    try:
        return tp(**value)
    except TypeError as exc:
        raise InvalidMessage(f"{tp.__name__}: {exc}") from None


def dump_value(value: Any) -> Any:
    """A JSON-ready value: models and dataclasses become dicts, the rest passes."""
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list) and value and hasattr(value[0], "model_dump"):
        return [dump_value(v) for v in value]
    return value


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON Schema of a message type (for the AsyncAPI document, W17)."""
    if tp in (None, "text"):
        return {"type": "string"}
    if tp == "bytes":
        return {"type": "string", "format": "binary"}
    if tp == "json":
        return {}
    pydantic = _load_pydantic()
    if pydantic is None:
        return {"title": getattr(tp, "__name__", str(tp))}
    schema: dict[str, Any] = pydantic.TypeAdapter(tp).json_schema(
        ref_template="#/components/schemas/{model}")
    return schema
