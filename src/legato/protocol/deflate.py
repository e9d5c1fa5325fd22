"""permessage-deflate (RFC 7692): negotiation for both roles and the per-message codec.

Memory is what decides the defaults. zlib's deflate state costs
``2**(wbits+2) + 2**(mem_level+9)`` bytes and inflate about ``2**wbits + 7 KiB``; with
zlib's own defaults (15 bits, memLevel 8) that is ~256 KiB + ~39 KiB per connection,
which 10,000 chat clients turn into 3 GB. legato's defaults, server_max_window_bits=12
with mem_level=5 (32 KiB deflate) and client_max_window_bits=12 when the client lets us
choose (11 KiB inflate), keep ~43 KiB per *active* connection while still compressing
JSON chat traffic well. Both codecs are created on the first compressed message, so an
idle connection costs nothing here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from collections.abc import Sequence

from ..exceptions import CompressionError, MessageTooBig, NegotiationError
from .headers import ExtensionParams, serialize_extension

__all__ = ["PerMessageDeflate", "DeflateParams", "DeflateCodec", "EXTENSION_NAME"]

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: removed by the sender, appended by the receiver
_MIN_BITS = 9  # zlib cannot produce a raw deflate stream with an 8-bit window (see negotiate)


@dataclass(frozen=True)
class DeflateParams:
    """What both sides agreed on for one connection (RFC 7692 §7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15

    def to_header(self, *, client_bits_offered: bool = True, server_bits: bool = False) -> str:
        """The response value; ``server_bits`` forces server_max_window_bits out even at 15
        (a server accepts an offered limit by echoing it, RFC 7692 §7.1.2.1)."""
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if server_bits or self.server_max_window_bits != 15:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if client_bits_offered and self.client_max_window_bits != 15:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return serialize_extension(EXTENSION_NAME, params)


def _parse_offer(params: ExtensionParams) -> dict[str, str | None] | None:
    """Validate one offer's parameters (RFC 7692 §7.1); None means "decline this offer"."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name in seen:
            return None  # §7: a duplicate parameter makes the offer invalid
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif name == "server_max_window_bits":
            if not _valid_bits(value):
                return None
        elif name == "client_max_window_bits":
            if value is not None and not _valid_bits(value):
                return None
        else:
            return None  # §7: an unknown parameter makes the offer invalid
        seen[name] = value
    return seen


def _valid_bits(value: str | None) -> bool:
    # RFC 7692 §7.1.2: a decimal integer 8-15 with no leading zeros.
    return value is not None and value.isdigit() and value[0] != "0" and 8 <= int(value) <= 15


@dataclass(frozen=True)
class PerMessageDeflate:
    """permessage-deflate settings for one side; shared by every connection of an app.

    ``*_no_context_takeover`` ask for a fresh LZ77 window per message (less memory kept
    between messages, worse ratio). ``*_max_window_bits`` (9-15) bound the window each
    side compresses with. ``mem_level`` (1-9) and ``compress_level`` (0-9) tune our
    deflater; ``min_size`` skips compression for messages shorter than that (bytes).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 12
    client_max_window_bits: int | None = 12
    mem_level: int = 5
    compress_level: int = 6
    # Messages under 128 bytes go out uncompressed (RSV1 clear, which RFC 7692 §6
    # allows per message): deflating them saves a few bytes for ~2-3 µs of zlib each.
    # Node's `ws` makes the same trade at 1 KiB. Set 0 to compress everything.
    min_size: int = 128

    def __post_init__(self) -> None:
        if not _MIN_BITS <= self.server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be 9-15 (zlib has no 8-bit deflate)")
        if self.client_max_window_bits is not None and not 8 <= self.client_max_window_bits <= 15:
            raise ValueError("client_max_window_bits must be 8-15")

    # -- server role -------------------------------------------------------------------

    def negotiate(
        self, offers: Sequence[tuple[str, ExtensionParams]]
    ) -> tuple[str, DeflateParams] | None:
        """Pick the first acceptable permessage-deflate offer; return (header, params).

        Offers that are malformed, duplicate a parameter, or ask for an 8-bit server
        window (zlib cannot honour it) are declined and the next one is tried. Never
        answers with a parameter the client's offer does not allow (§7.1.2.2).
        """
        for name, raw in offers:
            if name != EXTENSION_NAME:
                continue
            offer = _parse_offer(raw)
            if offer is None:
                continue
            server_bits = self.server_max_window_bits
            if "server_max_window_bits" in offer:
                server_bits = min(server_bits, int(offer["server_max_window_bits"] or 15))
                if server_bits < _MIN_BITS:
                    continue
            client_bits = 15
            client_bits_offered = "client_max_window_bits" in offer
            if client_bits_offered:
                client_value = offer["client_max_window_bits"]
                client_bits = int(client_value) if client_value else 15
                if self.client_max_window_bits is not None:
                    client_bits = min(client_bits, self.client_max_window_bits)
            params = DeflateParams(
                server_no_context_takeover=self.server_no_context_takeover
                or "server_no_context_takeover" in offer,
                client_no_context_takeover=self.client_no_context_takeover
                or "client_no_context_takeover" in offer,
                server_max_window_bits=server_bits,
                client_max_window_bits=client_bits,
            )
            # client_max_window_bits may be sent back only if offered (§7.1.2.2).
            header = params.to_header(client_bits_offered=client_bits_offered,
                                      server_bits="server_max_window_bits" in offer)
            return header, params
        return None

    # -- client role -------------------------------------------------------------------

    def offer(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value a client sends."""
        params: ExtensionParams = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits != 15:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is None:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits != 15:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        else:
            params.append(("client_max_window_bits", None))
        return serialize_extension(EXTENSION_NAME, params)

    def accept_response(self, params: ExtensionParams) -> DeflateParams:
        """Check the server's answer to :meth:`offer` (§7.1); raise ``NegotiationError``."""
        seen = _parse_offer(params)
        if seen is None:
            raise NegotiationError("invalid permessage-deflate parameters in the response")
        if self.server_no_context_takeover and "server_no_context_takeover" not in seen:
            raise NegotiationError("server ignored server_no_context_takeover")
        server_bits = 15
        if "server_max_window_bits" in seen:
            server_bits = int(seen["server_max_window_bits"] or 15)
            if server_bits > self.server_max_window_bits:
                raise NegotiationError("server_max_window_bits above what was offered")
        elif self.server_max_window_bits != 15:
            raise NegotiationError("server ignored server_max_window_bits")
        client_bits = self.client_max_window_bits or 15
        if "client_max_window_bits" in seen:
            value = seen["client_max_window_bits"]
            if value is None:
                raise NegotiationError("client_max_window_bits without a value in a response")
            client_bits = int(value)
            if client_bits > (self.client_max_window_bits or 15):
                raise NegotiationError("client_max_window_bits above what was offered")
        return DeflateParams(
            server_no_context_takeover="server_no_context_takeover" in seen,
            client_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in seen,
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
        )


class DeflateCodec:
    """Compresses what one side sends and inflates what it receives, per RFC 7692 §7.2."""

    __slots__ = (
        "_send_bits", "_recv_bits", "_send_reset", "_recv_reset",
        "_level", "_mem_level", "_deflater", "_inflater", "min_size",
    )

    def __init__(self, params: DeflateParams, *, is_client: bool,
                 config: PerMessageDeflate | None = None) -> None:
        config = config or PerMessageDeflate()
        if is_client:
            self._send_bits = params.client_max_window_bits
            self._recv_bits = params.server_max_window_bits
            self._send_reset = params.client_no_context_takeover
            self._recv_reset = params.server_no_context_takeover
        else:
            self._send_bits = params.server_max_window_bits
            self._recv_bits = params.client_max_window_bits
            self._send_reset = params.server_no_context_takeover
            self._recv_reset = params.client_no_context_takeover
        # zlib has no raw 8-bit deflate; inflating with a larger window is always safe.
        self._send_bits = max(self._send_bits, _MIN_BITS)
        self._recv_bits = max(self._recv_bits, _MIN_BITS)
        self._level = config.compress_level
        self._mem_level = config.mem_level
        self.min_size = config.min_size
        self._deflater: zlib._Compress | None = None
        self._inflater: zlib._Decompress | None = None

    def compress(self, data: bytes, fin: bool) -> bytes:
        """Compress one frame's worth of a message; ``fin`` ends the message."""
        deflater = self._deflater
        if deflater is None:
            deflater = self._deflater = zlib.compressobj(
                self._level, zlib.DEFLATED, -self._send_bits, self._mem_level
            )
        out = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self._send_reset:
                self._deflater = None
        return out

    def decompress(self, data: bytes, limit: int) -> bytes:
        """Inflate part of a message; at most ``limit`` bytes or ``MessageTooBig`` (1009).

        The bound is enforced while inflating, so a 1000:1 bomb costs no more than
        ``limit`` bytes of memory.
        """
        inflater = self._inflater
        if inflater is None:
            inflater = self._inflater = zlib.decompressobj(-self._recv_bits)
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise CompressionError(f"invalid compressed data ({exc.args[0] if exc.args else ''})") \
                from None
        if len(out) > limit:
            raise MessageTooBig("message too big after decompression")
        return out

    def end_message(self, limit: int) -> bytes:
        """Finish an inflated message: feed the stripped tail (§7.2.2) and return the rest."""
        out = self.decompress(_TAIL, limit)
        self._after_message()
        return out

    def decompress_message(self, data: bytes, limit: int) -> bytes:
        """Inflate a whole single-frame message in one call."""
        out = self.decompress(data, limit)
        tail = self.decompress(_TAIL, limit - len(out))  # usually b"": no copy of out
        self._after_message()
        return out + tail if tail else out

    def _after_message(self) -> None:
        # A peer may end a message with a BFINAL block (RFC 7692 §7.2.3.4): that ends the
        # deflate stream, so the next message needs a fresh inflater, as without takeover.
        inflater = self._inflater
        if self._recv_reset or (inflater is not None and inflater.eof):
            self._inflater = None
