"""Request bodies as a browser or httpx would send them: raw content, URL-encoded forms,
multipart/form-data with files (RFC 7578), and JSON.

Each encoder returns the headers the body needs and the body as a list of byte chunks.
A fixed body is one chunk with a Content-Length; an iterable given as ``content`` is
sent with ``Transfer-Encoding: chunked``, one chunk per item, so tests can exercise the
server's chunked request parsing.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import IO, Any
from urllib.parse import urlencode

from .. import jsoncodec

__all__ = ["Body", "encode_body", "primitive", "RequestContent", "RequestData", "RequestFiles"]

RequestContent = str | bytes | Iterable[bytes]
#: Form fields: a mapping or pairs; a list value repeats the field.
RequestData = Mapping[str, Any] | Sequence[tuple[str, Any]]
FileContent = bytes | str | IO[bytes] | IO[str]
#: A file: its content, or (filename, content[, content_type[, headers]]).
FileSpec = FileContent | tuple[Any, ...]
RequestFiles = Mapping[str, FileSpec] | Sequence[tuple[str, FileSpec]]

_BOUNDARY = re.compile(r"boundary=(?:\"([^\"]+)\"|([^\s;]+))", re.IGNORECASE)


@dataclass
class Body:
    """An encoded request body and the headers describing it."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    chunked: bool = False


def primitive(value: Any) -> str:
    """A query or form value as text: booleans as true/false and None as "" (httpx)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _pairs(data: RequestData) -> list[tuple[str, str]]:
    items = data.items() if isinstance(data, Mapping) else data
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((str(name), primitive(v)) for v in values)
    return pairs


def encode_body(*, content: RequestContent | None = None, data: RequestData | str | bytes |
                None = None, json: Any = None, files: RequestFiles | None = None,
                content_type: str | None = None) -> Body | None:
    """Encode whichever body argument was given (None: no body).

    ``content_type`` is the one the caller set, if any: a multipart boundary in it is
    honoured. Giving two kinds of body at once (other than ``data`` with ``files``)
    raises ``TypeError``.
    """
    form: RequestData | None = None
    if isinstance(data, (str, bytes)):  # a raw body passed as data=, as requests allows
        if content is not None:
            raise TypeError("give only one request body, not content and data")
        content = data
    else:
        form = data
    given = [n for n, v in (("content", content), ("json", json)) if v is not None]
    if form is not None or files is not None:
        given.append("data/files")
    if len(given) > 1:
        raise TypeError(f"give only one request body, not {' and '.join(given)}")
    if content is not None:
        return _encode_content(content)
    if files is not None:
        return _encode_multipart(form or (), files, content_type)
    if form is not None:
        encoded = urlencode(_pairs(form)).encode("ascii")
        return _fixed(encoded, "application/x-www-form-urlencoded")
    if json is not None:
        return _fixed(jsoncodec.dumps(json), "application/json")
    return None


def _fixed(data: bytes, content_type: str | None) -> Body:
    headers = [("content-length", str(len(data)))]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return Body(headers, [data] if data else [])


def _encode_content(content: RequestContent) -> Body:
    if isinstance(content, str):
        return _fixed(content.encode("utf-8"), None)
    if isinstance(content, (bytes, bytearray, memoryview)):
        return _fixed(bytes(content), None)
    # RFC 9112 §7.1: each chunk is its size in hex, CRLF, the data, CRLF; then 0 CRLF CRLF.
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in map(bytes, content) if part]
    chunks.append(b"0\r\n\r\n")
    return Body([("transfer-encoding", "chunked")], chunks, chunked=True)


# ------------------------------------------------------------------ multipart (RFC 7578)


def _quote(value: str) -> str:
    # WHATWG HTML "multipart/form-data encoding algorithm": escape ", CR and LF in names.
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _read(content: FileContent) -> bytes:
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    data = content.read()
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _file_part(name: str, spec: FileSpec) -> bytes:
    headers: Mapping[str, str] = {}
    if isinstance(spec, tuple):
        filename, content, content_type, headers = (*spec, None, None)[:4]
        headers = headers or {}
    else:
        content, content_type = spec, None
        filename = PurePath(str(getattr(spec, "name", "upload"))).name
    data = _read(content)
    lines = [f'Content-Disposition: form-data; name="{_quote(name)}"']
    if filename is not None:
        lines[0] += f'; filename="{_quote(str(filename))}"'
        content_type = content_type or mimetypes.guess_type(str(filename))[0] \
            or "application/octet-stream"
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{k}: {v}" for k, v in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + data


def _encode_multipart(data: RequestData, files: RequestFiles,
                      content_type: str | None) -> Body:
    match = _BOUNDARY.search(content_type or "")
    boundary = (match.group(1) or match.group(2)) if match else os.urandom(16).hex()
    parts = [(f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
              .encode() + value.encode("utf-8")) for name, value in _pairs(data)]
    items = files.items() if isinstance(files, Mapping) else files
    parts.extend(_file_part(name, spec) for name, spec in items)
    delimiter = b"--" + boundary.encode("ascii")
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts)
    body += delimiter + b"--\r\n"
    return _fixed(body, f"multipart/form-data; boundary={boundary}")
