"""HTTP responses as ASGI apps: ``await response(scope, receive, send)`` sends one.

They work under any ASGI server, so they do not lean on the built-in one for HTTP rules
it would also enforce: a HEAD answer carries the headers and Content-Length of the GET
answer but no body (RFC 9110 §9.3.2), and 1xx, 204 and 304 answers carry neither a body
nor Content-Type/Content-Length (RFC 9110 §6.4.1).

:func:`to_response` turns what a handler returns into a response (SPEC H2);
:func:`error_response` and :func:`server_error_response` answer for exceptions (H6).
File serving (validators, conditional requests, byte ranges) lives in
:class:`FileResponse`.
"""

from __future__ import annotations

import asyncio
import html
import mimetypes
import os
import re
import time
import traceback
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from . import jsoncodec
from .datastructures import Headers, MutableHeaders, format_set_cookie
from .exceptions import HTTPError

__all__ = [
    "Response",
    "HTMLResponse",
    "PlainTextResponse",
    "JSONResponse",
    "RedirectResponse",
    "StreamingResponse",
    "FileResponse",
    "to_response",
    "error_response",
    "server_error_response",
    "traceback_text",
]

Scope = dict[str, Any]
Receive = Any  # async () -> message; kept loose so any ASGI server's callables fit
Send = Any
HeadersInit = Mapping[str, str] | Iterable[tuple[str, str]] | None


def _has_no_body(status: int) -> bool:
    # RFC 9110 §6.4.1: 1xx, 204 and 304 responses never carry content.
    return status < 200 or status in (204, 304)


def _start_message(status: int, headers: MutableHeaders, length: int | None) -> dict[str, Any]:
    """The ``http.response.start`` message; ``length`` replaces any Content-Length set
    by hand, since the body we send is what the framing must describe."""
    fields = headers.encoded()
    if _has_no_body(status):
        fields = [(k, v) for k, v in fields
                  if k not in (b"content-length", b"content-type")]
    elif length is not None:
        fields = [(k, v) for k, v in fields if k != b"content-length"]
        fields.append((b"content-length", b"%d" % length))
    return {"type": "http.response.start", "status": status, "headers": fields}


class Response:
    """A response whose body is known up front (``str`` or ``bytes``).

    ``headers`` is mutable (``response.headers["x-a"] = "b"``); values with CR, LF or NUL
    raise ``ValueError`` when set. Content-Length is computed when the response is sent.
    """

    media_type: str | None = None
    charset = "utf-8"

    def __init__(self, content: Any = None, status_code: int = 200,
                 headers: HeadersInit = None, media_type: str | None = None) -> None:
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.body = self.render(content)
        self.headers = MutableHeaders(headers)
        content_type = self._content_type()
        if content_type is not None and "content-type" not in self.headers:
            self.headers["content-type"] = content_type

    def render(self, content: Any) -> bytes:
        """Content → body bytes; subclasses override it to encode other types."""
        if content is None:
            return b""
        if isinstance(content, (bytes, bytearray, memoryview)):
            return bytes(content)
        if isinstance(content, str):
            return content.encode(self.charset)
        raise TypeError(f"{type(self).__name__} content must be str or bytes, not "
                        f"{type(content).__name__} (JSONResponse encodes dicts and lists)")

    def _content_type(self) -> str | None:
        media_type = self.media_type
        if media_type is None:
            return None
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            return f"{media_type}; charset={self.charset}"
        return media_type

    def set_cookie(self, key: str, value: str = "", max_age: int | None = None,
                   expires: Any = None, path: str | None = "/", domain: str | None = None,
                   secure: bool = False, httponly: bool = False,
                   samesite: str | None = "lax") -> None:
        """Add a ``Set-Cookie`` line (one per cookie, RFC 6265 §3). ``expires`` is a
        datetime, seconds from now, or an HTTP date. ``ValueError`` for a bad name."""
        self.headers.append("set-cookie", format_set_cookie(
            key, value, max_age=max_age, expires=expires, path=path, domain=domain,
            secure=secure, httponly=httponly, samesite=samesite))

    def delete_cookie(self, key: str, path: str | None = "/", domain: str | None = None,
                      secure: bool = False, httponly: bool = False,
                      samesite: str | None = "lax") -> None:
        """Expire a cookie. ``path`` and ``domain`` must be those it was set with, or the
        browser keeps it (RFC 6265 §5.3 step 11 matches on name, domain and path)."""
        self.set_cookie(key, "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT",
                        path=path, domain=domain, secure=secure, httponly=httponly,
                        samesite=samesite)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(_start_message(self.status_code, self.headers, len(self.body)))
        bodyless = scope.get("method") == "HEAD" or _has_no_body(self.status_code)
        await send({"type": "http.response.body", "body": b"" if bodyless else self.body})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code})"


