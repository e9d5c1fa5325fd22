"""Every exception legato raises, in one tree.

The tree separates *our* misuse (a bug in the calling code: fix the code) from the
*peer's* misbehaviour (bad bytes from the network: answer with a close code or an HTTP
status and carry on). Each peer error knows the answer it calls for: ``close_code`` for
WebSocket frames, ``status_code`` for the opening handshake.

::

    LegatoError
    ├── LocalProtocolError          our misuse of the protocol engine (a bug, not input)
    │                               also a RuntimeError, e.g. send() after close()
    ├── RemoteProtocolError         the peer broke RFC 6455/7692; .close_code says how to answer
    │   ├── FrameError              1002 framing: mask, opcode, RSV bits, control frames,
    │   │                                fragmentation, bad close payload
    │   ├── InvalidUTF8             1007 text or close reason that is not UTF-8
    │   ├── MessageTooBig           1009 a frame or message over the configured limit
    │   └── CompressionError        1007 permessage-deflate data that does not inflate
    └── InvalidHandshake            the opening handshake failed; .status_code for a server
        ├── HandshakeRejected       server side: the request is not an acceptable upgrade
        │   ├── InvalidUpgrade      400 (or 405/426): method, version, headers, key
        │   └── OriginRejected      403 the Origin hook said no
        ├── InvalidResponse         client side: the server's answer is not a valid 101
        │   └── InvalidStatus       client side: the server answered with a non-101 status
        └── NegotiationError        client side: the server chose extensions/subprotocols
                                    that were never offered

    Framework (what handlers raise and catch):

    HTTPError                       raise to answer with .status_code (and .detail)
    ├── BadRequest 400, Unauthorized 401, Forbidden 403, NotFound 404,
    │   MethodNotAllowed 405, PayloadTooLarge 413, UnprocessableEntity 422,
    │   TooManyRequests 429, InternalServerError 500, ServiceUnavailable 503
    WebSocketDisconnect             the connection ended; .code and .reason (alias
    │                               WebSocketClientClosed)
    └── WebSocketDenied             TestClient: the handshake was refused; .status_code
    InvalidMessage                  a message is not the JSON/model expected (1007);
                                    also a ValueError
    HistoryGap                      hub: a resume's since= reaches further back than the
                                    kept history (subscribe/history(..., on_gap="raise"));
                                    .gap
    HubUnavailable                  hub: the broker (Redis, NATS) cannot be reached; the
    │                               message did not reach other processes;
    │                               .delivered_locally (also legato.hub.HubUnavailable)
    ├── PublishOutcomeUnknown       the broker got a publish and went silent: it may still
    │                               arrive everywhere, once; not delivered locally
    └── SubscribeUnavailable        a since= subscribe could not read the history; also an
                                    HTTPError 503 (denied, or closed with 1013)

Peer input never escapes the protocol engine as an exception: the engine catches its own
``RemoteProtocolError``, fails the connection with ``close_code`` and reports a close
event. ``InvalidHandshake`` is raised by the sans-I/O handshake helpers, which the server
turns into an HTTP response and a client into a failed connection.
"""

from __future__ import annotations

from typing import Protocol

from .status import STATUS_PHRASES

__all__ = [
    "LegatoError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameError",
    "InvalidUTF8",
    "MessageTooBig",
    "CompressionError",
    "InvalidHandshake",
    "HandshakeRejected",
    "InvalidUpgrade",
    "OriginRejected",
    "InvalidResponse",
    "InvalidStatus",
    "NegotiationError",
    "HTTPError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "UnprocessableEntity",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "WebSocketDisconnect",
    "WebSocketClientClosed",
    "WebSocketDenied",
    "InvalidMessage",
    "HistoryGap",
    "HubUnavailable",
    "PublishOutcomeUnknown",
    "SubscribeUnavailable",
]


class LegatoError(Exception):
    """Base class of every legato exception."""


class LocalProtocolError(LegatoError, RuntimeError):
    """The calling code used the protocol engine in a way the protocol forbids."""


