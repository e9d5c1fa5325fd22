"""JSON in and out, with orjson when installed (the 'speed' extra) and the standard
library otherwise. One place, so HTTP bodies, WebSocket messages and the hub agree on
how values are encoded.

``dumps`` returns compact UTF-8 ``bytes``; ``dumps_str`` the same as ``str`` (what a
WebSocket text frame carries). Values JSON cannot express raise ``TypeError``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps", "dumps_str", "loads", "JSONDecodeError"]

JSONDecodeError = ValueError  # both json's and orjson's decode errors are ValueErrors

try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the extra is missing
    orjson = None  # type: ignore[assignment]


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


if orjson is not None:
    _OPTIONS = orjson.OPT_NON_STR_KEYS

    def dumps(value: Any) -> bytes:
        try:
            return orjson.dumps(value, option=_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise TypeError(str(exc)) from None

    def dumps_str(value: Any) -> str:
        return dumps(value).decode("utf-8")

    def loads(data: str | bytes | bytearray | memoryview) -> Any:
        return orjson.loads(data)
else:  # pragma: no cover
    dumps = _std_dumps

    def dumps_str(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def loads(data: str | bytes | bytearray | memoryview) -> Any:
        if isinstance(data, memoryview):
            data = bytes(data)
        return json.loads(data)
