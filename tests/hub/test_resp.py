"""hub/resp.py, the sans-I/O RESP2 codec of the Redis connections: what a command
encodes to, and that replies come out whole however the bytes are split (a reply is
never parsed twice: a big array over many reads is one pass)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legato.hub.resp import ProtocolError, ReplyError, ReplyParser, encode_command

REPLIES = (b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n*0\r\n-ERR no such thing\r\n"
           b"*2\r\n*2\r\n$1\r\na\r\n:1\r\n$0\r\n\r\n")
EXPECTED = [b"OK", 42, b"hello", None, None, [], ReplyError("ERR no such thing"),
            [[b"a", 1], b""]]


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert encode_command("SET", b"k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"


def test_every_reply_type_parses_from_one_read() -> None:
    parser = ReplyParser()
    parser.feed(REPLIES)
    replies = parser.replies()
    assert replies == EXPECTED
    assert isinstance(replies[6], ReplyError)  # a value, not raised: one command's answer


def test_replies_split_at_every_byte_come_out_the_same() -> None:
    parser, out = ReplyParser(), []
    for i in range(len(REPLIES)):
        parser.feed(REPLIES[i:i + 1])
        out += parser.replies()
    assert out == EXPECTED


@given(st.lists(st.integers(min_value=1, max_value=len(REPLIES)), max_size=20))
def test_replies_split_anywhere_come_out_the_same(cuts: list[int]) -> None:
    parser, out, start = ReplyParser(), [], 0
    for cut in sorted(set(cuts)) + [len(REPLIES)]:
        parser.feed(REPLIES[start:cut])
        out += parser.replies()
        start = cut
    assert out == EXPECTED


def test_a_big_array_read_in_chunks_is_parsed_once_whole() -> None:
    data = encode_command(*[b"x" * 10] * 20_000)  # same framing as an array reply
    parser, out = ReplyParser(), []
    for i in range(0, len(data), 4096):
        parser.feed(data[i:i + 4096])
        out += parser.replies()
    assert out == [[b"x" * 10] * 20_000]


@pytest.mark.parametrize("junk", [b"?what\r\n", b"$abc\r\n", b"$3\r\nabcXY", b":1x\r\n"])
def test_bytes_that_are_not_resp2_are_a_protocol_error(junk: bytes) -> None:
    parser = ReplyParser()
    parser.feed(junk)
    with pytest.raises(ProtocolError):
        parser.replies()


def test_a_line_longer_than_64_kib_is_a_protocol_error() -> None:
    parser = ReplyParser()
    parser.feed(b"+" + b"x" * 70_000)
    with pytest.raises(ProtocolError):
        parser.replies()


@given(st.binary(max_size=200))
def test_any_bytes_give_replies_or_a_protocol_error(data: bytes) -> None:
    parser = ReplyParser()
    parser.feed(data)
    try:
        parser.replies()
    except ProtocolError:
        pass
