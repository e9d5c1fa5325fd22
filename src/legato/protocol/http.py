"""A strict HTTP/1.1 message-head parser and serialiser for the handshake (RFC 9112).

The built-in server parses HTTP with httptools; this small parser exists so the sans-I/O
core is complete on its own: the client reads the server's 101 with it, and tests and
fuzzers can drive a server handshake from raw bytes. It rejects what RFC 9112 lets a
recipient reject: bare CR or LF, whitespace before the colon, obs-fold, and CR/LF/NUL in
values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..status import STATUS_PHRASES
from .headers import Headers, is_token

__all__ = [
    "RequestHead",
    "ResponseHead",
    "HeadError",
    "STATUS_PHRASES",
    "find_head_end",
    "parse_request_head",
    "parse_response_head",
    "serialize_response",
    "serialize_request",
    "MAX_LINE",
    "MAX_HEADERS",
]

#: 8 KiB per line and 128 header lines: what common servers and browsers stay within.
MAX_LINE = 8192
MAX_HEADERS = 128

# RFC 9112 §3.2: the target is visible ASCII only (no controls, DEL or spaces).
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")



class HeadError(ValueError):
    """A malformed message head; ``status_code`` is the answer a server should give."""

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.status_code = status_code


@dataclass
class RequestHead:
    method: str
    target: str
    http_version: str
    headers: Headers


@dataclass
class ResponseHead:
    status_code: int
    reason: str
    http_version: str
    headers: Headers


def find_head_end(buf: bytes | bytearray, max_size: int = MAX_LINE * 8) -> int | None:
    """Index just past the blank line ending the head, or None while it is incomplete.

    Raises ``HeadError`` (431) when no end is in sight within ``max_size`` bytes.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > max_size:
            raise HeadError("message head too large", 431)
        return None
    if end + 4 > max_size:
        raise HeadError("message head too large", 431)
    return end + 4


def _split_lines(head: bytes) -> list[bytes]:
    if head.endswith(b"\r\n\r\n"):
        head = head[:-4]
    lines = head.split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise HeadError("bare CR or LF in the message head")
    return lines


def _parse_fields(lines: list[bytes]) -> Headers:
    if len(lines) > MAX_HEADERS:
        raise HeadError("too many header fields", 431)
    fields: list[tuple[str, str]] = []
    for line in lines:
        if len(line) > MAX_LINE:
            raise HeadError("header field too long", 431)
        if line[:1] in (b" ", b"\t"):
            raise HeadError("obsolete line folding")  # RFC 9112 §5.2
        name, colon, value = line.partition(b":")
        if not colon:
            raise HeadError("header field without a colon")
        name_str = name.decode("latin-1")
        if not is_token(name_str):  # also rejects whitespace before the colon (§5.1)
            raise HeadError("invalid header field name")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise HeadError("control character in a header field value")
        fields.append((name_str, value.decode("latin-1")))
    return Headers(fields)


def parse_request_head(head: bytes) -> RequestHead:
    """Parse a request head (through the blank line); raise ``HeadError``."""
    lines = _split_lines(head)
    if len(lines[0]) > MAX_LINE:
        raise HeadError("request line too long", 414)
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HeadError("malformed request line")
    method, target, major, minor = match.groups()
    return RequestHead(method.decode("ascii"), target.decode("latin-1"),
                       f"{major.decode()}.{minor.decode()}", _parse_fields(lines[1:]))


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head (through the blank line); raise ``HeadError``."""
    lines = _split_lines(head)
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise HeadError("malformed status line")
    major, minor, status, reason = match.groups()
    return ResponseHead(int(status), (reason or b"").decode("latin-1"),
                        f"{major.decode()}.{minor.decode()}", _parse_fields(lines[1:]))


def _check_field(name: str, value: str) -> None:
    # Never emit CR, LF or NUL in a head: that would let a value inject headers.
    if not is_token(name) or "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"invalid header field {name!r}")


def serialize_response(status: int, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """Encode a response head (and body). Raises ``ValueError`` for unsafe fields."""
    lines = [f"HTTP/1.1 {status} {STATUS_PHRASES.get(status, 'Unknown')}"]
    for name, value in headers:
        _check_field(name, value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def serialize_request(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    """Encode a request head. Raises ``ValueError`` for unsafe fields or target."""
    if not target or any(c in target for c in " \r\n\x00"):
        raise ValueError(f"invalid request target {target!r}")
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in headers:
        _check_field(name, value)
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