class HTMLResponse(Response):
    media_type = "text/html"


class PlainTextResponse(Response):
    media_type = "text/plain"


class JSONResponse(Response):
    """Any value :mod:`legato.jsoncodec` encodes (``None`` becomes ``null``); values JSON
    cannot express raise ``TypeError``. RFC 8259 §11 defines no charset parameter."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content)


#: Characters left as they are in a Location: the reserved set of RFC 3986 §2.2, the
#: unreserved marks and '%' (so an already-encoded URL stays as it was). Everything else,
#: CR, LF, NUL, spaces and non-ASCII included, is percent-encoded as UTF-8.
_URL_SAFE = ":/?#[]@!$&'()*+,;=-._~%"


class RedirectResponse(Response):
    """Redirect to ``url``; 307 keeps the method and body (RFC 9110 §15.4.8), use 303 to
    turn a POST into a GET."""

    def __init__(self, url: str, status_code: int = 307, headers: HeadersInit = None) -> None:
        super().__init__(None, status_code, headers)
        self.headers["location"] = quote(str(url), safe=_URL_SAFE)


ChunkSource = AsyncIterable[str | bytes] | Iterable[str | bytes]


class StreamingResponse(Response):
    """A body produced chunk by chunk; without a Content-Length header the server frames
    it with chunked encoding (RFC 9112 §7.1).

    An async iterable is iterated on the event loop; a list or tuple too; any other
    iterable (a sync generator, usually wrapping blocking I/O) is advanced in a worker
    thread so it cannot stall every connection. When the client disconnects the iteration
    is cancelled and the async generator closed, so endless streams (server-sent events)
    end with their reader. ``media_type=None`` sends no Content-Type.
    """

    def __init__(self, content: ChunkSource, status_code: int = 200,
                 headers: HeadersInit = None, media_type: str | None = None) -> None:
        super().__init__(None, status_code, headers, media_type)
        if isinstance(content, (str, bytes, bytearray, memoryview)):
            # One chunk, not one chunk per character or byte.
            self.body_iterator: ChunkSource = (bytes(content) if not isinstance(content, str)
                                               else content,)
        else:
            self.body_iterator = content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(_start_message(self.status_code, self.headers, None))
        if scope.get("method") == "HEAD" or _has_no_body(self.status_code):
            await _close(self.body_iterator)
            await send({"type": "http.response.body", "body": b""})
            return
        streaming = asyncio.ensure_future(self._send_chunks(send))
        listening = asyncio.ensure_future(_until_disconnect(receive))
        try:
            await asyncio.wait((streaming, listening), return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
            streaming.cancel()  # no-op when it has finished
            await asyncio.gather(streaming, listening, return_exceptions=True)
        if not streaming.cancelled():
            streaming.result()  # re-raises what the iteration raised

    async def _send_chunks(self, send: Send) -> None:
        chunks = _iterate(self.body_iterator)
        try:
            async for chunk in chunks:
                if isinstance(chunk, str):
                    chunk = chunk.encode(self.charset)
                elif not isinstance(chunk, (bytes, bytearray, memoryview)):
                    raise TypeError(f"streamed chunks must be str or bytes, not "
                                    f"{type(chunk).__name__}")
                if chunk:  # an empty chunk would end a chunked body early
                    await send({"type": "http.response.body", "body": bytes(chunk),
                                "more_body": True})
        finally:
            await chunks.aclose()  # closes the source too, whatever stopped the loop
        await send({"type": "http.response.body", "body": b""})


_DONE = object()


async def _iterate(source: ChunkSource) -> AsyncGenerator[Any, None]:
    """Any chunk source as one async generator, which closes the source when it ends."""
    if isinstance(source, AsyncIterable):
        iterator = source.__aiter__()
        try:
            async for chunk in iterator:
                yield chunk
        finally:
            await _close(iterator)
    elif isinstance(source, (list, tuple)):
        for chunk in source:
            yield chunk
    else:
        stepper = _ThreadedIterator(source)
        try:
            while (chunk := await asyncio.to_thread(stepper.step)) is not _DONE:
                yield chunk
        finally:
            await asyncio.to_thread(stepper.close)


class _ThreadedIterator:
    """A blocking iterator advanced in worker threads. A cancelled step keeps running in
    its thread, so closing waits for it on the lock: a generator cannot be closed while
    it executes."""

    def __init__(self, source: Iterable[Any]) -> None:
        self._iterator = iter(source)
        self._lock = threading.Lock()

    def step(self) -> Any:
        with self._lock:
            return next(self._iterator, _DONE)

    def close(self) -> None:
        with self._lock:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                close()


async def _close(source: object) -> None:
    """Run the source's ``finally`` blocks now rather than whenever it is collected."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None:
        close()


