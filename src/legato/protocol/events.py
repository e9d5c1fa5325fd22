"""What the protocol engine reports to its user, one class per event.

Data messages arrive whole (fragments reassembled, inflated, UTF-8 checked). Control
frames are reported too, but the engine already did what the RFC requires (pong sent,
close echoed), so a user may ignore them. Exactly one of ``CloseReceived``,
``ConnectionFailed`` and ``ConnectionLost`` ends every connection's event stream.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "TextMessage",
    "BytesMessage",
    "Ping",
    "Pong",
    "CloseReceived",
    "ConnectionFailed",
    "ConnectionLost",
    "Event",
]


@dataclass(slots=True)
class TextMessage:
    """A complete text message (opcode 0x1), already validated as UTF-8."""

    data: str


@dataclass(slots=True)
class BytesMessage:
    """A complete binary message (opcode 0x2)."""

    data: bytes


@dataclass(slots=True)
class Ping:
    """A Ping frame; the engine has already queued the Pong (RFC 6455 §5.5.2)."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """A Pong frame; solicited or not, it is only information (§5.5.3)."""

    payload: bytes


@dataclass(slots=True)
class CloseReceived:
    """The peer's Close frame; 1005 when it carried no code. Nothing more will arrive."""

    code: int
    reason: str


@dataclass(slots=True)
class ConnectionFailed:
    """We failed the connection (RFC 6455 §7.1.7) because the peer broke the protocol.

    ``code`` is what we sent in our Close frame (1002, 1007, 1009…); ``reason`` is our
    short description, never text taken from the peer.
    """

    code: int
    reason: str


@dataclass(slots=True)
class ConnectionLost:
    """The transport ended without a closing handshake (reported as 1006, §7.1.5)."""

    code: int = 1006


Event = (
    TextMessage | BytesMessage | Ping | Pong | CloseReceived | ConnectionFailed | ConnectionLost
)
