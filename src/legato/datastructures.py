"""Read-only views of what a request carries: URL, query parameters, cookies, the
client's address, form data. Shared by :class:`~legato.Request` and
:class:`~legato.WebSocket`, which both read them from an ASGI scope.

Headers are :class:`legato.protocol.headers.Headers` (case-insensitive, multi-valued,
ordered); the handshake and the framework use the same class. Responses write theirs
into :class:`MutableHeaders`, and cookies into :func:`format_set_cookie`, the other
half of :func:`parse_cookies`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from datetime import datetime, timezone
from email.utils import format_datetime, formatdate
from http.cookies import SimpleCookie
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from .protocol.headers import Headers, is_token

__all__ = ["URL", "Headers", "MutableHeaders", "QueryParams", "Address", "FormData",
           "UploadFile", "parse_cookies", "format_set_cookie"]


class Address(NamedTuple):
    host: str
    port: int


class URL(str):
    """The full URL of a request; a ``str`` with its parts as attributes."""

    __slots__ = ()

    @property
    def scheme(self) -> str:
        return urlsplit(self).scheme

    @property
    def netloc(self) -> str:
        return urlsplit(self).netloc

    @property
    def hostname(self) -> str | None:
        return urlsplit(self).hostname

    @property
    def port(self) -> int | None:
        return urlsplit(self).port

    @property
    def path(self) -> str:
        return urlsplit(self).path

    @property
    def query(self) -> str:
        return urlsplit(self).query


class QueryParams(Mapping[str, str]):
    """Immutable multi-dict of query parameters; ``params[name]`` is the last value, as
    most frameworks answer for ``?a=1&a=2``; :meth:`getlist` returns them all."""

    __slots__ = ("_items", "_last")

    def __init__(self, items: str | bytes | Iterable[tuple[str, str]] = ()) -> None:
        if isinstance(items, bytes):
            items = items.decode("latin-1")
        if isinstance(items, str):
            items = parse_qsl(items, keep_blank_values=True)
        self._items: list[tuple[str, str]] = list(items)
        self._last = dict(self._items)

    def __getitem__(self, name: str) -> str:
        return self._last[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._items if k == name]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


def parse_cookies(header: str) -> dict[str, str]:
    """``Cookie`` header → dict; malformed pairs are skipped rather than failing the
    request (browsers send what other sites set, valid or not)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(f"x={value}")
                value = jar["x"].value
            except Exception:  # noqa: BLE001 - keep the raw value
                value = value[1:-1]
        cookies[name] = value
    return cookies


class UploadFile:
    """A file field of a multipart form, held in memory (bodies are bounded by
    ``max_body_size``)."""

    def __init__(self, filename: str, content_type: str, data: bytes,
                 headers: Headers | None = None) -> None:
        self.filename = filename
        self.content_type = content_type
        self.headers = headers or Headers()
        self._data = data

    @property
    def size(self) -> int:
        return len(self._data)

    async def read(self) -> bytes:
        return self._data

    def __repr__(self) -> str:
        return f"UploadFile(filename={self.filename!r}, size={self.size})"


