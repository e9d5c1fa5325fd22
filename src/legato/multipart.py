"""``multipart/form-data`` bodies (RFC 7578, on the RFC 2046 §5.1 syntax) → FormData.

The body is already in memory (``Request.body()`` is bounded by ``max_body_size``), so
the parser works on one ``bytes`` object with ``find()``: no incremental state to get
wrong, and every part is a slice. The contract, pinned by a fuzz test: any input yields
a :class:`~legato.datastructures.FormData` or raises ``ValueError`` with a short message
that does not echo the body; the caller answers 400.

::

    preamble CRLF? --boundary [padding] CRLF  headers CRLF CRLF  content
              CRLF --boundary [padding] CRLF  headers CRLF CRLF  content
              CRLF --boundary-- epilogue
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .datastructures import FormData, Headers, UploadFile

__all__ = ["parse_multipart", "parse_header_params", "MAX_PARTS", "MAX_PART_HEAD"]

#: Parts per body: each costs a slice, a header dict and an object, so a body of tiny
#: parts must not buy unbounded work. Django's DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000 too.
MAX_PARTS = 1000
#: Bytes of headers per part. Browsers send two short lines; 16 KiB is h11's limit for a
#: whole request head.
MAX_PART_HEAD = 16 * 1024

#: RFC 2046 §5.1.1: 1 to 70 bchars, the last one not a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: One ``; name=value`` parameter (RFC 9110 §5.6.6); the value a token or quoted string.
_PARAM = re.compile(r'[ \t]*;[ \t]*([^\s=;"]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^;"]*)')
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_multipart(body: bytes, boundary: str, *, max_parts: int = MAX_PARTS,
                    max_part_head: int = MAX_PART_HEAD) -> FormData:
    """Parse a whole ``multipart/form-data`` body. Fields without ``filename`` become
    ``str`` (decoded with the part's charset, UTF-8 by default); fields with one become
    :class:`UploadFile`. Raises ``ValueError`` for anything malformed or over a limit."""
    if not _BOUNDARY.fullmatch(boundary):
        raise ValueError("invalid multipart boundary")
    delimiter = b"\r\n--" + boundary.encode("ascii")
    dash_boundary = delimiter[2:]
    if body.startswith(dash_boundary):  # RFC 2046 §5.1.1: the CRLF is optional up front
        pos = len(dash_boundary)
    else:
        found = body.find(delimiter)
        if found < 0:
            raise ValueError("the multipart boundary does not occur in the body")
        pos = found + len(delimiter)
    items: list[tuple[str, str | UploadFile]] = []
    while True:
        # State: just after a delimiter. "--" closes the body; else padding, CRLF, a part.
        if body.startswith(b"--", pos):
            return FormData(items)
        while body[pos:pos + 1] in (b" ", b"\t"):
            pos += 1
        if not body.startswith(b"\r\n", pos):
            raise ValueError("malformed multipart boundary line")
        end = body.find(delimiter, pos + 2)
        if end < 0:
            raise ValueError("the multipart body ends without its closing boundary")
        if len(items) >= max_parts:
            raise ValueError(f"more than {max_parts} parts in the multipart body")
        items.append(_parse_part(body[pos + 2:end], max_part_head))
        pos = end + len(delimiter)


def _parse_part(part: bytes, max_head: int) -> tuple[str, str | UploadFile]:
    if part.startswith(b"\r\n"):
        head, content = b"", part[2:]
    else:
        split = part.find(b"\r\n\r\n", 0, max_head + 4)
        if split < 0:
            raise ValueError("a multipart part's headers are too long or not terminated")
        head, content = part[:split], part[split + 4:]
    headers = _parse_head(head)
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise ValueError("a multipart part has no Content-Disposition")
    kind, params = parse_header_params(disposition)
    if kind != "form-data" or "name" not in params:
        raise ValueError("a multipart part is not form-data with a name")
    content_type, type_params = parse_header_params(headers.get("content-type", ""))
    if "filename*" in params:  # RFC 8187 ext-value, sent by some non-browser clients
        return params["name"], UploadFile(_ext_value(params["filename*"]),
                                          content_type or "application/octet-stream",
                                          content, headers)
    if "filename" in params:
        return params["name"], UploadFile(params["filename"],
                                          content_type or "application/octet-stream",
                                          content, headers)
    return params["name"], _decode(content, type_params.get("charset", "utf-8"))


def _parse_head(head: bytes) -> Headers:
    fields: list[tuple[str, str]] = []
    if not head:
        return Headers(fields)
    try:  # browsers send file names as raw UTF-8 (the HTML form submission algorithm)
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("latin-1")
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise ValueError("malformed header line in a multipart part")
        fields.append((name, value.strip(" \t")))
    return Headers(fields)


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """``type/sub; a=1; b="x y"`` → ``("type/sub", {"a": "1", "b": "x y"})``. The main
    value and parameter names are lower-cased; quoted values are unescaped. Raises
    ``ValueError`` on bad syntax."""
    main, _, _ = value.partition(";")
    params: dict[str, str] = {}
    pos = len(main)
    while pos < len(value):
        match = _PARAM.match(value, pos)
        if match is None:
            if value[pos:].strip(" \t;"):
                raise ValueError("malformed header parameters")
            break
        raw = match.group(2).strip(" \t")
        if raw.startswith('"'):
            raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
        pos = match.end()
    return main.strip(" \t").lower(), params


def _ext_value(value: str) -> str:
    """RFC 8187 §3.2: ``charset'language'percent-encoded``."""
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not sep or not sep2:
        raise ValueError("malformed filename* parameter")
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, ValueError):
        raise ValueError("undecodable filename* parameter") from None


def _decode(content: bytes, charset: str) -> str:
    try:
        return content.decode(charset)
    except (LookupError, ValueError):
        raise ValueError("a multipart field does not decode with its charset") from None
