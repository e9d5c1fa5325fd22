"""Close codes and the Close frame payload (RFC 6455 §5.5.1, §7.4).

Two different questions live here, and they have different answers:

* may the *peer* send this code? (:func:`parse_close`) — RFC 6455 §7.4.1/§7.4.2 and the
  IANA registry: 1000-1003 and 1007-1014 are defined for the wire, 3000-4999 are for
  libraries and applications; 1004 is reserved, 1005/1006/1015 are only for reporting
  and "MUST NOT be set as a status code in a Close control frame", anything else below
  3000 is unassigned, and 5000+ is out of range. A bad code fails the connection with 1002.
* may *we* send this code? (:func:`check_send_code`) — the same set; a bad code is a
  programming error and raises ``ValueError``.
"""

from __future__ import annotations

import enum
import struct

from ..exceptions import FrameError, InvalidUTF8

__all__ = [
    "CloseCode",
    "NO_STATUS_RCVD",
    "ABNORMAL_CLOSURE",
    "is_wire_code",
    "check_send_code",
    "parse_close",
    "serialize_close",
    "MAX_REASON_BYTES",
]


class CloseCode(enum.IntEnum):
    """Registered close codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_FRAME_PAYLOAD_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


#: Reported when a Close frame carried no status code (never sent on the wire).
NO_STATUS_RCVD = 1005
#: Reported when the TCP connection ended without a Close frame (never sent on the wire).
ABNORMAL_CLOSURE = 1006

#: A control frame payload is at most 125 bytes (§5.5) and the code takes 2 of them.
MAX_REASON_BYTES = 123

_pack_code = struct.Struct("!H").pack


def is_wire_code(code: int) -> bool:
    """True when ``code`` may appear in a Close frame (§7.4.1, §7.4.2)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def check_send_code(code: int, reason: str = "") -> bytes:
    """Validate a close code and reason we are about to send; return the encoded reason.

    Raises ``ValueError`` for a code that may not go on the wire or a reason longer than
    123 bytes once encoded, because both are bugs in the caller, not peer behaviour.
    """
    if not is_wire_code(code):
        raise ValueError(
            f"close code {code} may not be sent (RFC 6455 §7.4: use 1000-1003, "
            "1007-1014 or 3000-4999)"
        )
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_REASON_BYTES:
        raise ValueError(f"close reason is {len(encoded)} bytes; at most {MAX_REASON_BYTES}")
    return encoded


def parse_close(payload: bytes) -> tuple[int, str]:
    """Decode a received Close payload into ``(code, reason)``.

    An empty payload means "no status" and is reported as 1005. Raises ``FrameError``
    (1002) for a 1-byte payload or a code not allowed on the wire, and ``InvalidUTF8``
    (1007) for a reason that is not UTF-8 (§5.5.1).
    """
    n = len(payload)
    if n == 0:
        return NO_STATUS_RCVD, ""
    if n == 1:
        raise FrameError("close frame payload of 1 byte")
    code = (payload[0] << 8) | payload[1]
    if not is_wire_code(code):
        raise FrameError("invalid close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8("close reason is not valid UTF-8") from None
    return code, reason


def serialize_close(code: int, reason: bytes = b"") -> bytes:
    """Encode a Close payload; 1005 means "no status" and yields an empty payload."""
    if code == NO_STATUS_RCVD:
        return b""
    return _pack_code(code) + reason
