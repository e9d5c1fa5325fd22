"""Test helpers for driving a :class:`Connection` from the other end of the wire.

:class:`Peer` plays the remote endpoint: it builds frames the way that endpoint's role
must (RFC 6455 §5.1: a client masks, a server does not), or breaks the rules on request,
feeds them to the connection under test and decodes what the connection sends back with
:func:`parse_frames`, a decoder written here independently of the engine's reader.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from legato.protocol.connection import Connection, Role, State
from legato.protocol.events import ConnectionFailed, Event
from legato.protocol.frames import Opcode, encode_frame
from legato.protocol.masking import apply_mask_python

__all__ = [
    "MASK", "Peer", "WireFrame", "close_payload", "expect_failure", "parse_frames",
    "CONT", "TEXT", "BINARY", "CLOSE", "PING", "PONG",
]

CONT, TEXT, BINARY = Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG

#: The masking key our fake client uses; not all zeros, so unmasking is really tested.
MASK = b"\x37\xfa\x21\x3d"


@dataclass(frozen=True)
class WireFrame:
    """One frame the connection under test wrote, already unmasked."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    payload: bytes
    mask: bytes | None
    header_size: int  # bytes before the payload, masking key included

    @property
    def close_code(self) -> int | None:
        """The status code of a Close frame; None for an empty Close payload."""
        assert self.opcode == CLOSE
        if not self.payload:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> bytes:
        assert self.opcode == CLOSE
        return self.payload[2:]


def parse_frames(data: bytes) -> list[WireFrame]:
    """Decode a byte string that must hold whole frames only (RFC 6455 §5.2)."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated frame header"
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        head = pos + 2
        if length == 126:
            (length,) = struct.unpack("!H", data[head:head + 2])
            head += 2
        elif length == 127:
            (length,) = struct.unpack("!Q", data[head:head + 8])
            head += 8
        mask = None
        if second & 0x80:
            mask = data[head:head + 4]
            head += 4
        payload = data[head:head + length]
        assert len(payload) == length, "truncated frame payload"
        if mask is not None:
            payload = apply_mask_python(payload, mask)
        frames.append(WireFrame(
            fin=bool(first & 0x80), rsv1=bool(first & 0x40), rsv2=bool(first & 0x20),
            rsv3=bool(first & 0x10), opcode=first & 0x0F, payload=bytes(payload),
            mask=mask, header_size=head - pos,
        ))
        pos = head + length
    return frames


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """A Close frame body (§5.5.1): the code in network byte order, then the reason."""
    return struct.pack("!H", code) + reason


class Peer:
    """The remote end of a :class:`Connection` created with ``role``.

    A server-role connection talks to a client, so :meth:`frame` masks by default; a
    client-role connection talks to a server, so it does not.
    """

    def __init__(self, role: Role, **kwargs: object) -> None:
        self.role = role
        self.conn = Connection(role, **kwargs)  # type: ignore[arg-type]

    @property
    def must_mask(self) -> bool:
        return self.role is Role.SERVER

    def frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv1: bool = False,
        rsv2: bool = False,
        rsv3: bool = False,
        masked: bool | None = None,
        mask: bytes = MASK,
    ) -> bytes:
        """The bytes of one frame from this peer; ``masked`` overrides the role's rule."""
        if masked is None:
            masked = self.must_mask
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3,
                            mask=mask if masked else None)

    def header(self, opcode: int, length: int, *, fin: bool = True,
               rsv1: bool = False) -> bytes:
        """Only the header of a frame declaring ``length`` payload bytes, masking key
        included: limits and length rules must act on it before any payload arrives."""
        first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        mask_bit = 0x80 if self.must_mask else 0
        if length < 126:
            head = bytes((first, mask_bit | length))
        elif length < 65536:
            head = bytes((first, mask_bit | 126)) + struct.pack("!H", length)
        else:
            head = bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")
        return head + (MASK if self.must_mask else b"")

    def feed(self, data: bytes, chunk_size: int | None = None) -> list[Event]:
        """Feed ``data`` (in ``chunk_size`` pieces if given); return the new events."""
        if chunk_size is None:
            self.conn.receive_data(data)
        else:
            for i in range(0, len(data), chunk_size):
                self.conn.receive_data(data[i:i + chunk_size])
        return self.conn.events_received()

    def feed_chunks(self, chunks: Iterable[bytes]) -> list[Event]:
        for chunk in chunks:
            self.conn.receive_data(chunk)
        return self.conn.events_received()

    def send(self, opcode: int, payload: bytes = b"", **kwargs: object) -> list[Event]:
        """Build one frame (see :meth:`frame`), feed it, return the new events."""
        return self.feed(self.frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def sent(self) -> list[WireFrame]:
        """Decode and consume what the connection has queued for the wire."""
        frames = parse_frames(self.conn.data_to_send())
        for frame in frames:
            # §5.1: a client masks every frame it sends; a server masks none.
            assert (frame.mask is not None) == (self.role is Role.CLIENT), frame
        return frames


def expect_failure(peer: Peer, events: list[Event], code: int) -> list[WireFrame]:
    """Check that the connection was failed (RFC 6455 §7.1.7) with ``code``.

    The failure is the last event, the state is CLOSED, the transport is to be closed at
    once, and exactly one Close frame carrying ``code`` went out. Returns what was sent.
    """
    assert events, "no event: the connection was not failed"
    last = events[-1]
    assert isinstance(last, ConnectionFailed), events
    assert last.code == code, (last, code)
    assert sum(isinstance(event, ConnectionFailed) for event in events) == 1
    assert peer.conn.state is State.CLOSED
    assert peer.conn.close_transport() is True
    assert peer.conn.failure is not None and peer.conn.failure.close_code == code
    frames = peer.sent()
    closes = [frame for frame in frames if frame.opcode == CLOSE]
    assert len(closes) == 1, frames
    assert closes[0].close_code == code
    assert len(closes[0].payload) <= 125
    return frames