class FormData(Mapping[str, Any]):
    """Immutable multi-dict of form fields: ``str`` values, or :class:`UploadFile`."""

    __slots__ = ("_items", "_last")

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._items: list[tuple[str, Any]] = list(items)
        self._last = dict(self._items)

    def __getitem__(self, name: str) -> Any:
        return self._last[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getlist(self, name: str) -> list[Any]:
        return [v for k, v in self._items if k == name]

    def multi_items(self) -> list[tuple[str, Any]]:
        return list(self._items)


class MutableHeaders(MutableMapping[str, str]):
    """Response headers: case-insensitive, ordered, and able to hold repeated fields.

    ``headers[name] = value`` replaces every field of that name; :meth:`append` adds one
    more (what ``Set-Cookie`` needs: RFC 6265 §3 forbids folding cookies into one line).
    A name that is not an RFC 9110 token, or a value holding CR, LF or NUL, raises
    ``ValueError`` at once: a value must never be able to split the response, and the
    error is clearer where the bad value is set than where it is sent.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] | None = None
                 ) -> None:
        self._items: list[tuple[str, str]] = []
        pairs = items.items() if isinstance(items, Mapping) else items or ()
        for name, value in pairs:
            self.append(name, value)

    def __getitem__(self, name: str) -> str:
        lower = name.lower()
        for key, value in self._items:
            if key.lower() == lower:
                return value
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        _check_header(name, value)
        lower = name.lower()
        first = next((i for i, (k, _) in enumerate(self._items) if k.lower() == lower),
                     len(self._items))
        self._items = [(k, v) for k, v in self._items if k.lower() != lower]
        self._items.insert(first, (name, value))  # where the field was first set

    def __delitem__(self, name: str) -> None:
        lower = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != lower]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        lower = name.lower()
        return any(k.lower() == lower for k, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.lower() for k, _ in self._items))

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._items})

    def append(self, name: str, value: str) -> None:
        """Add a field even when one of that name exists (``Set-Cookie``, ``Vary``)."""
        _check_header(name, value)
        self._items.append((name, value))

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order (empty when absent)."""
        lower = name.lower()
        return [v for k, v in self._items if k.lower() == lower]

    def raw_items(self) -> list[tuple[str, str]]:
        """The fields as set: original case, order and repeats."""
        return list(self._items)

    def encoded(self) -> list[tuple[bytes, bytes]]:
        """The fields as an ASGI ``http.response.start`` message carries them."""
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self._items]

    def __repr__(self) -> str:
        return f"MutableHeaders({self._items!r})"


def _check_header(name: str, value: str) -> None:
    # RFC 9110 §5.1 field names are tokens; §5.5 CR, LF and NUL are never valid in a
    # value, and letting them through would let data inject headers or a second response.
    if not isinstance(name, str) or not is_token(name):
        raise ValueError(f"invalid header name {name!r}")
    if not isinstance(value, str):
        raise ValueError(f"header {name!r}: value must be a str, got {type(value).__name__}")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"header {name!r}: CR, LF and NUL are not allowed in a value")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"header {name!r}: the value is not latin-1; percent-encode it"
                         ) from None


_COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def format_set_cookie(key: str, value: str = "", *, max_age: int | None = None,
                      expires: datetime | int | float | str | None = None, path: str | None = "/",
                      domain: str | None = None, secure: bool = False, httponly: bool = False,
                      samesite: str | None = "lax") -> str:
    """One ``Set-Cookie`` header value (RFC 6265 §4.1).

    ``expires`` is a datetime, a number of seconds from now, or a ready HTTP date.
    A value outside the RFC 6265 cookie-octet set is quoted the way
    :func:`parse_cookies` (and Python's ``http.cookies``) reads it back. Raises
    ``ValueError`` for a name that is not a token, a ``path``/``domain`` that would add
    attributes, or an unknown ``samesite``.
    """
    if not is_token(key):
        raise ValueError(f"invalid cookie name {key!r}")
    # RFC 6265 §4.1.1 cookie-octets go as they are; anything else is quoted the way
    # http.cookies (and so parse_cookies) reads it back.
    coded = value if _COOKIE_OCTETS.fullmatch(value) else SimpleCookie().value_encode(value)[1]
    parts = [f"{key}={coded}"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if expires is not None:
        parts.append(f"Expires={_http_date(expires)}")
    for attribute, text in (("Path", path), ("Domain", domain)):
        if text is not None:
            if any(c in text for c in ";\r\n\x00"):
                raise ValueError(f"cookie {attribute.lower()} {text!r} contains ';' or CR/LF")
            parts.append(f"{attribute}={text}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        if samesite.lower() not in _SAME_SITE:
            raise ValueError(f"samesite must be 'lax', 'strict' or 'none', not {samesite!r}")
        parts.append(f"SameSite={_SAME_SITE[samesite.lower()]}")
    return "; ".join(parts)


def _http_date(when: datetime | int | float | str) -> str:
    if isinstance(when, str):
        return when
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return format_datetime(when.astimezone(timezone.utc), usegmt=True)
    return formatdate(time.time() + when, usegmt=True)
