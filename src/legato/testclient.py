"""``legato.TestClient``: test an ASGI app (a legato App or any other) synchronously,
through legato's own server and protocol core, without opening a socket.

Each request or WebSocket is a new connection to the built-in server
(``HttpProtocol``, ``WebSocketSession``, the configured limits) over an in-memory
transport; the client side writes real HTTP/1.1 bytes, parses responses with httptools,
and speaks WebSocket with the sans-I/O core in the client role (masking,
permessage-deflate, the closing handshake). What passes here is what production runs.

The server runs on an event loop in a background thread, started on first use and
stopped by ``close()`` (or leaving ``with``), or once the client and every WebSocket
session it opened are gone: ``TestClient(app).get("/")`` and
``with TestClient(app).websocket_connect("/ws") as ws:`` work without keeping the client.
``with TestClient(app) as client:`` also runs the ASGI lifespan (startup on entry,
shutdown on exit); without ``with`` it is not run, as in Starlette. Nothing waits
forever: each request, handshake and receive gives up after ``timeout`` seconds with
a ``TimeoutError`` that says what it was waiting for.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .protocol import ClientHandshake, Headers, PerMessageDeflate
from .server.config import ServerConfig
from .server.state import ASGIApp
from .testing.bodies import Body, RequestContent, RequestData, RequestFiles, encode_body
from .testing.cookies import CookieJar
from .testing.http import exchange
from .testing.requests import (
    PreparedRequest,
    QueryParams,
    RequestHeaders,
    merge_headers,
    merge_url,
    redirect_request,
)
from .testing.responses import TestResponse
from .testing.runner import Runner, warn_in_test
from .testing.websocket import WebSocketTestSession

__all__ = ["TestClient", "TestResponse", "WebSocketTestSession"]

#: Redirects followed before giving up, as browsers and httpx do.
MAX_REDIRECTS = 20
_DEFAULT_HEADERS = {"user-agent": "testclient", "accept": "*/*",
                    "accept-encoding": "gzip, deflate"}
# What a browser offers: "permessage-deflate; client_max_window_bits".
_BROWSER_DEFLATE = PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=None)


class TestClient:
    """A synchronous client for one ASGI app, for tests.

    * ``base_url``: where relative URLs point; its host is the ``Host`` header and the
      cookie domain, an ``https`` scheme makes the scope's scheme https/wss.
    * ``raise_server_exceptions``: re-raise an exception that escapes the app in the
      test (from the request, or the WebSocket's next receive/send or exit). False
      shows what a client would see: the 500 page, the 1011 close.
    * ``root_path``: the ASGI ``root_path`` (the app is mounted below a prefix).
    * ``headers``/``cookies``: sent with every request; ``cookies`` also starts the jar
      that keeps what responses set.
    * ``timeout``: seconds any response, handshake or receive may take.
    * ``config``: the server settings (limits, permessage-deflate, lifespan mode...).
    """

    __test__ = False  # pytest: not a test class

    def __init__(self, app: ASGIApp, base_url: str = "http://testserver",
                 raise_server_exceptions: bool = True, root_path: str = "",
                 headers: Mapping[str, str] | None = None,
                 cookies: Mapping[str, str] | None = None, timeout: float = 5.0,
                 config: ServerConfig | None = None) -> None:
        self.app = app
        self.base_url = base_url
        self.raise_server_exceptions = raise_server_exceptions
        self.timeout = timeout
        config = config or ServerConfig()
        self.config = replace(config, root_path=root_path) if root_path else config
        #: Sent with every request (the request's own headers override them by name).
        self.headers: dict[str, str] = dict(headers or {})
        self._cookies = CookieJar(urlsplit(base_url).hostname or "testserver")
        self.cookies = cookies or {}
        self._runner: Runner | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def cookies(self) -> CookieJar:
        """The jar: cookies set by responses (and by the test), sent where they apply."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Mapping[str, str]) -> None:
        if cookies is not self._cookies:
            self._cookies.clear()
            for name, value in cookies.items():
                self._cookies.set(name, value)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> TestClient:
        runner = self._start()
        try:
            runner.startup()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        failure = self._stop()
        if failure is not None and exc_type is None and self.raise_server_exceptions:
            raise failure

    def close(self) -> None:
        """Stop the server: open WebSockets get 1001, app calls still running are
        cancelled, lifespan shutdown runs if startup did. The next request starts anew."""
        failure = self._stop()
        if failure is not None and self.raise_server_exceptions:
            raise failure

    def _start(self) -> Runner:
        if self._runner is None:
            runner = Runner(self.app, self.config, timeout=self.timeout,
                            raise_app_errors=self.raise_server_exceptions)
            # A client never closed releases its server when it is collected; the
            # server stops then, or when the last WebSocket session it opened ends.
            self._finalizer = runner.hold(self)
            self._runner = runner
        return self._runner

    def _stop(self) -> BaseException | None:
        runner, self._runner = self._runner, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return runner.stop() if runner is not None else None

    # ----------------------------------------------------------------------- HTTP

    def request(self, method: str, url: str, *, params: QueryParams | None = None,
                headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
                content: RequestContent | None = None,
                data: RequestData | str | bytes | None = None, json: Any = None,
                files: RequestFiles | None = None,
                follow_redirects: bool = False) -> TestResponse:
        """Send one request and return the response.

        Body: ``content`` (bytes/str, or an iterable of bytes sent chunked), ``data``
        (a form, URL-encoded; multipart with ``files``), ``files`` (name → content or
        (filename, content[, content_type[, headers]])), or ``json``. Raises
        ``TimeoutError`` when no complete response came within ``timeout``,
        ``ConnectionError`` when the server closed the connection mid-response, and the
        app's own exception with ``raise_server_exceptions``.
        """
        method = method.upper()
        user_headers = merge_headers(self.headers, headers)
        content_type = next((v for n, v in user_headers if n.lower() == "content-type"), None)
        body = encode_body(content=content, data=data, json=json, files=files,
                           content_type=content_type)
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = Body([("content-length", "0")])  # RFC 9110 §8.6: say there is none
        fields = merge_headers(_DEFAULT_HEADERS, self.headers,
                               body.headers if body is not None else None, headers)
        request = PreparedRequest(method, merge_url(self.base_url, url, params), fields, body,
                                  dict(cookies or {}))
        history: list[TestResponse] = []
        while True:
            response = self._send(request)
            if not (follow_redirects and response.is_redirect):
                response.history = history
                return response
            if len(history) >= MAX_REDIRECTS:
                raise RuntimeError(f"more than {MAX_REDIRECTS} redirects from {url}")
            history.append(response)
            request = redirect_request(request, response.status_code,
                                       response.headers["location"])

    def _send(self, request: PreparedRequest) -> TestResponse:
        runner = self._start()
        outcome = runner.run(exchange(
            runner.server, request.to_bytes(self._cookies), head_only=request.method == "HEAD",
            address=request.address, tls=request.tls, timeout=self.timeout,
            what=request.describe()))
        if outcome.cancelled:
            warn_in_test(f"the app's call for {request.describe()} did not return within "
                         f"{self.timeout:g} s after its response; it was cancelled")
        if self.raise_server_exceptions and outcome.call.error is not None:
            raise outcome.call.error
        if outcome.error is not None:
            raise outcome.error
        raw = outcome.response
        assert raw is not None
        received = self._cookies.extract(Headers(raw.headers).get_all("set-cookie"),
                                         request.url)
        return TestResponse(raw, url=request.full_url, method=request.method, cookies=received)

    def get(self, url: str, *, params: QueryParams | None = None,
            headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
            follow_redirects: bool = False) -> TestResponse:
        return self.request("GET", url, params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def head(self, url: str, *, params: QueryParams | None = None,
             headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
             follow_redirects: bool = False) -> TestResponse:
        return self.request("HEAD", url, params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def options(self, url: str, *, params: QueryParams | None = None,
                headers: RequestHeaders | None = None,
                cookies: Mapping[str, str] | None = None,
                follow_redirects: bool = False) -> TestResponse:
        return self.request("OPTIONS", url, params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def delete(self, url: str, *, params: QueryParams | None = None,
               headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
               follow_redirects: bool = False) -> TestResponse:
        return self.request("DELETE", url, params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def post(self, url: str, *, content: RequestContent | None = None,
             data: RequestData | str | bytes | None = None, json: Any = None,
             files: RequestFiles | None = None, params: QueryParams | None = None,
             headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
             follow_redirects: bool = False) -> TestResponse:
        return self.request("POST", url, content=content, data=data, json=json, files=files,
                            params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def put(self, url: str, *, content: RequestContent | None = None,
            data: RequestData | str | bytes | None = None, json: Any = None,
            files: RequestFiles | None = None, params: QueryParams | None = None,
            headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
            follow_redirects: bool = False) -> TestResponse:
        return self.request("PUT", url, content=content, data=data, json=json, files=files,
                            params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    def patch(self, url: str, *, content: RequestContent | None = None,
              data: RequestData | str | bytes | None = None, json: Any = None,
              files: RequestFiles | None = None, params: QueryParams | None = None,
              headers: RequestHeaders | None = None, cookies: Mapping[str, str] | None = None,
              follow_redirects: bool = False) -> TestResponse:
        return self.request("PATCH", url, content=content, data=data, json=json, files=files,
                            params=params, headers=headers, cookies=cookies,
                            follow_redirects=follow_redirects)

    # ------------------------------------------------------------------ WebSocket

    def websocket_connect(self, url: str, subprotocols: Sequence[str] | None = None,
                          headers: RequestHeaders | None = None,
                          cookies: Mapping[str, str] | None = None, *,
                          deflate: bool | PerMessageDeflate = True) -> WebSocketTestSession:
        """A WebSocket session to open with ``with``: ``WebSocketDenied`` on entry when
        the server answers anything but 101.

        ``deflate``: offer permessage-deflate as a browser does (True), not at all
        (False), or with the given settings.
        """
        parts = merge_url(self.base_url, url)
        parts = parts._replace(scheme={"http": "ws", "https": "wss"}.get(parts.scheme,
                                                                          parts.scheme))
        request = PreparedRequest("GET", parts, merge_headers(
            {"user-agent": "testclient"}, self.headers, headers), cookies=dict(cookies or {}))
        fields = request.head(self._cookies)
        host = next(v for n, v in fields if n.lower() == "host")
        offer = _BROWSER_DEFLATE if deflate is True else (deflate or None)
        handshake = ClientHandshake(
            host, request.target, subprotocols=list(subprotocols or ()), deflate=offer,
            headers=[(n, v) for n, v in fields if n.lower() != "host"],
            max_message_size=None)  # the client takes what the server sends, as a browser
        return WebSocketTestSession(
            self._start(), handshake, url=parts, address=request.address, jar=self._cookies,
            timeout=self.timeout, raise_server_exceptions=self.raise_server_exceptions)
