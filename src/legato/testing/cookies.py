"""The test client's cookie jar: what a browser keeps from ``Set-Cookie`` (RFC 6265 §5),
so sessions and logins carry across requests.

Kept: Domain (host-only unless given), Path (default-path when absent), Secure (https/wss
only), Max-Age and Expires (Max-Age wins; zero, negative or past deletes the cookie).
Ignored, as they only matter to scripts or cross-site requests: HttpOnly, SameSite.

As a mapping the jar is ``name -> value`` over every stored cookie, for quick checks
(``client.cookies["session"]``) and for setting one on the test host.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import SplitResult

__all__ = ["Cookie", "CookieJar", "parse_set_cookie"]


@dataclass
class Cookie:
    name: str
    value: str
    domain: str
    path: str = "/"
    host_only: bool = True
    secure: bool = False
    #: Unix time after which it is gone; None for a session cookie.
    expires: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


def _default_path(request_path: str) -> str:
    # RFC 6265 §5.1.4: the request path up to (not including) its right-most "/".
    if not request_path.startswith("/") or request_path.count("/") == 1:
        return "/"
    return request_path[:request_path.rindex("/")]


def _path_matches(cookie_path: str, request_path: str) -> bool:
    # RFC 6265 §5.1.4 path-match.
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/")


def _domain_matches(domain: str, host: str) -> bool:
    # RFC 6265 §5.1.3 domain-match.
    return host == domain or (host.endswith("." + domain) and not host[-1:].isdigit())


def _expiry(value: str) -> float | None:
    try:
        # Cookie dates often use dashes ("Thu, 01-Jan-1970 00:00:00 GMT").
        return parsedate_to_datetime(value.replace("-", " ")).timestamp()
    except (TypeError, ValueError, IndexError):
        return None  # §5.2.1: an unparsable Expires is ignored


def parse_set_cookie(header: str, url: SplitResult, now: float) -> Cookie | None:
    """One ``Set-Cookie`` value received for ``url`` → a cookie (expired: a deletion), or
    None when §5.2/§5.3 say to ignore it."""
    pair, *attributes = header.split(";")
    name, eq, value = pair.partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not name:
        return None
    host = (url.hostname or "").lower()
    cookie = Cookie(name, value, host, _default_path(url.path or "/"))
    max_age: float | None = None
    for attribute in attributes:
        key, _, arg = attribute.partition("=")
        key, arg = key.strip().lower(), arg.strip()
        if key == "max-age" and arg.lstrip("-").isdigit():
            max_age = now + int(arg) if int(arg) > 0 else 0.0
        elif key == "expires" and max_age is None:
            cookie.expires = _expiry(arg)
        elif key == "domain" and arg:
            domain = arg.lstrip(".").lower()
            if not _domain_matches(domain, host):
                return None  # §5.3 step 6: a cookie for another site
            cookie.domain, cookie.host_only = domain, False
        elif key == "path" and arg.startswith("/"):
            cookie.path = arg
        elif key == "secure":
            cookie.secure = True
    if max_age is not None:
        cookie.expires = max_age
    return cookie


class CookieJar(MutableMapping[str, str]):
    """Cookies kept across requests, keyed by (domain, path, name) as a browser keys them."""

    def __init__(self, host: str) -> None:
        self._host = host.lower()
        self._cookies: dict[tuple[str, str, str], Cookie] = {}

    # ------------------------------------------------------------- from responses

    def extract(self, set_cookie: list[str], url: SplitResult) -> dict[str, str]:
        """Store (or delete) what ``Set-Cookie`` headers say; return the cookies set."""
        now = time.time()
        received: dict[str, str] = {}
        for header in set_cookie:
            cookie = parse_set_cookie(header, url, now)
            if cookie is None:
                continue
            key = (cookie.domain, cookie.path, cookie.name)
            if cookie.expired(now):
                self._cookies.pop(key, None)
            else:
                self._cookies[key] = cookie
                received[cookie.name] = cookie.value
        return received

    def cookies_for(self, url: SplitResult) -> list[tuple[str, str]]:
        """The (name, value) pairs of the ``Cookie`` header for ``url`` (RFC 6265 §5.4)."""
        now = time.time()
        host = (url.hostname or "").lower()
        secure = url.scheme in ("https", "wss")
        path = url.path or "/"
        for key, cookie in list(self._cookies.items()):
            if cookie.expired(now):
                del self._cookies[key]
        matching = [c for c in self._cookies.values()
                    if (c.domain == host if c.host_only else _domain_matches(c.domain, host))
                    and _path_matches(c.path, path) and (secure or not c.secure)]
        # §5.4 step 2: longer paths first.
        matching.sort(key=lambda c: len(c.path), reverse=True)
        return [(c.name, c.value) for c in matching]

    # ------------------------------------------------------------- mapping view

    def set(self, name: str, value: str, *, domain: str | None = None, path: str = "/") -> None:
        """Store a cookie as if the test host had set it (or ``domain``, sub-domains too)."""
        host_only = domain is None
        domain = (domain or self._host).lstrip(".").lower()
        self._cookies[(domain, path, name)] = Cookie(name, value, domain, path, host_only)

    def __getitem__(self, name: str) -> str:
        for cookie in self._cookies.values():
            if cookie.name == name and not cookie.expired(time.time()):
                return cookie.value
        raise KeyError(name)

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        keys = [key for key in self._cookies if key[2] == name]
        if not keys:
            raise KeyError(name)
        for key in keys:
            del self._cookies[key]

    def __iter__(self) -> Iterator[str]:
        now = time.time()
        return iter(dict.fromkeys(c.name for c in self._cookies.values() if not c.expired(now)))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"CookieJar({dict(self)!r})"
