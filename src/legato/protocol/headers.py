"""HTTP header values the WebSocket handshake reads: a case-insensitive multi-map and
the list grammars of RFC 9110 §5.6.1 (``#rule``) and RFC 6455 §9.1 (extensions).

Parsers here are strict about syntax and raise ``ValueError`` with a short message;
callers turn that into the right HTTP status or a declined offer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "Headers",
    "parse_token_list",
    "parse_extensions",
    "serialize_extension",
    "ExtensionParams",
    "is_token",
]

#: RFC 9110 §5.6.2 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OWS = re.compile(r"[ \t]*")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t\x20-\x7e\x80-\xff])*)"')
_ESCAPE = re.compile(r"\\(.)")

#: One extension offer: its name and its parameters in order (value None when bare).
ExtensionParams = list[tuple[str, "str | None"]]


def is_token(value: str) -> bool:
    """True when ``value`` is an RFC 9110 token (what subprotocol names must be)."""
    return _TOKEN.fullmatch(value) is not None


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive, multi-valued HTTP headers that keep their order.

    ``headers[name]`` is the first value; :meth:`get_all` returns every value, which is
    what list-valued headers such as ``Sec-WebSocket-Protocol`` need.
    """

    __slots__ = ("_items", "_index")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        index: dict[str, list[str]] = {}
        for name, value in self._items:
            key = name.lower()
            values = index.get(key)
            if values is None:
                index[key] = [value]
            else:
                values.append(value)
        self._index = index

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()][0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in arrival order (empty when absent)."""
        return list(self._index.get(name.lower(), ()))

    def raw_items(self) -> list[tuple[str, str]]:
        """The headers as received: original case, order and duplicates."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def parse_token_list(values: Iterable[str]) -> list[str]:
    """Parse the ``1#token`` lists of one or more header lines (RFC 9110 §5.6.1).

    Empty elements are allowed and skipped, as the RFC asks of recipients. Raises
    ``ValueError`` for anything that is not a token.
    """
    tokens: list[str] = []
    for value in values:
        for element in value.split(","):
            element = element.strip(" \t")
            if not element:
                continue
            if not is_token(element):
                raise ValueError(f"not a token list: {value!r}")
            tokens.append(element)
    return tokens


def parse_extensions(values: Iterable[str]) -> list[tuple[str, ExtensionParams]]:
    """Parse ``Sec-WebSocket-Extensions`` header lines (RFC 6455 §9.1).

    Returns ``[(name, [(param, value or None), ...]), ...]`` in order. A quoted value is
    unquoted and must then be a token (§9.1). Raises ``ValueError`` on bad syntax.
    """
    result: list[tuple[str, ExtensionParams]] = []
    for value in values:
        pos = 0
        end = len(value)
        while True:
            pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
            if pos < end and value[pos] == ",":  # empty list element
                pos += 1
                continue
            if pos >= end:
                break
            name, pos = _expect_token(value, pos)
            params: ExtensionParams = []
            pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
            while pos < end and value[pos] == ";":
                pos = _OWS.match(value, pos + 1).end()  # type: ignore[union-attr]
                param, pos = _expect_token(value, pos)
                pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
                param_value: str | None = None
                if pos < end and value[pos] == "=":
                    pos = _OWS.match(value, pos + 1).end()  # type: ignore[union-attr]
                    param_value, pos = _param_value(value, pos)
                    pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
                params.append((param, param_value))
            result.append((name, params))
            if pos < end:
                if value[pos] != ",":
                    raise ValueError(f"malformed extension list: {value!r}")
                pos += 1
    return result


def _expect_token(value: str, pos: int) -> tuple[str, int]:
    match = _TOKEN.match(value, pos)
    if match is None:
        raise ValueError(f"expected a token at {pos} in {value!r}")
    return match.group(), match.end()


def _param_value(value: str, pos: int) -> tuple[str, int]:
    if value.startswith('"', pos):
        match = _QUOTED.match(value, pos)
        if match is None:
            raise ValueError(f"bad quoted string in {value!r}")
        unquoted = _ESCAPE.sub(r"\1", match.group(1))
        if not is_token(unquoted):  # RFC 6455 §9.1: the unquoted value must be a token
            raise ValueError(f"quoted extension parameter is not a token: {value!r}")
        return unquoted, match.end()
    return _expect_token(value, pos)


def serialize_extension(name: str, params: ExtensionParams) -> str:
    """Format one extension for a ``Sec-WebSocket-Extensions`` header."""
    parts = [name]
    for param, value in params:
        parts.append(param if value is None else f"{param}={value}")
    return "; ".join(parts)
