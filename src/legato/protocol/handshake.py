"""The opening handshake (RFC 6455 §4), both roles, without I/O.

Server side: :meth:`ServerHandshake.check` validates a parsed upgrade request and raises
``HandshakeRejected`` carrying the HTTP status to answer with; :meth:`ServerHandshake.accept`
builds the 101 response, choosing the subprotocol and negotiating permessage-deflate.
Checking and accepting are separate steps because, between them, the application routes
the request, runs its hooks and decides (``ws.accept()`` / ``ws.reject()``).

Client side: :class:`ClientHandshake` builds the request and validates the response.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Collection, Sequence

from ..exceptions import (
    InvalidResponse,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    OriginRejected,
)
from .connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role
from .deflate import EXTENSION_NAME, DeflateCodec, DeflateParams, PerMessageDeflate
from .headers import ExtensionParams, Headers, parse_extensions, parse_token_list
from .http import serialize_request, serialize_response

__all__ = [
    "GUID",
    "accept_key",
    "UpgradeRequest",
    "Accepted",
    "ServerHandshake",
    "ClientHandshake",
    "ClientResult",
    "is_upgrade_request",
]

#: RFC 6455 §1.3.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_VERSION = "13"
_DEFAULT_DEFLATE = PerMessageDeflate()  # frozen, so one shared default is safe
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==", re.ASCII)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 step 5.4)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens_lower(headers: Headers, name: str) -> list[str]:
    # Upgrade values may carry "/version" (RFC 9110 §7.8), so split by hand, not as tokens.
    return [t.strip(" \t").lower() for v in headers.get_all(name) for t in v.split(",")]


def is_upgrade_request(headers: Headers) -> bool:
    """True when a request asks for a WebSocket upgrade (``Upgrade: websocket``)."""
    return "websocket" in _tokens_lower(headers, "upgrade")


@dataclass
class UpgradeRequest:
    """What a valid upgrade request offers; produced by :meth:`ServerHandshake.check`."""

    key: str
    subprotocols: list[str]
    extensions: list[tuple[str, ExtensionParams]]
    origin: str | None
    headers: Headers


@dataclass
class Accepted:
    """The server's decision to upgrade: response headers and the negotiated settings."""

    headers: list[tuple[str, str]]
    subprotocol: str | None
    deflate: DeflateParams | None
    deflate_config: PerMessageDeflate | None = None

    def response(self) -> bytes:
        """The complete ``101 Switching Protocols`` response head."""
        return serialize_response(101, self.headers)

    def connection(self, *, max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
                   max_frame_size: int | None = None,
                   hold_fail_close: bool = False) -> Connection:
        """A server-role protocol engine configured with what was negotiated
        (``hold_fail_close``: see :class:`Connection`)."""
        codec = None
        if self.deflate is not None:
            codec = DeflateCodec(self.deflate, is_client=False, config=self.deflate_config)
        return Connection(Role.SERVER, max_message_size=max_message_size,
                          max_frame_size=max_frame_size, deflate=codec,
                          hold_fail_close=hold_fail_close)


