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

Peer input never escapes the protocol engine as an exception: the engine catches its own
``RemoteProtocolError``, fails the connection with ``close_code`` and reports a close
event. ``InvalidHandshake`` is raised by the sans-I/O handshake helpers, which the server
turns into an HTTP response and a client into a failed connection.
"""

from __future__ import annotations

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
