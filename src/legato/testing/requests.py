"""Building the request a test asked for: the URL (base URL, query parameters, percent
encoding), the headers (client defaults, then the request's own), the Cookie header from
the jar, the bytes on the wire, and the next request when following a redirect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urljoin, urlsplit, urlunsplit

from ..protocol.http import serialize_request
from .bodies import Body, primitive
from .cookies import CookieJar

__all__ = ["PreparedRequest", "RequestHeaders", "QueryParams", "merge_url", "normalize_url",
           "merge_headers", "host_header", "redirect_request", "REDIRECT_STATUSES"]

RequestHeaders = Mapping[str, str] | Sequence[tuple[str, str]]
QueryParams = str | Mapping[str, Any] | Sequence[tuple[str, Any]]

REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
# RFC 3986 §3.3/§3.4: characters that may stay as they are; "%" keeps existing escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=~"
_QUERY_SAFE = _PATH_SAFE + "?"
_BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")


def merge_url(base_url: str, url: str, params: QueryParams | None = None) -> SplitResult:
    """The absolute URL of a request. A relative ``url`` extends the base URL's path, as
    in httpx (base ``http://testserver/api`` + ``/users`` → ``/api/users``)."""
    parts = urlsplit(url)
    if not parts.scheme:
        base = urlsplit(base_url)
        path = base.path.rstrip("/") + "/" + parts.path.lstrip("/") if parts.path else \
            (base.path or "/")
        parts = base._replace(path=path, query=parts.query, fragment="")
    if params:
        extra = params if isinstance(params, str) else urlencode(_query_pairs(params))
        parts = parts._replace(query="&".join(q for q in (parts.query, extra) if q))
    return normalize_url(parts)


def normalize_url(parts: SplitResult) -> SplitResult:
    """Percent-encode what may not appear raw in a request target (spaces, non-ASCII),
    keep existing escapes, and drop the fragment (never sent, RFC 9110 §4.2.4)."""
    return parts._replace(path=quote(parts.path or "/", safe=_PATH_SAFE),
                          query=quote(parts.query, safe=_QUERY_SAFE), fragment="")


def _query_pairs(params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name), primitive(v)) for v in values)
    return pairs


def merge_headers(*layers: RequestHeaders | None) -> list[tuple[str, str]]:
    """Later layers replace every value of a name set by earlier ones (case-insensitive)."""
    merged: dict[str, list[tuple[str, str]]] = {}
    for layer in layers:
        if not layer:
            continue
        items = layer.items() if isinstance(layer, Mapping) else layer
        fresh: dict[str, list[tuple[str, str]]] = {}
        for name, value in items:
            fresh.setdefault(name.lower(), []).append((name, str(value)))
        merged.update(fresh)
    return [pair for pairs in merged.values() for pair in pairs]


def host_header(url: SplitResult) -> str:
    """``Host`` for ``url``: host[:port], the port only when not the scheme's default."""
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    port = url.port
    return host if port is None or port == _DEFAULT_PORTS.get(url.scheme) else f"{host}:{port}"


@dataclass
class PreparedRequest:
    """One request, ready to be written: everything but Host and Cookie, which depend on
    the URL and the jar at the moment it is sent."""

    method: str
    url: SplitResult
    headers: list[tuple[str, str]]
    body: Body | None = None
    #: Cookies for this request only (the ``cookies=`` argument), over the jar's.
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.url.path + ("?" + self.url.query if self.url.query else "")

    @property
    def full_url(self) -> str:
        return urlunsplit(self.url)

    @property
    def tls(self) -> bool:
        return self.url.scheme in ("https", "wss")

    @property
    def address(self) -> tuple[str, int]:
        """The server's (host, port), as the server's socket would report it."""
        return self.url.hostname or "", self.url.port or _DEFAULT_PORTS.get(self.url.scheme, 80)

    def describe(self) -> str:
        return f"{self.method} {self.target}"

    def head(self, jar: CookieJar) -> list[tuple[str, str]]:
        """The header fields to send: Host first, then ours, then the Cookie header."""
        names = {name.lower() for name, _ in self.headers}
        fields = [] if "host" in names else [("host", host_header(self.url))]
        fields += self.headers
        if "cookie" not in names:
            cookies = [(n, v) for n, v in jar.cookies_for(self.url) if n not in self.cookies]
            cookies += self.cookies.items()
            if cookies:
                fields.append(("cookie", "; ".join(f"{n}={v}" for n, v in cookies)))
        return fields

    def to_bytes(self, jar: CookieJar) -> list[bytes]:
        """The request as written to the connection: the head, then the body chunks.
        ``ValueError`` for a header or target that would break the framing."""
        head = serialize_request(self.method, self.target, self.head(jar))
        return [head, *(self.body.chunks if self.body is not None else ())]


def redirect_request(request: PreparedRequest, status: int, location: str) -> PreparedRequest:
    """The request a browser makes after ``status`` with ``location`` (RFC 9110 §15.4):
    303 (and 301/302 after POST) become a GET without a body; 307/308 repeat the request."""
    url = normalize_url(urlsplit(urljoin(request.full_url, location)))
    method, body, headers = request.method, request.body, request.headers
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = [(n, v) for n, v in headers if n.lower() not in _BODY_HEADERS]
    if (url.scheme, url.hostname, url.port) != \
            (request.url.scheme, request.url.hostname, request.url.port):
        # Credentials are for the origin they were given to (as browsers and httpx do).
        headers = [(n, v) for n, v in headers if n.lower() != "authorization"]
    return replace(request, method=method, url=url, headers=headers, body=body)
