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

from typing import Union

__all__ = ["ProtocolError", "Reply", "ReplyError", "ReplyParser", "encode_command"]

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


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


class ReplyParser:
    """Incremental RESP2 reply parser (sans-I/O): ``feed(data)`` then ``replies()``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def replies(self) -> list[Reply]:
        """Every complete reply in the buffer, in order (ProtocolError: not RESP2)."""
        out: list[Reply] = []
        buffer = self._buffer
        while self._pos < len(buffer):
            start = self._pos
            try:
                out.append(self._parse())
            except _Incomplete:
                self._pos = start
                break
        if self._pos:
            del buffer[:self._pos]
            self._pos = 0
        return out

    def _line(self) -> bytes:
        buffer, pos = self._buffer, self._pos
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            if len(buffer) - pos > MAX_LINE:
                raise ProtocolError("a reply line longer than 64 KiB")
            raise _Incomplete
        self._pos = end + 2
        return bytes(buffer[pos:end])

    def _parse(self) -> Reply:
        line = self._line()
        if not line:
            raise ProtocolError("an empty reply line")
        kind, rest = line[:1], line[1:]
        if kind == b"$":
            length = _integer(rest)
            if length < 0:
                return None
            end = self._pos + length
            if len(self._buffer) < end + 2:
                raise _Incomplete
            if self._buffer[end:end + 2] != b"\r\n":
                raise ProtocolError("a bulk string not ended by CRLF")
            value = bytes(self._buffer[self._pos:end])
            self._pos = end + 2
            return value
        if kind == b"+":
            return rest
        if kind == b":":
            return _integer(rest)
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace"))
        if kind == b"*":
            count = _integer(rest)
            if count < 0:
                return None
            return [self._parse() for _ in range(count)]
        raise ProtocolError(f"unknown reply type {kind!r}")


def _integer(raw: bytes) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"not an integer: {raw[:20]!r}") from None