@dataclass
class ServerHandshake:
    """Server-side handshake settings, shared by all connections of a route or app.

    * ``subprotocols``: the ones we speak, in order of preference.
    * ``deflate``: permessage-deflate settings, None to never negotiate it.
    * ``allowed_origins``: when given, requests whose Origin is not listed are refused with
      403 (RFC 6455 §10.2, cross-site WebSocket hijacking). Requests without Origin
      (non-browser clients) pass. ``origin_check`` is the general hook: a callable that
      gets the Origin (or None) and returns whether to allow it.
    """

    subprotocols: Sequence[str] = ()
    deflate: PerMessageDeflate | None = field(default_factory=PerMessageDeflate)
    allowed_origins: Collection[str] | None = None
    origin_check: Callable[[str | None], bool] | None = None

    def check(self, method: str, http_version: str, headers: Headers, *,
              has_body: bool = False) -> UpgradeRequest:
        """Validate an upgrade request (RFC 6455 §4.2.1); raise ``HandshakeRejected``."""
        if method != "GET":
            raise InvalidUpgrade("WebSocket upgrade requires GET", 405, [("Allow", "GET")])
        if http_version != "1.1":
            raise InvalidUpgrade("WebSocket upgrade requires HTTP/1.1")
        if len(headers.get_all("Host")) != 1:
            raise InvalidUpgrade("exactly one Host header is required")
        if "websocket" not in _tokens_lower(headers, "Upgrade"):
            raise InvalidUpgrade("missing 'Upgrade: websocket'")
        try:
            connection = [t.lower() for t in parse_token_list(headers.get_all("Connection"))]
        except ValueError:
            raise InvalidUpgrade("malformed Connection header") from None
        if "upgrade" not in connection:
            raise InvalidUpgrade("missing 'Connection: Upgrade'")
        versions = headers.get_all("Sec-WebSocket-Version")
        if [v.strip() for v in versions] != [_VERSION]:
            # §4.2.2: answer a version we do not speak with 426 and the one we do.
            raise InvalidUpgrade("unsupported Sec-WebSocket-Version", 426,
                                 [("Sec-WebSocket-Version", _VERSION)])
        key = self._check_key(headers.get_all("Sec-WebSocket-Key"))
        if has_body or _declares_body(headers):
            raise InvalidUpgrade("a WebSocket upgrade request cannot have a body")
        try:
            subprotocols = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"))
        except ValueError:
            raise InvalidUpgrade("malformed Sec-WebSocket-Protocol header") from None
        try:
            extensions = parse_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        except ValueError:
            extensions = []  # an unparseable offer is declined, not an error
        origins = headers.get_all("Origin")
        if len(origins) > 1:
            raise InvalidUpgrade("more than one Origin header")
        origin = origins[0] if origins else None
        if not self._origin_allowed(origin):
            raise OriginRejected("origin not allowed")
        return UpgradeRequest(key, subprotocols, extensions, origin, headers)

    @staticmethod
    def _check_key(values: list[str]) -> str:
        if len(values) != 1:
            raise InvalidUpgrade("exactly one Sec-WebSocket-Key header is required")
        key = values[0].strip()
        # §4.2.1 item 5: base64 of a 16-byte value, which is exactly 22 characters of
        # the base64 alphabet and "==" (what b64decode(validate=True) accepts, cheaper).
        if _KEY.fullmatch(key) is None:
            raise InvalidUpgrade("Sec-WebSocket-Key is not base64 of 16 bytes")
        return key

    def _origin_allowed(self, origin: str | None) -> bool:
        if self.origin_check is not None and not self.origin_check(origin):
            return False
        if self.allowed_origins is not None and origin is not None:
            return origin in self.allowed_origins
        return True

    def select_subprotocol(self, request: UpgradeRequest) -> str | None:
        """Our most preferred subprotocol that the client offered, or None."""
        offered = set(request.subprotocols)
        for name in self.subprotocols:
            if name in offered:
                return name
        return None

    def accept(self, request: UpgradeRequest, *, subprotocol: str | None = None,
               headers: Sequence[tuple[str, str]] = ()) -> Accepted:
        """Build the 101 response. ``subprotocol`` must be one the client offered
        (``ValueError`` otherwise: answering with anything else breaks the client)."""
        if subprotocol is not None and subprotocol not in request.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        out = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept_key(request.key))]
        if subprotocol is not None:
            out.append(("Sec-WebSocket-Protocol", subprotocol))
        params = None
        if self.deflate is not None and request.extensions:
            negotiated = self.deflate.negotiate(request.extensions)
            if negotiated is not None:
                header, params = negotiated
                out.append(("Sec-WebSocket-Extensions", header))
        for name, value in headers:
            if name.lower().startswith("sec-websocket-"):
                raise ValueError(f"{name} is set by the handshake itself")
            out.append((name, value))
        return Accepted(out, subprotocol, params, self.deflate)

    @staticmethod
    def reject(status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
               ) -> bytes:
        """A complete refusal response that also closes the connection."""
        out = [("Content-Type", "text/plain; charset=utf-8"),
               ("Content-Length", str(len(body))), ("Connection", "close"), *headers]
        return serialize_response(status, out, body)


