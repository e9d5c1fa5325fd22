"""legato's sans-I/O WebSocket protocol core (RFC 6455 + RFC 7692).

Bytes in, events out; calls in, bytes out. Nothing here performs I/O, reads a clock or
imports asyncio, so the built-in server, the ASGI adapter, the test client and the
fuzzers all share it. Entry points:

* :class:`ServerHandshake` / :class:`ClientHandshake`: the opening handshake (§4).
* :class:`Connection`: framing, messages, control frames and closing (§5-§8, RFC 7692).
* :class:`PerMessageDeflate`: compression settings and negotiation.
"""

from .close import CloseCode, check_send_code, is_wire_code
from .connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role, State
from .deflate import DeflateCodec, DeflateParams, PerMessageDeflate
from .events import (
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    ConnectionLost,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from .frames import Opcode, encode_frame, encode_server_frame
from .handshake import (
    Accepted,
    ClientHandshake,
    ClientResult,
    ServerHandshake,
    UpgradeRequest,
    accept_key,
    is_upgrade_request,
)
from .headers import Headers
from .masking import SPEEDUPS, apply_mask

__all__ = [
    "Accepted", "BytesMessage", "ClientHandshake", "ClientResult", "CloseCode",
    "CloseReceived", "Connection", "ConnectionFailed", "ConnectionLost",
    "DEFAULT_MAX_MESSAGE_SIZE", "DeflateCodec", "DeflateParams", "Event", "Headers",
    "Opcode", "PerMessageDeflate", "Ping", "Pong", "Role", "SPEEDUPS", "ServerHandshake",
    "State", "TextMessage", "UpgradeRequest", "accept_key", "apply_mask",
    "check_send_code", "encode_frame", "encode_server_frame", "is_upgrade_request",
    "is_wire_code",
]
