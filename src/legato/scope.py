"""What HTTP requests and WebSocket connections have in common: the facts of the
request that opened them, read lazily from the ASGI scope (W11, H1).

Everything here is available before a WebSocket is accepted, so hooks and
``on_connect`` callbacks can decide on it.
"""

from __future__ import annotations

from typing import Any

from .datastructures import URL, Address, Headers, QueryParams, parse_cookies

__all__ = ["HTTPConnection", "route_path"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def route_path(scope: dict[str, Any]) -> str:
    """The path below ``root_path``: what routes and mounts match.

    ASGI: ``path`` is the full path and ``root_path`` the prefix the app is mounted at
    (uvicorn, Starlette and legato's server all follow this), so an app strips it.
    """
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        rest = path[len(root):]
        if not rest:
            return "/"
        if rest[0] == "/":
            return rest
    return path


class HTTPConnection:
    """Base of :class:`~legato.Request` and :class:`~legato.WebSocket`."""

    __slots__ = ("scope", "_headers", "_query", "_cookies")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self._headers: Headers | None = None
        self._query: QueryParams | None = None
        self._cookies: dict[str, str] | None = None

    @property
    def app(self) -> Any:
        """The legato App serving this connection (None outside one)."""
        return self.scope.get("app")

    @property
    def path(self) -> str:
        """The full path, decoded (``root_path`` included, as ASGI says)."""
        return str(self.scope.get("path", "/"))

    @property
    def scheme(self) -> str:
        """``http``/``https`` for requests, ``ws``/``wss`` for WebSockets."""
        return str(self.scope.get("scheme", "http"))

    @property
    def headers(self) -> Headers:
        """Case-insensitive, read-only; ``headers.get_all(name)`` for repeated fields."""
        if self._headers is None:
            self._headers = Headers(
                (bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                for n, v in self.scope.get("headers", ()))
        return self._headers

    @property
    def query_params(self) -> QueryParams:
        if self._query is None:
            self._query = QueryParams(self.scope.get("query_string", b""))
        return self._query

    #: Bocadillo's spelling (seed 002).
    query_parameters = query_params

    @property
    def path_params(self) -> dict[str, Any]:
        """Path parameters of the matched route, converted to their annotated types."""
        params: dict[str, Any] = self.scope.setdefault("path_params", {})
        return params

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            self._cookies = parse_cookies("; ".join(self.headers.get_all("cookie")))
        return self._cookies

    @property
    def client(self) -> Address | None:
        """The peer's (host, port), or None when the server does not know it."""
        client = self.scope.get("client")
        return Address(str(client[0]), int(client[1])) if client else None

    @property
    def host(self) -> str:
        """The Host header (``name[:port]``), else the server's address."""
        host = self.headers.get("host")
        if host:
            return host
        server = self.scope.get("server")
        if not server:
            return ""
        port = server[1]
        if port is None or _DEFAULT_PORTS.get(self.scheme) == port:
            return str(server[0])
        return f"{server[0]}:{port}"

    @property
    def url(self) -> URL:
        """The full URL (scheme, host, path, query string)."""
        path = self.path
        query = self.scope.get("query_string", b"")
        url = f"{self.scheme}://{self.host}{path}"
        if query:
            url += "?" + bytes(query).decode("latin-1")
        return URL(url)

    @property
    def session(self) -> dict[str, Any]:
        """The signed-cookie session (H4); ``RuntimeError`` when the app has no
        ``secret_key``."""
        if "session" not in self.scope:
            raise RuntimeError("sessions are off: create the App with secret_key=...")
        session: dict[str, Any] = self.scope["session"]
        return session