async def _until_disconnect(receive: Receive) -> None:
    # Whatever body the handler left unread is drained and dropped on the way.
    while (await receive())["type"] != "http.disconnect":
        pass


# ----------------------------------------------------------------------------- files


def guess_media_type(path: str) -> str:
    """Content type from the file name. A compressed file (``.css.gz``) is sent as
    octet-stream: claiming text/css without Content-Encoding would show garbage."""
    media_type, encoding = mimetypes.guess_type(path)
    if media_type is None or encoding is not None:
        return "application/octet-stream"
    return media_type


#: RFC 8187 §3.2.1 attr-char, the bytes ``filename*`` may carry unencoded.
_ATTR_CHARS = "!#$&+-.^_`|~"
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def content_disposition(kind: str, filename: str) -> str:
    """``attachment; filename=...`` per RFC 6266 §4.3: a quoted ASCII ``filename`` for
    every client, plus ``filename*`` (RFC 8187, UTF-8) when the name is not plain ASCII."""
    if _PRINTABLE_ASCII.fullmatch(filename):
        return f'{kind}; filename="{_quote_string(filename)}"'
    fallback = "".join(c if " " <= c <= "~" else "_" for c in filename)
    encoded = quote(filename, safe=_ATTR_CHARS)
    return f"{kind}; filename=\"{_quote_string(fallback)}\"; filename*=UTF-8''{encoded}"


def _quote_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


_ETAG = re.compile(r'(?:W/)?"[^"]*"')
#: Byte positions longer than this are refused as malformed (the Range header is then
#: ignored): 20 digits exceed any file size, and int() stays cheap.
_RANGE_SPEC = re.compile(r"([0-9]{0,20})-([0-9]{0,20})")


def parse_range(value: str) -> list[tuple[int | None, int | None]] | None:
    """Parse ``Range: bytes=...`` (RFC 9110 §14.1.1) into ``(first, last)`` pairs, ``first``
    None for a suffix range. None when the header must be ignored: another unit, bad
    syntax, or last < first (§14.2 lets a server ignore a Range it cannot use)."""
    unit, sep, ranges = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs: list[tuple[int | None, int | None]] = []
    for element in ranges.split(","):
        element = element.strip(" \t")
        if not element:
            continue  # RFC 9110 §5.6.1: empty list elements are allowed
        match = _RANGE_SPEC.fullmatch(element)
        if match is None or match.group(0) == "-":
            return None
        first = int(match.group(1)) if match.group(1) else None
        last = int(match.group(2)) if match.group(2) else None
        if first is not None and last is not None and last < first:
            return None
        specs.append((first, last))
    return specs or None


