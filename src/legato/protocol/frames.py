"""The RFC 6455 §5.2 base framing: opcodes, frame encoding and masking keys.

Decoding lives in the connection's reader (connection.py), because checking a frame
header needs the connection's state (fragmentation, extensions, limits). Encoding is
stateless and lives here, so the hub can encode a broadcast frame once for every
subscriber (server frames are unmasked, §5.1).
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable, Iterator

from .masking import apply_mask

__all__ = ["Opcode", "encode_frame", "encode_server_frame", "new_mask",
           "FIN", "RSV1", "RSV2", "RSV3", "MASK_BIT"]

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
MASK_BIT = 0x80

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


class Opcode(enum.IntEnum):
    """RFC 6455 §5.2 opcodes; 0x3-0x7 and 0xB-0xF are reserved and fail with 1002."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

    @property
    def is_control(self) -> bool:
        return self >= 0x8


def _header(first: int, length: int, mask_bit: int) -> bytes:
    # §5.2: the minimal number of bytes MUST be used to encode the length.
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 65536:
        return _pack_16(first, mask_bit | 126, length)
    return _pack_64(first, mask_bit | 127, length)


def encode_server_frame(first: int, payload: bytes) -> bytes:
    """Encode an unmasked frame; ``first`` is the first byte (FIN, RSV and opcode bits)."""
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    return _header(first, length, 0) + payload


def _mask_keys() -> Iterator[bytes]:
    """Masking keys from the OS CSPRNG (§5.3 asks for a strong source of entropy), read
    4 KiB at a time because one ``os.urandom`` call per frame costs more than masking a
    small frame."""
    while True:
        pool = os.urandom(4096)
        for pos in range(0, 4096, 4):
            yield pool[pos:pos + 4]


#: Return a fresh random 4-byte masking key.
new_mask: Callable[[], bytes] = _mask_keys().__next__


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Encode any frame, including ones the RFC forbids (tests and fuzzers need those).

    ``mask`` is the 4-byte key for client frames; None sends the frame unmasked.
    """
    first = (FIN if fin else 0) | (RSV1 if rsv1 else 0) | (RSV2 if rsv2 else 0) \
        | (RSV3 if rsv3 else 0) | (opcode & 0x0F)
    if mask is None:
        return _header(first, len(payload), 0) + payload
    if len(mask) != 4:
        raise ValueError("a masking key is 4 bytes")
    return _header(first, len(payload), MASK_BIT) + mask + apply_mask(payload, mask)
