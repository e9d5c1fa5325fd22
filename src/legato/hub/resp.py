"""RESP2, the Redis wire protocol, without I/O: commands to bytes, bytes to replies.

The pipelined command connection (pipeline.py) writes many commands in one system call
and reads their replies in the order it sent them; it needs no more of the protocol
than this: requests are arrays of bulk strings, replies are simple strings, errors,
integers, bulk strings (``None`` for the null bulk string) and arrays of those.

:class:`ReplyParser` takes bytes as they come (``feed``) and yields every complete reply
(``replies``), keeping an incomplete one for the next ``feed``. An error reply is a
:class:`ReplyError` *value*, not an exception: it is the reply of one command of a
pipeline and goes to that command's caller. A reply that is not RESP2 raises
:class:`ProtocolError` (the connection is then unusable: nothing after it can be
trusted to belong to the command it seems to answer).
"""

from __future__ import annotations

from typing import Any, Union

__all__ = ["ProtocolError", "Reply", "ReplyError", "ReplyParser", "encode_command", "text"]

Reply = Union[bytes, int, None, "ReplyError", list["Reply"]]

#: Longest line (simple string, error, integer, length) a reply may have: Redis's own
#: are under a few hundred bytes; a longer one means the stream is not RESP.
MAX_LINE = 64 * 1024


class ProtocolError(Exception):
    """Bytes from Redis that are not RESP2: the connection must be closed."""


class ReplyError(str):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``): the command was refused."""

    __slots__ = ()


def encode_command(*args: bytes | str | int) -> bytes:
    """One command as RESP2: an array of bulk strings, joined once."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n" % len(raw))
        parts.append(raw)
        parts.append(b"\r\n")
    return b"".join(parts)


def text(raw: bytes | str) -> str:
    """A bulk string reply (or a str already) as text."""
    return raw.decode() if isinstance(raw, bytes) else raw


class ReplyParser:
    """Incremental RESP2 reply parser (sans-I/O): ``feed(data)`` then ``replies()``.

    Resumable: an array that arrives over several reads is built as it comes (a stack
    of the arrays still open), never parsed again from its start, so a reply of 20,000
    elements read in 40 chunks costs one pass, not 40.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._stack: list[list[Any]] = []  # open arrays: [items, elements still to come]

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def replies(self) -> list[Reply]:
        """Every complete reply in the buffer, in order (ProtocolError: not RESP2)."""
        out: list[Reply] = []
        buffer, stack, pos = self._buffer, self._stack, 0
        size = len(buffer)
        while pos < size:
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                if size - pos > MAX_LINE:
                    raise ProtocolError("a reply line longer than 64 KiB")
                break
            kind = buffer[pos]
            value: Reply
            if kind == 0x24:  # $ bulk string
                length = _integer(buffer[pos + 1:end])
                if length < 0:
                    value, pos = None, end + 2
                else:
                    stop = end + 2 + length
                    if size < stop + 2:
                        break
                    if buffer[stop:stop + 2] != b"\r\n":
                        raise ProtocolError("a bulk string not ended by CRLF")
                    value, pos = bytes(buffer[end + 2:stop]), stop + 2
            elif kind == 0x2A:  # * array
                count, pos = _integer(buffer[pos + 1:end]), end + 2
                if count > 0:
                    stack.append([[], count])
                    continue
                value = None if count < 0 else []
            elif kind == 0x3A:  # : integer
                value, pos = _integer(buffer[pos + 1:end]), end + 2
            elif kind == 0x2B:  # + simple string
                value, pos = bytes(buffer[pos + 1:end]), end + 2
            elif kind == 0x2D:  # - error
                value = ReplyError(buffer[pos + 1:end].decode(errors="replace"))
                pos = end + 2
            else:
                raise ProtocolError(f"unknown reply type {bytes([kind])!r}")
            while True:  # into the innermost open array, closing the full ones
                if not stack:
                    out.append(value)
                    break
                top = stack[-1]
                top[0].append(value)
                top[1] -= 1
                if top[1]:
                    break
                stack.pop()
                value = top[0]
        if pos:
            del buffer[:pos]
        return out


def _integer(raw: bytes | bytearray) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"not an integer: {bytes(raw[:20])!r}") from None