def resolve_range(spec: tuple[int | None, int | None], size: int) -> tuple[int, int] | None:
    """One range against the file size → ``(start, stop)``, or None when unsatisfiable
    (RFC 9110 §14.1.1: first-pos at or past the end, or a zero suffix length)."""
    first, last = spec
    if first is None:
        assert last is not None
        return (max(0, size - last), size) if last > 0 else None
    if first >= size:
        return None
    return first, size if last is None else min(last + 1, size)


class FileResponse(Response):
    """A file, sent in 64 KiB chunks, with the validators and partial answers that let
    browsers and media players cache and seek.

    * ``ETag`` (strong, from size and mtime in ns) and ``Last-Modified``; a GET or HEAD
      whose ``If-None-Match`` or, failing that, ``If-Modified-Since`` matches gets 304
      (RFC 9110 §13.2.2 gives If-None-Match precedence).
    * One ``Range`` on a GET → 206 with Content-Range; unsatisfiable → 416 with
      ``Content-Range: bytes */size``; several ranges → the whole file (200), which
      §14.2 allows and spares a multipart/byteranges encoder. ``If-Range`` (§13.1.5) that
      no longer matches → the whole file.
    * Conditional and range handling apply only when ``status_code`` is 200.

    Every read runs in a worker thread (``asyncio.to_thread``): a read that misses the
    page cache, or hits a network file system, would otherwise stall every WebSocket on
    the loop for its duration; the thread hop costs tens of microseconds per 64 KiB.
    ``stat_result`` skips the stat when the caller (``StaticFiles``) has one. A path that
    is not a regular file raises ``RuntimeError`` when the response is sent.
    """

    chunk_size = 64 * 1024  # large enough to amortise the thread hop, small for memory

    def __init__(self, path: str | os.PathLike[str], status_code: int = 200,
                 headers: HeadersInit = None, media_type: str | None = None,
                 filename: str | None = None, *, content_disposition_type: str = "attachment",
                 stat_result: os.stat_result | None = None) -> None:
        self.path = os.fspath(path)
        self.filename = filename
        if media_type is None:
            media_type = guess_media_type(filename or self.path)
        super().__init__(None, status_code, headers, media_type)
        if filename is not None and "content-disposition" not in self.headers:
            self.headers["content-disposition"] = content_disposition(
                content_disposition_type, filename)
        self.stat_result = stat_result

    def _stat(self) -> os.stat_result:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise RuntimeError(f"FileResponse: cannot read {self.path!r}: {exc}") from None
        if not os.path.isfile(self.path):
            raise RuntimeError(f"FileResponse: {self.path!r} is not a regular file")
        return st

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        st = self.stat_result if self.stat_result is not None else \
            await asyncio.to_thread(self._stat)
        headers = MutableHeaders(self.headers.raw_items())
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        headers.setdefault("etag", etag)
        headers.setdefault("last-modified", formatdate(st.st_mtime, usegmt=True))
        headers.setdefault("accept-ranges", "bytes")
        method = scope.get("method", "GET")
        request = Headers((bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                          for n, v in scope.get("headers", ()))
        status, start, stop = self._choose(method, request, st, etag)
        if status == 206:
            headers["content-range"] = f"bytes {start}-{stop - 1}/{st.st_size}"
        elif status == 416:
            headers["content-range"] = f"bytes */{st.st_size}"
            headers.pop("content-type", None)
        await send(_start_message(status, headers, stop - start))
        if method == "HEAD" or _has_no_body(status) or start == stop:
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._send_file(send, start, stop)

    def _choose(self, method: str, request: Headers, st: os.stat_result,
                etag: str) -> tuple[int, int, int]:
        """(status, start, stop) of what to send."""
        size = st.st_size
        if self.status_code != 200 or method not in ("GET", "HEAD"):
            return self.status_code, 0, size
        if _not_modified(request, etag, st.st_mtime):
            return 304, 0, 0
        # RFC 9110 §14.2: GET is the only method range handling is defined for.
        if method != "GET" or "range" not in request or size == 0:
            return 200, 0, size
        if not _if_range_holds(request.get("if-range"), etag, st.st_mtime):
            return 200, 0, size
        specs = parse_range(request["range"])
        if specs is None or len(specs) != 1:
            return 200, 0, size
        span = resolve_range(specs[0], size)
        if span is None:
            return 416, 0, 0
        return 206, span[0], span[1]

    async def _send_file(self, send: Send, start: int, stop: int) -> None:
        file = await asyncio.to_thread(open, self.path, "rb")
        try:
            if start:
                file.seek(start)  # moves an offset, no I/O
            remaining = stop - start
            while remaining > 0:
                chunk = await asyncio.to_thread(file.read, min(self.chunk_size, remaining))
                if not chunk:
                    break  # the file shrank: the server sees a short body and closes
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": remaining > 0})
            if remaining > 0:
                await send({"type": "http.response.body", "body": b""})
        finally:
            file.close()


def _not_modified(request: Headers, etag: str, mtime: float) -> bool:
    if_none_match = request.get_all("if-none-match")
    if if_none_match:  # RFC 9110 §13.1.2: weak comparison; '*' matches any current file
        joined = ",".join(if_none_match)
        if joined.strip() == "*":
            return True
        return any(tag.removeprefix("W/") == etag for tag in _ETAG.findall(joined))
    since = _parse_http_date(request.get("if-modified-since"))
    # RFC 9110 §13.1.3: Last-Modified has one-second resolution, so compare whole seconds.
    return since is not None and int(mtime) <= since


def _if_range_holds(value: str | None, etag: str, mtime: float) -> bool:
    """RFC 9110 §13.1.5: an entity tag must match strongly, a date exactly."""
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    return _parse_http_date(value) == int(mtime)


def _parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch, or None for a missing, invalid or future date (RFC 9110
    §13.1.3: the recipient must ignore those)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    stamp = int(parsed.timestamp())
    return None if stamp > time.time() else stamp


# ------------------------------------------------------------------ handler returns


def to_response(value: object) -> Response:
    """What a handler returned → the response to send (SPEC H2).

    ``str`` → text/html; ``dict``/``list`` → JSON; ``bytes``-like → octet-stream; ``None``
    → 204; an async iterable (an async-generator handler) → a chunked stream sent as
    ``text/html; charset=utf-8``, since a handler that streams text streams a page as a
    handler returning ``str`` would (seed 001) — return a ``StreamingResponse`` to say
    otherwise. Anything else raises ``TypeError``.
    """
    if isinstance(value, Response):
        return value
    if isinstance(value, str):
        return HTMLResponse(value)
    if isinstance(value, (dict, list)):
        return JSONResponse(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Response(value, media_type="application/octet-stream")
    if value is None:
        return Response(status_code=204)
    if isinstance(value, AsyncIterable):
        return StreamingResponse(value, media_type="text/html; charset=utf-8")
    raise TypeError(f"a handler returned {type(value).__name__}; return str, bytes, a dict "
                    f"or list (JSON), None, a Response, or yield chunks from an async "
                    f"generator")


def error_response(exc: HTTPError) -> Response:
    """The answer to a raised :class:`HTTPError`: its status, its headers, and its detail
    as JSON (dict or list) or plain text."""
    response: Response
    if isinstance(exc.detail, (dict, list)):
        try:
            response = JSONResponse(exc.detail, exc.status_code)
        except TypeError:
            response = PlainTextResponse(str(exc.detail), exc.status_code)
    else:
        response = PlainTextResponse(str(exc.detail), exc.status_code)
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def traceback_text(exc: BaseException) -> str:
    """The traceback of ``exc`` as text: for ``debug=True`` pages and denials only."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def server_error_response(exc: BaseException, debug: bool) -> Response:
    """500 for an unhandled exception. The traceback is shown only with ``debug=True``
    (H6): it names files, code and values an attacker should not see."""
    if not debug:
        return PlainTextResponse("Internal Server Error", 500)
    trace = traceback_text(exc)
    summary = html.escape(f"{type(exc).__name__}: {exc}")
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<title>500 Internal Server Error</title></head>\n<body>"
            f"<h1>500 Internal Server Error</h1>\n<p>{summary}</p>\n"
            f"<pre>{html.escape(trace)}</pre>\n</body></html>\n")
    return HTMLResponse(page, 500)
