"""Incremental UTF-8 validation that fails as soon as a sequence cannot be completed.

RFC 6455 §8.1: an endpoint that receives invalid UTF-8 in a text message MUST fail the
connection, and conformance suites check that it does so on the fragment (or TCP chunk)
holding the bad byte, not at the end of the message. CPython's incremental decoder is
fast (C) and rejects nearly every bad byte at once, but it holds back the start of a
sequence it has not finished; for ``ED A0..BF`` (surrogates) it only complains a byte
later. :class:`Utf8Validator` checks that held-back prefix itself.
"""

from __future__ import annotations

import codecs

from ..exceptions import InvalidUTF8

__all__ = ["Utf8Validator", "is_valid_prefix"]

_Decoder = codecs.getincrementaldecoder("utf-8")

# Allowed range of the second byte after each lead byte (Unicode Table 3-7).
_SECOND: dict[int, tuple[int, int]] = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F),
                                      0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


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
    """Feed chunks of one text message; raises ``InvalidUTF8`` at the first bad chunk."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = _Decoder()

    def decode(self, chunk: bytes | bytearray | memoryview) -> str:
        """Decode the next chunk; a sequence left open is held for the next one."""
        try:
            text: str = self._decoder.decode(chunk, False)
        except UnicodeDecodeError:
            raise InvalidUTF8("invalid UTF-8 in a text message") from None
        pending = self._decoder.getstate()[0]
        if pending and not is_valid_prefix(pending):
            raise InvalidUTF8("invalid UTF-8 in a text message")
        return text

    def pending(self) -> bytes:
        """The bytes of a sequence started but not finished yet."""
        pending: bytes = self._decoder.getstate()[0]
        return pending

    def finish(self) -> None:
        """The message ended: a sequence left incomplete is invalid."""
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError:
            raise InvalidUTF8("text message ends inside a UTF-8 sequence") from None