def _declares_body(headers: Headers) -> bool:
    if "transfer-encoding" in headers:
        return True
    if "content-length" not in headers:
        return False
    return any(v.strip() != "0" for v in headers.get_all("Content-Length"))


@dataclass
class ClientResult:
    """What the server accepted: the engine to use, the subprotocol and extension."""

    subprotocol: str | None
    deflate: DeflateParams | None
    connection: Connection


class ClientHandshake:
    """Client side of the opening handshake (RFC 6455 §4.1)."""

    def __init__(
        self,
        host: str,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        deflate: PerMessageDeflate | None = _DEFAULT_DEFLATE,
        origin: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.host = host
        self.target = target
        self.subprotocols = list(subprotocols)
        self.deflate = deflate
        self.origin = origin
        self.extra_headers = list(headers)
        self.max_message_size = max_message_size
        #: §4.1: a fresh random 16-byte nonce, base64-encoded.
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")

    def request(self) -> bytes:
        """The upgrade request head to send."""
        headers = [("Host", self.host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", _VERSION)]
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if self.deflate is not None:
            headers.append(("Sec-WebSocket-Extensions", self.deflate.offer()))
        if self.origin is not None:
            headers.append(("Origin", self.origin))
        headers.extend(self.extra_headers)
        return serialize_request("GET", self.target, headers)

    def check_response(self, status_code: int, headers: Headers, body: bytes = b""
                       ) -> ClientResult:
        """Validate the server's response (§4.1); raise ``InvalidResponse`` subclasses."""
        if status_code != 101:
            raise InvalidStatus(status_code, headers.raw_items(), body)
        # §4.1: the Upgrade value must be exactly "websocket" (case-insensitive).
        if [v.strip().lower() for v in headers.get_all("Upgrade")] != ["websocket"]:
            raise InvalidResponse("response lacks 'Upgrade: websocket'")
        if "upgrade" not in _tokens_lower(headers, "Connection"):
            raise InvalidResponse("response lacks 'Connection: Upgrade'")
        if headers.get_all("Sec-WebSocket-Accept") != [accept_key(self.key)]:
            raise InvalidResponse("wrong Sec-WebSocket-Accept")
        subprotocol = self._check_subprotocol(headers.get_all("Sec-WebSocket-Protocol"))
        params = self._check_extensions(headers.get_all("Sec-WebSocket-Extensions"))
        codec = None
        if params is not None:
            codec = DeflateCodec(params, is_client=True, config=self.deflate)
        connection = Connection(Role.CLIENT, max_message_size=self.max_message_size,
                                deflate=codec)
        return ClientResult(subprotocol, params, connection)

    def _check_subprotocol(self, values: list[str]) -> str | None:
        if not values:
            return None
        if len(values) != 1 or values[0].strip() not in self.subprotocols:
            raise NegotiationError("server chose a subprotocol that was not offered")
        return values[0].strip()

    def _check_extensions(self, values: list[str]) -> DeflateParams | None:
        try:
            extensions = parse_extensions(values)
        except ValueError:
            raise NegotiationError("malformed Sec-WebSocket-Extensions in the response") \
                from None
        if not extensions:
            return None
        if self.deflate is None or len(extensions) != 1 or extensions[0][0] != EXTENSION_NAME:
            raise NegotiationError("server accepted an extension that was not offered")
        return self.deflate.accept_response(extensions[0][1])
