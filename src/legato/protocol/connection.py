"""The sans-I/O WebSocket engine (RFC 6455 + RFC 7692), after the opening handshake.

Bytes in (:meth:`Connection.receive_data`), events out (:meth:`events_received`);
calls in (``send_*``), bytes out (:meth:`data_to_send`). No I/O, no clock, no asyncio:
the built-in server, the test client and the fuzzers drive the same object.

States (all transitions are in :meth:`Connection._set_state`)::

    OPEN ──send_close()────────────▶ CLOSING ──peer's Close──▶ CLOSED
      │                                 └──fail / EOF─────────▶ CLOSED
      ├──peer's Close (echoed)─────────────────────────────────▶ CLOSED
      ├──fail (Close sent) / EOF───────────────────────────────▶ CLOSED
      └──fail (Close held)──▶ FAILING ──send_fail_close() / EOF─▶ CLOSED

FAILING exists for ``hold_fail_close=True`` (the built-in server): the peer broke the
protocol, nothing more it sent is read, but the messages that arrived whole before the
bad frame are still reported before the failure, and their answers may still be sent;
the Close with the failure's code waits until the I/O layer calls
:meth:`Connection.send_fail_close` (when the app has answered, or a deadline passed).

The reader is a small state machine too: it is either between frames (parsing a
header) or inside the payload of a data frame that is arriving in pieces. A whole frame
that is already buffered takes the fast path (one slice, one unmask, one decode); a
frame arriving in pieces is unmasked, inflated and UTF-8 checked piece by piece, so a
bad byte fails the connection as soon as it arrives and a frame dribbled one byte at a
time costs memory close to its size.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from ..exceptions import (
    FrameError,
    InvalidUTF8,
    LocalProtocolError,
    MessageTooBig,
    RemoteProtocolError,
)
from .close import NO_STATUS_RCVD, check_send_code, parse_close, serialize_close
from .deflate import DeflateCodec
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
from .frames import FIN, RSV1, encode_server_frame, new_mask
from .masking import SPEEDUPS, apply_mask, mask_frame, unmask_at
from .pieces import Pieces
from .utf8 import Utf8Validator

__all__ = ["Connection", "Role", "State", "DEFAULT_MAX_MESSAGE_SIZE"]

logger = logging.getLogger("legato.protocol")

# Whole one-frame messages (nearly all of them) are read in C; everything else, and
# everything when the extension is not built, by Connection._read_frames.
_read_messages: Callable[[bytes, int, int, int, list[Any]], int] | None = None
if SPEEDUPS:
    from . import _speedups

    _speedups.register_events(TextMessage, BytesMessage)
    _read_messages = _speedups.read_messages

#: 1 MiB: large enough for any chat/dashboard message, small enough that 1,000 peers
#: each holding a maximal message in flight cost 1 GiB at worst, not unbounded memory.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_CONTROL_BIT = 0x08
_RSV23 = 0x30


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.IntEnum):
    """Connection states of RFC 6455 §4-§7 after the opening handshake."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3
    #: The peer broke the protocol (§7.1.7); our Close is held so that the answers to
    #: the messages received before the bad frame go out first (``hold_fail_close``).
    FAILING = 4


