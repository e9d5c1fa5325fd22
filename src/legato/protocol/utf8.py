"""Incremental UTF-8 validation that fails as soon as a sequence cannot be completed.

RFC 6455 §8.1: an endpoint that receives invalid UTF-8 in a text message MUST fail the
connection, and conformance suites check that it does so on the fragment (or TCP chunk)
holding the bad byte, not at the end of the message.

With the C speed-ups, ``utf8_check`` walks the bytes with the Unicode Table 3-7 state
machine (ASCII 8 bytes at a time) without building a str. Without
them, CPython's incremental decoder validates each piece; it rejects nearly every bad byte
at once but holds back a sequence it has not finished, and for ``ED A0..BF`` (surrogates)
only complains a byte later, so :func:`is_valid_prefix` checks that held-back prefix.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable

from ..exceptions import InvalidUTF8

__all__ = ["Utf8Validator", "is_valid_prefix"]

_Decoder = codecs.getincrementaldecoder("utf-8")

# Allowed range of the second byte after each lead byte (Unicode Table 3-7).
_SECOND: dict[int, tuple[int, int]] = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F),
                                      0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}

_utf8_check: Callable[[bytes | bytearray | memoryview, int], int] | None = None
if os.environ.get("LEGATO_NO_EXTENSIONS") != "1":
    try:
        from ._speedups import utf8_check as _utf8_check
    except ImportError:  # not built: the decoder below serves
        pass


def is_valid_prefix(pending: bytes) -> bool:
    """True when ``pending`` (1-3 bytes) can still start a valid UTF-8 sequence."""
    lead = pending[0]
    if 0xC2 <= lead <= 0xDF:
        needed = 2
    elif 0xE0 <= lead <= 0xEF:
        needed = 3
    elif 0xF0 <= lead <= 0xF4:
        needed = 4
    else:
        return False
    if len(pending) >= needed:
        return False
    low, high = _SECOND.get(lead, (0x80, 0xBF))
    if len(pending) > 1 and not low <= pending[1] <= high:
        return False
    return all(0x80 <= byte <= 0xBF for byte in pending[2:])


class Utf8Validator:
    """Feed the pieces of one text message; ``InvalidUTF8`` at the first bad piece."""

    __slots__ = ("_decoder", "_state")

    def __init__(self) -> None:
        self._state = 0
        self._decoder = _Decoder() if _utf8_check is None else None

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if _utf8_check is not None:
            self._state = _utf8_check(chunk, self._state)
            if self._state < 0:
                raise InvalidUTF8("invalid UTF-8 in a text message")
            return
        decoder = self._decoder
        assert decoder is not None
        try:
            decoder.decode(chunk, False)
        except UnicodeDecodeError:
            raise InvalidUTF8("invalid UTF-8 in a text message") from None
        pending = decoder.getstate()[0]
        if pending and not is_valid_prefix(pending):
            raise InvalidUTF8("invalid UTF-8 in a text message")

    def finish(self) -> None:
        """The message ended: a sequence left incomplete is invalid."""
        if self._decoder is None:
            if self._state:
                raise InvalidUTF8("text message ends inside a UTF-8 sequence")
            return
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError:
            raise InvalidUTF8("text message ends inside a UTF-8 sequence") from None