class RemoteProtocolError(LegatoError):
    """The peer sent something RFC 6455/7692 forbids; ``close_code`` is the answer."""

    close_code: int = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        if close_code is not None:
            self.close_code = close_code

    @property
    def reason(self) -> str:
        """Short text safe to put in a close frame (never echoes peer data)."""
        return str(self.args[0]) if self.args else ""


class FrameError(RemoteProtocolError):
    """RFC 6455 §7.4.1 1002: a frame that breaks the framing rules."""

    close_code = 1002


class InvalidUTF8(RemoteProtocolError):
    """RFC 6455 §8.1 1007: text data that is not valid UTF-8."""

    close_code = 1007


class MessageTooBig(RemoteProtocolError):
    """RFC 6455 §7.4.1 1009: a frame or message larger than the configured limit."""

    close_code = 1009


class CompressionError(RemoteProtocolError):
    """RFC 7692 §6.2: compressed data that cannot be inflated (answered with 1007)."""

    close_code = 1007


class InvalidHandshake(LegatoError):
    """The opening handshake (RFC 6455 §4) failed."""

    status_code: int = 400

    def __init__(
        self,
        reason: str,
        status_code: int | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        if status_code is not None:
            self.status_code = status_code
        #: Extra response headers the answer must carry (e.g. Sec-WebSocket-Version on 426).
        self.headers: list[tuple[str, str]] = headers or []

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else ""


class HandshakeRejected(InvalidHandshake):
    """Server side: the request cannot be upgraded; answer with ``status_code``."""


class InvalidUpgrade(HandshakeRejected):
    """RFC 6455 §4.2.1: a required part of the upgrade request is missing or wrong."""


class OriginRejected(HandshakeRejected):
    """RFC 6455 §10.2: the Origin is not allowed (cross-site WebSocket hijacking)."""

    status_code = 403


class InvalidResponse(InvalidHandshake):
    """Client side, RFC 6455 §4.1: the server's response is not a valid upgrade."""


class InvalidStatus(InvalidResponse):
    """Client side: the server answered with a status other than 101."""

    def __init__(self, status_code: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        super().__init__(f"server rejected the WebSocket upgrade with HTTP {status_code}",
                         status_code, headers)
        self.body = body


class NegotiationError(InvalidResponse):
    """Client side: the server accepted a subprotocol or extension that was not offered."""


# ----------------------------------------------------------------------------- framework


class HTTPError(LegatoError):
    """Raise in a handler, hook or provider to answer with ``status_code``.

    Before a WebSocket is accepted it denies the handshake with that status (R6).
    ``detail`` is sent as the response body (text, or JSON for a dict/list).
    """

    status_code: int = 500

    def __init__(self, status_code: int | None = None, detail: object = None,
                 headers: dict[str, str] | None = None) -> None:
        if status_code is not None:
            self.status_code = int(status_code)
        if detail is None:
            detail = STATUS_PHRASES.get(self.status_code, "Error")
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{self.status_code}: {detail}")


class _FixedStatus(HTTPError):
    """An HTTPError whose status is fixed by its class: ``NotFound(detail)``."""

    def __init__(self, detail: object = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(None, detail, headers)


class BadRequest(_FixedStatus):
    """400: the request is malformed."""

    status_code = 400


class Unauthorized(_FixedStatus):
    """401: authentication is required."""

    status_code = 401


class Forbidden(_FixedStatus):
    """403: the client may not do this."""

    status_code = 403


class NotFound(_FixedStatus):
    """404: nothing lives at this path."""

    status_code = 404


class MethodNotAllowed(_FixedStatus):
    """405: the path exists, the method does not."""

    status_code = 405


class PayloadTooLarge(_FixedStatus):
    """413: the body is over the limit."""

    status_code = 413


class UnprocessableEntity(_FixedStatus):
    """422: the body does not validate."""

    status_code = 422


class TooManyRequests(_FixedStatus):
    """429: slow down."""

    status_code = 429


class InternalServerError(_FixedStatus):
    """500: a bug on our side."""

    status_code = 500


class ServiceUnavailable(_FixedStatus):
    """503: try again later."""

    status_code = 503



class WebSocketDisconnect(LegatoError):
    """The WebSocket ended: the peer closed (``code``, ``reason``) or the connection dropped
    (1006). Raised by ``receive*()`` and by ``send*()`` once the peer has gone (W8, W16)."""

    def __init__(self, code: int = 1000, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed with code {self.code}" + (f": {self.reason}"
                                                             if self.reason else "")


#: Tremolo's name for the same thing (seed 000).
WebSocketClientClosed = WebSocketDisconnect


class WebSocketDenied(WebSocketDisconnect):
    """A client-side view: the server refused the handshake with ``status_code``."""

    def __init__(self, status_code: int, body: bytes = b"",
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(1006, f"handshake denied with HTTP {status_code}")
        self.status_code = status_code
        self.body = body
        self.headers = headers or []


class InvalidMessage(LegatoError, ValueError):
    """A received message is not the JSON or typed value the handler asked for.

    Unless the handler catches it, the connection closes with ``close_code`` 1007 and
    ``str(exc)`` (cut to fit a close frame) as the reason (W13, W14).
    """

    close_code = 1007

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None,
                 close_code: int | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []
        if close_code is not None:
            self.close_code = close_code


class _Gap(Protocol):
    """What HistoryGap needs of ``legato.hub.Gap`` (the hub, above this module, makes
    it: the exceptions import nothing of legato's)."""

    @property
    def topic(self) -> str: ...
    @property
    def since(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def first_kept(self) -> str | None: ...


class HistoryGap(LegatoError):
    """A client resumed with ``since=`` and the topic's kept history cannot give it all
    it missed (P5): raised by ``hub.subscribe(..., on_gap="raise")`` before anything is
    delivered, so the handler can tell the client (or resubscribe from ``since="0"``).

    ``gap`` says what is known (``legato.hub.Gap``: ``topic``, ``since``, ``reason``
    "trimmed", "lost" or "future", ``first_kept``). The connection is not subscribed.
    """

    def __init__(self, gap: _Gap) -> None:
        super().__init__(f"history of {gap.topic!r} does not reach back to since="
                         f"{gap.since!r} ({gap.reason}): messages may be missing")
        self.gap = gap


class HubUnavailable(LegatoError):
    """The hub's broker cannot be reached: the message did not reach other processes.

    ``delivered_locally`` is True when the hub still delivered it to this process's own
    subscribers (it does, from ``Hub.publish``: local delivery goes on during an outage).
    Here, at the bottom of the tree, so that every layer can name it (the endpoints
    close with 1013 when one escapes a handler); ``legato.hub`` exports it too.
    """

    def __init__(self, message: str, *, delivered_locally: bool = False) -> None:
        LegatoError.__init__(self, message)  # not super(): SubscribeUnavailable's MRO
        self.delivered_locally = delivered_locally


class PublishOutcomeUnknown(HubUnavailable):
    """The publish reached the broker but no answer came back (it hung, or the
    connection broke after the command was written): it may have been published, and may
    still reach every process (once, under one id) when the broker resumes. It was
    **not** delivered locally (``delivered_locally`` is False), so it is never delivered
    twice. A caller that must not lose it can publish again; the subscribers may then
    get it twice, under two ids (``publish(..., once=...)`` of the channel layer dedupes).
    """


class SubscribeUnavailable(HubUnavailable, HTTPError):
    """``subscribe(..., since=)`` could not read the history to resume from: the broker
    is unreachable. Nothing was subscribed or left behind. Also an ``HTTPError`` 503, so
    a handler that does not catch it denies the handshake with 503 when it had not
    accepted yet (``subscribe`` reads the history before accepting), or closes the
    connection with 1013 (try again later) and no traceback; the client tries again.
    """

    status_code = 503

    def __init__(self, message: str) -> None:
        HubUnavailable.__init__(self, message)
        self.detail = "hub unavailable: try again later"
        self.headers: dict[str, str] = {"Retry-After": "1"}