class Connection:
    """One WebSocket connection's protocol state, for either role.

    Limits (all checked from the frame header, before any payload is buffered):

    * ``max_message_size`` (bytes, default 1 MiB; None for no limit): the largest
      message after reassembly and decompression; more fails with 1009.
    * ``max_frame_size`` (bytes, default None: bounded by the message limit only): the
      largest payload of a single frame as sent on the wire; more fails with 1009.

    ``deflate`` is the codec negotiated by the handshake (None when permessage-deflate
    is off).

    ``hold_fail_close`` (default False: the Close goes out with the failure): when the
    peer breaks the protocol, enter FAILING instead of sending the Close at once, so an
    application can answer the messages that arrived before the bad frame; the I/O layer
    then calls :meth:`send_fail_close`, and must bound the wait with a deadline of its own.
    """

    __slots__ = (
        "role", "state", "max_message_size", "max_frame_size", "_max_compressed", "_deflate",
        "_client", "_events", "_out", "_buf", "_discard", "_close_transport",
        "_msg_opcode", "_msg_compressed", "_msg", "_msg_wire", "_msg_checked", "_frame_z",
        "_validator", "_frame_remaining", "_frame_fin", "_frame_mask", "_frame_offset",
        "_sending_fragmented", "_send_compressed", "_plain_send", "_hold_fail_close",
        "close_sent", "close_received", "failure",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        deflate: DeflateCodec | None = None,
        hold_fail_close: bool = False,
    ) -> None:
        self.role = role
        self.state = State.OPEN
        big = 1 << 62  # "no limit", yet small enough for zlib's Py_ssize_t max_length
        self.max_message_size = max_message_size if max_message_size is not None else big
        # None: frames are bounded only through the message limit (which, for compressed
        # frames, allows deflate's worst-case growth).
        self.max_frame_size = max_frame_size if max_frame_size is not None else big
        size = self.max_message_size
        self._max_compressed = size + (size >> 5) + (size >> 7) + (size >> 11) + 64
        self._deflate = deflate
        self._client = role is Role.CLIENT
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._buf = b""
        self._discard = False
        self._close_transport = False
        # message being received (fragmented, compressed or arriving in pieces)
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_wire = 0
        self._msg = Pieces()  # the message assembled from several frames or pieces
        self._msg_checked = 0  # how many of its bytes the UTF-8 validator has seen
        # A compressed frame arriving in pieces; made by the first one (permessage-
        # deflate only), not held by every connection.
        self._frame_z: Pieces | None = None
        self._validator: Utf8Validator | None = None
        # data frame whose payload is arriving in pieces
        self._frame_remaining = 0
        self._frame_fin = False
        self._frame_mask: bytes | None = None
        self._frame_offset = 0
        # sending
        self._sending_fragmented = False
        self._send_compressed = False
        # True while a whole message can be sent with no compression or fragment state.
        self._plain_send = deflate is None
        self._hold_fail_close = hold_fail_close
        #: (code, reason) of the Close frames sent and received; None until then.
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        #: The peer error that failed the connection, if one did.
        self.failure: RemoteProtocolError | None = None

    # ------------------------------------------------------------------ public: output

    def events_received(self) -> list[Event]:
        """Return and forget the events parsed since the last call."""
        events = self._events
        self._events = []
        return events

    def data_to_send(self) -> bytes:
        """Return and forget the bytes to write to the transport (b"" when none)."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def close_transport(self) -> bool:
        """True when the TCP connection should now be closed by this side.

        RFC 6455 §7.1.1: after the closing handshake the server closes TCP first; a client
        waits for the server to do so (its I/O layer should still time the wait out).
        After a failure (§7.1.7) or an EOF, either side closes at once.
        """
        return self._close_transport

    @property
    def close_code(self) -> int:
        """The code to report: the peer's Close, the code we failed with, or 1006 (§7.1.5)."""
        if self.close_received is not None:
            return self.close_received[0]
        if self.failure is not None:
            return self.failure.close_code
        return 1006

    # ------------------------------------------------------------------- public: input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the transport. Never raises on bad peer input.

        New bytes to send (a Pong, a Close) and a new request to close the transport only
        ever come with an event other than a data message, so a caller that got messages
        only need not look (the server's per-message path relies on this).
        """
        if self._discard or not data:
            return
        if self._buf:
            data = self._buf + data
            self._buf = b""
        elif type(data) is not bytes:
            data = bytes(data)
        pos = 0
        if _read_messages is not None and not self._frame_remaining \
                and not self._msg_opcode and not self._client:
            pos = _read_messages(data, 0, self.max_message_size, self.max_frame_size,
                                 self._events)
            if pos == len(data):
                return
        try:
            pos = self._read_frames(data, pos)
        except RemoteProtocolError as exc:
            self._fail(exc)
            return
        if pos < len(data) and not self._discard:
            self._buf = bytes(data[pos:])

    def receive_eof(self) -> None:
        """The transport reached end of file (or broke)."""
        self._buf = b""
        self._discard = True
        self._close_transport = True
        if self.state is State.FAILING:
            self._set_state(State.CLOSED)  # ConnectionFailed already ended the events
        elif self.state is not State.CLOSED:
            self._events.append(ConnectionLost())
            self._set_state(State.CLOSED)

    # ------------------------------------------------------------------ public: sending

    def send_text(self, data: str, fin: bool = True) -> None:
        """Send a text message (or its first fragment when ``fin`` is False)."""
        if fin and self._plain_send and self.state is State.OPEN:
            self._write_frame(0x81, data.encode("utf-8"))  # hot path: FIN, text, no RSV1
        else:
            self._send_data(_OP_TEXT, data.encode("utf-8"), fin)

    def send_bytes(self, data: bytes | bytearray | memoryview, fin: bool = True) -> None:
        """Send a binary message (or its first fragment when ``fin`` is False)."""
        if fin and self._plain_send and self.state is State.OPEN:
            self._write_frame(0x82, bytes(data))  # hot path: FIN, binary, no RSV1
        else:
            self._send_data(_OP_BINARY, bytes(data), fin)

    def send_prepared(self, frame: bytes) -> bytes:
        """Send a whole message already encoded by :func:`frames.encode_server_frame`;
        return the bytes to write now.

        This is how a broadcast encodes once for every subscriber: server frames are
        unmasked (RFC 6455 §5.1), so the same bytes serve every connection. Server role
        only, between messages; an uncompressed message is valid on any connection, even
        one that negotiated permessage-deflate (RFC 7692 §6: RSV1 is per message).
        Unlike the other ``send_*`` methods the bytes are returned, not queued (anything
        queued before comes first), because this is the per-subscriber hot path.
        """
        if self._client:
            raise LocalProtocolError("clients must mask: prepared frames are server-only")
        if self.state is not State.OPEN:
            self._check_can_send()
        if self._sending_fragmented:
            raise LocalProtocolError("finish the fragmented message first (fin=True)")
        if self._out:
            self._out.append(frame)
            return self.data_to_send()
        return frame

    @property
    def compresses(self) -> bool:
        """True when messages sent on this connection may be compressed."""
        return self._deflate is not None

    def send_continuation(self, data: bytes | bytearray | memoryview, fin: bool = True) -> None:
        """Send the next fragment of a message started with ``fin=False``."""
        self._send_data(_OP_CONT, bytes(data), fin)

    def send_ping(self, payload: bytes = b"") -> None:
        """Send a Ping; its payload (≤ 125 bytes, §5.5) comes back in the Pong."""
        self._send_control(_OP_PING, payload)

    def send_pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited Pong (a unidirectional heartbeat, §5.5.3)."""
        self._send_control(_OP_PONG, payload)

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2).

        ``code=1005`` sends a Close without a status code (an empty payload). Any other
        code not allowed on the wire raises ``ValueError``; a second Close raises
        ``LocalProtocolError``, and so does a Close while FAILING (the failure's Close is
        the one to send: :meth:`send_fail_close`).
        """
        if self.close_sent is not None or self.state is State.CLOSED:
            raise LocalProtocolError("the connection is already closing or closed")
        if self.state is State.FAILING:
            raise LocalProtocolError("the connection failed: send_fail_close() sends its Close")
        if code == NO_STATUS_RCVD:
            payload = b""
        else:
            payload = serialize_close(code, check_send_code(code, reason))
        self._write_close(code, reason, payload)
        if self.close_received is not None:
            self._finish_closing()
        else:
            self._set_state(State.CLOSING)

    def send_fail_close(self) -> None:
        """Send the Close held since the failure (FAILING → CLOSED); then close TCP.

        RFC 6455 §7.1.7: having failed the connection, the endpoint SHOULD send a Close
        with an appropriate status code (the failure's: 1002, 1007, 1009…) before
        closing the connection. Raises ``LocalProtocolError`` when no Close is held.
        """
        if self.state is not State.FAILING:
            raise LocalProtocolError(f"no failure holds its Close in state {self.state.name}")
        self._write_fail_close()
        self._close_transport = True
        self._set_state(State.CLOSED)

    # ------------------------------------------------------------------- sending (impl)

    def _check_can_send(self) -> None:
        """Data may go out while OPEN and, to answer what came before the bad frame,
        while FAILING; anything else is our misuse."""
        if self.state is not State.OPEN and self.state is not State.FAILING:
            raise LocalProtocolError(f"cannot send data in state {self.state.name}")

    def _send_data(self, opcode: int, payload: bytes, fin: bool) -> None:
        if self.state is not State.OPEN:
            self._check_can_send()
        if opcode == _OP_CONT:
            if not self._sending_fragmented:
                raise LocalProtocolError("no fragmented message is being sent")
            compressed = self._send_compressed
            first = 0
        else:
            if self._sending_fragmented:
                raise LocalProtocolError("finish the fragmented message first (fin=True)")
            codec = self._deflate
            compressed = codec is not None and len(payload) >= codec.min_size
            self._send_compressed = compressed
            first = RSV1 if compressed else 0  # RFC 7692 §6: RSV1 on the first frame only
        if compressed:
            payload = self._deflate.compress(payload, fin)  # type: ignore[union-attr]
        self._sending_fragmented = not fin
        self._plain_send = fin and self._deflate is None
        self._write_frame((FIN if fin else 0) | first | opcode, payload)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send a control frame in state {self.state.name}")
        if len(payload) > 125:
            raise ValueError("control frame payloads are at most 125 bytes (RFC 6455 §5.5)")
        self._write_frame(FIN | opcode, bytes(payload))

    def _write_frame(self, first: int, payload: bytes) -> None:
        if self._client:
            # §5.3: a client masks every frame with a fresh key from a strong RNG.
            self._out.append(mask_frame(first, payload, new_mask()))
        else:
            self._out.append(encode_server_frame(first, payload))

    def _write_close(self, code: int, reason: str, payload: bytes) -> None:
        self._write_frame(FIN | _OP_CLOSE, payload)
        self.close_sent = (code, reason)

    # -------------------------------------------------------------------- reading (impl)

    def _read_frames(self, data: bytes, pos: int) -> int:
        """Parse as many frames as ``data`` holds from ``pos``; return how many bytes
        were consumed."""
        end = len(data)
        events = self._events
        want_mask = 0 if self._client else 0x80
        limit = min(self.max_frame_size, self.max_message_size)
        while pos < end:
            if self._frame_remaining:
                pos = self._read_piece(data, pos, end)
                continue
            if end - pos < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                start = pos + 4
                if start > end:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
            elif length == 127:
                start = pos + 10
                if start > end:
                    break
                length = int.from_bytes(data[pos + 2:start], "big")
            masked = second & 0x80
            if masked:
                start += 4
                if start > end:
                    break
            stop = start + length
            if (first == 0x81 or first == 0x82) and masked == want_mask and stop <= end \
                    and length <= limit and not self._msg_opcode:
                # Hot path: a whole unfragmented, uncompressed message is buffered.
                payload = unmask_at(data, start - 4, stop) if masked else data[start:stop]
                pos = stop
                if first == 0x82:
                    events.append(BytesMessage(payload))
                    continue
                try:
                    events.append(TextMessage(payload.decode("utf-8")))
                except UnicodeDecodeError:
                    raise InvalidUTF8("invalid UTF-8 in a text message") from None
                continue
            self._check_header(first, masked, length)
            if stop <= end:
                payload = unmask_at(data, start - 4, stop) if masked else data[start:stop]
                pos = stop
                if self._on_frame(first, payload):
                    return pos
            elif first & _CONTROL_BIT:
                break  # ≤ 125 bytes: wait for the whole control frame
            else:
                self._begin_piecewise(first, length, data[start - 4:start] if masked else None)
                pos = start
        return pos

    def _check_header(self, first: int, masked: int, length: int) -> None:
        """Every rule a frame header can break, checked before its payload is read."""
        if first & _RSV23:
            raise FrameError("reserved bits RSV2/RSV3 set without a negotiated extension")
        # RFC 6455 §5.1: clients MUST mask, servers MUST NOT.
        if self._client:
            if masked:
                raise FrameError("masked frame from server")
        elif not masked:
            raise FrameError("unmasked frame from client")
        opcode = first & 0x0F
        if opcode >= 8:
            if opcode > _OP_PONG:
                raise FrameError("reserved control opcode")
            # §5.5: control frames are at most 125 bytes and never fragmented.
            if not first & FIN:
                raise FrameError("fragmented control frame")
            if length > 125:
                raise FrameError("control frame too long")
            if first & RSV1:
                raise FrameError("RSV1 set on a control frame")
            return
        if opcode == _OP_CONT:
            # §5.4: a continuation needs a message in progress; RFC 7692 §6: no RSV1.
            if not self._msg_opcode:
                raise FrameError("continuation frame without a message to continue")
            if first & RSV1:
                raise FrameError("RSV1 set on a continuation frame")
        elif opcode <= _OP_BINARY:
            if self._msg_opcode:
                raise FrameError("new data frame inside a fragmented message")
            if first & RSV1 and self._deflate is None:
                raise FrameError("RSV1 set without permessage-deflate")
        else:
            raise FrameError("reserved data opcode")
        if length >> 63:
            raise FrameError("64-bit payload length with the most significant bit set")
        if length > self.max_frame_size:
            raise MessageTooBig("frame too big")
        compressed = first & RSV1 if opcode else self._msg_compressed
        wire = self._msg_wire + length
        if compressed:
            # Compressed bytes are bounded too, by zlib's worst-case growth of
            # incompressible data (deflateBound: about 3.7 % with a small memLevel).
            if wire > self._max_compressed:
                raise MessageTooBig("message too big")
        elif wire > self.max_message_size:
            raise MessageTooBig("message too big")

    def _on_frame(self, first: int, payload: bytes) -> bool:
        """Handle one whole frame; True when reading must stop (close or failure)."""
        opcode = first & 0x0F
        if opcode >= 8:
            return self._on_control(opcode, payload)
        fin = first & FIN
        if opcode:
            if fin:  # the whole message is in this frame: the fast path
                if first & RSV1 and payload:  # an empty payload is an empty message
                    payload = self._deflate.decompress_message(  # type: ignore[union-attr]
                        payload, self.max_message_size)
                if opcode == _OP_TEXT:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise InvalidUTF8("invalid UTF-8 in a text message") from None
                    self._events.append(TextMessage(text))
                else:
                    self._events.append(BytesMessage(payload))
                return False
            self._start_message(opcode, first & RSV1)
        self._msg_wire += len(payload)
        self._add_chunk(payload)
        if fin:
            self._finish_message()
        else:
            self._check_fragment()
        return False

    def _begin_piecewise(self, first: int, length: int, mask: bytes | None) -> None:
        opcode = first & 0x0F
        if opcode:
            self._start_message(opcode, first & RSV1)
        self._msg_wire += length
        self._frame_remaining = length
        self._frame_fin = bool(first & FIN)
        self._frame_mask = mask
        self._frame_offset = 0

    # RFC 6455 §8.1 UTF-8 checks on a text message assembled from several frames or
    # pieces: each frame is checked when it completes (fail fast per fragment), and each
    # piece under _EAGER_UTF8 bytes as soon as it arrives (fail fast within a frame that
    # dribbles in). Larger pieces of the final frame are checked by the decode that
    # builds the str, so big messages are walked once, not twice.
    # (Cheap pieces are checked while the message so far has all been checked.)
    _EAGER_UTF8 = 4096

    def _read_piece(self, data: bytes, pos: int, end: int) -> int:
        """Consume the next piece of a data frame arriving in pieces."""
        n = min(self._frame_remaining, end - pos)
        stop = pos + n
        mask = self._frame_mask
        self._frame_remaining -= n
        if mask is None:
            piece = data[pos:stop]
        else:
            k = self._frame_offset & 3
            self._frame_offset += n
            piece = apply_mask(memoryview(data)[pos:stop], mask[k:] + mask[:k] if k else mask)
        if self._msg_compressed:
            # Inflate a compressed frame once, when whole: one zlib call and one output
            # buffer instead of one per piece (the inflate is still bounded, see _add_chunk).
            frame_z = self._frame_z
            if frame_z is None:
                frame_z = self._frame_z = Pieces()
            frame_z.append(piece)
            if not self._frame_remaining:
                self._add_chunk(frame_z.join())
                frame_z.clear()
        else:
            self._add_chunk(piece)
        if not self._frame_remaining:
            if self._frame_fin:
                self._finish_message()
            else:
                self._check_fragment()
        return stop

    def _start_message(self, opcode: int, compressed: int) -> None:
        self._msg_opcode = opcode
        self._msg_compressed = bool(compressed)
        if opcode == _OP_TEXT:
            self._validator = Utf8Validator()

    def _add_chunk(self, chunk: bytes) -> None:
        """Append a piece of the message being assembled (inflated and, if small, checked)."""
        msg = self._msg
        if self._msg_compressed:
            chunk = self._deflate.decompress(  # type: ignore[union-attr]
                chunk, self.max_message_size - msg.size)
        validator = self._validator
        if validator is not None and len(chunk) < self._EAGER_UTF8 \
                and self._msg_checked == msg.size:
            validator.feed(chunk)
            self._msg_checked += len(chunk)
        msg.append(chunk)
        if msg.size > self.max_message_size:
            raise MessageTooBig("message too big")

    def _check_fragment(self) -> None:
        """A non-final frame is complete: check the text it brought (fail fast, §8.1)."""
        validator = self._validator
        if validator is not None and self._msg_checked < self._msg.size:
            validator.feed(self._msg.join()[self._msg_checked:])
            self._msg_checked = self._msg.size

    def _finish_message(self) -> None:
        # No compressed bytes at all is an empty message; feeding the tail alone would
        # leave the inflater inside a stored block and corrupt the next message.
        if self._msg_compressed and self._msg_wire:
            tail = self._deflate.end_message(  # type: ignore[union-attr]
                self.max_message_size - self._msg.size)
            if tail:
                self._msg_compressed = False  # the tail is already inflated
                self._add_chunk(tail)
        data = self._msg.join()
        if self._validator is not None:
            try:
                text = data.decode("utf-8")  # checks whatever was not checked yet
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in a text message") from None
            self._events.append(TextMessage(text))
        else:
            self._events.append(BytesMessage(data))
        self._msg_opcode = 0
        self._msg_wire = 0
        self._msg.clear()
        self._msg_checked = 0
        self._validator = None

    def _on_control(self, opcode: int, payload: bytes) -> bool:
        if opcode == _OP_PING:
            self._events.append(Ping(payload))
            # §5.5.2: answer with the same payload, unless a Close was received (then we
            # would not get here) — also while our own Close awaits its answer.
            self._write_frame(FIN | _OP_PONG, payload)
            return False
        if opcode == _OP_PONG:
            self._events.append(Pong(payload))  # §5.5.3: unsolicited pongs need no answer
            return False
        code, reason = parse_close(payload)  # raises FrameError / InvalidUTF8
        self.close_received = (code, reason)
        self._events.append(CloseReceived(code, reason))
        self._discard = True  # §5.5.1: nothing after a Close frame is processed
        self._buf = b""
        if self.close_sent is None:
            # §5.5.1: echo the status code; 1005 ("no code") is echoed as an empty payload.
            echo = b"" if code == NO_STATUS_RCVD else serialize_close(code)
            self._write_close(code, "", echo)
        self._finish_closing()
        return True

    def _finish_closing(self) -> None:
        self._set_state(State.CLOSED)
        if not self._client:
            self._close_transport = True  # §7.1.1: the server closes TCP first

    def _fail(self, exc: RemoteProtocolError) -> None:
        """RFC 6455 §7.1.7 Fail the WebSocket Connection.

        "An endpoint MUST NOT continue to attempt to process data ... from the remote
        endpoint after being instructed to Fail the WebSocket Connection": nothing after
        the bad frame is read. The messages before it arrived whole and were reported
        before the ConnectionFailed event that follows them; with ``hold_fail_close``
        their answers may still go out before our Close (FAILING).
        """
        self.failure = exc
        self._discard = True
        self._buf = b""
        self._events.append(ConnectionFailed(exc.close_code, exc.reason))
        if self.close_sent is None and self.state is State.OPEN:
            if self._hold_fail_close:
                self._set_state(State.FAILING)
                return
            self._write_fail_close()
        self._close_transport = True
        self._set_state(State.CLOSED)

    def _write_fail_close(self) -> None:
        exc = self.failure
        assert exc is not None
        self._write_close(exc.close_code, exc.reason,
                          serialize_close(exc.close_code, exc.reason.encode()))

    def _set_state(self, state: State) -> None:
        if state is not self.state:
            if logger.isEnabledFor(logging.DEBUG):  # the arguments cost more than the call
                logger.debug("%s connection %s -> %s", self.role.value, self.state.name,
                             state.name)
            self.state = state
