"""The compiled reader of whole one-frame messages (``_speedups.read_messages``).

It reads what nearly every client sends (one masked text or binary frame per message)
and stops at anything else; Connection's Python reader then takes over. These tests pin
where it stops; test_properties.py checks that both readers together behave like the
Python reader alone on any bytes.
"""

from __future__ import annotations

import pytest

from legato.protocol.events import BytesMessage, TextMessage
from legato.protocol.frames import encode_frame
from legato.protocol.masking import SPEEDUPS

pytestmark = pytest.mark.skipif(not SPEEDUPS, reason="the C extension is not in use")

KEY = b"\x37\xfa\x21\x3d"
BIG = 1 << 20


def read(data: bytes, pos: int = 0, max_message: int = BIG,
         max_frame: int = BIG) -> tuple[int, list[object]]:
    from legato.protocol._speedups import read_messages

    events: list[object] = []
    return read_messages(data, pos, max_message, max_frame, events), events


def text(payload: bytes, **kwargs: object) -> bytes:
    return encode_frame(1, payload, mask=KEY, **kwargs)  # type: ignore[arg-type]


def binary(payload: bytes, **kwargs: object) -> bytes:
    return encode_frame(2, payload, mask=KEY, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 7, 8, 125, 126, 65535, 65536, 70000])
def test_reads_text_and_binary_of_every_length_encoding(size):
    payload = bytes(i % 128 for i in range(size))
    data = text(payload) + binary(payload)
    pos, events = read(data)
    assert pos == len(data)
    assert events == [TextMessage(payload.decode()), BytesMessage(payload)]


def test_decodes_non_ascii_text():
    payload = "héllo, wörld — 😀".encode()
    pos, events = read(text(payload))
    assert events == [TextMessage("héllo, wörld — 😀")]


@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"ab\xe2\x82"])
def test_stops_before_invalid_utf8_for_the_python_reader_to_fail(bad):
    good = text(b"ok")
    pos, events = read(good + text(bad) + text(b"after"))
    assert (pos, events) == (len(good), [TextMessage("ok")])


@pytest.mark.parametrize("frame", [
    encode_frame(9, b"ping", mask=KEY),           # control frame
    encode_frame(8, b"\x03\xe8", mask=KEY),       # close
    text(b"part", fin=False),                     # first fragment
    encode_frame(0, b"more", mask=KEY),           # continuation
    text(b"z", rsv1=True),                        # compressed (or a protocol error)
    text(b"x", rsv2=True),
    encode_frame(1, b"unmasked"),                 # clients must mask
    encode_frame(3, b"", mask=KEY),               # reserved opcode
], ids=["ping", "close", "fragment", "continuation", "rsv1", "rsv2", "unmasked", "opcode"])
def test_stops_at_any_frame_that_is_not_a_whole_plain_message(frame):
    good = binary(b"\x00\x01")
    pos, events = read(good + frame + good)
    assert (pos, events) == (len(good), [BytesMessage(b"\x00\x01")])


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 9])
def test_stops_at_a_frame_not_yet_whole(cut):
    frame = text(b"x" * 300)  # 16-bit length: header 4 + key 4 + payload
    pos, events = read(text(b"a") + frame[:cut])
    assert (pos, events) == (len(text(b"a")), [TextMessage("a")])


def test_stops_at_a_frame_above_either_limit_for_the_python_reader_to_fail():
    for kwargs in ({"max_message": 10}, {"max_frame": 10}):
        pos, events = read(text(b"x" * 10) + text(b"y" * 11), **kwargs)  # type: ignore[arg-type]
        assert (pos, events) == (len(text(b"x" * 10)), [TextMessage("x" * 10)])


def test_a_64_bit_length_with_the_top_bit_set_is_never_read():
    frame = bytes((0x82, 0xFF)) + b"\x80" + b"\x00" * 7 + KEY
    assert read(frame) == (0, [])


def test_starts_at_the_given_position():
    data = b"junk" + text(b"hi")
    assert read(data, 4) == (len(data), [TextMessage("hi")])
    with pytest.raises(ValueError):
        read(data, len(data) + 1)
