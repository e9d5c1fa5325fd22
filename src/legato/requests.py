"""The HTTP request a handler receives (SPEC H1): the connection facts every
:class:`~legato.scope.HTTPConnection` has, plus the method, per-request state and the body.

An ASGI body can be received only once. ``body()`` (and ``json()``/``form()``, which use
it) keeps the bytes in the scope, so a before-request hook and the handler — each with
its own ``Request`` over the same scope — both read it. ``stream()`` hands chunks over
without keeping them, for bodies too large to hold; after it the body is gone.

Peer mistakes become :class:`~legato.exceptions.HTTPError` subclasses the App answers
with: ``BadRequest`` (400) for malformed JSON or forms, ``PayloadTooLarge`` (413) over
``max_body_size``. Messages never echo the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl

from . import jsoncodec
from .datastructures import FormData
from .exceptions import BadRequest, PayloadTooLarge
from .multipart import MAX_PARTS, parse_header_params, parse_multipart
from .scope import HTTPConnection

__all__ = ["Request"]

Receive = Callable[[], Awaitable[dict[str, Any]]]

_BODY = "legato.body"  # scope key: the body bytes, once read
_STREAMED = "legato.body_streamed"  # scope key: stream() took the body
_STATE = "legato.state"  # scope key: the SimpleNamespace behind Request.state
_UNSET: Any = object()
_FORM_TYPES = "application/x-www-form-urlencoded or multipart/form-data"


class Request(HTTPConnection):
    """An HTTP request. ``receive`` is the ASGI channel the body arrives on; without it
    (or on a WebSocket scope) the body is empty and every connection fact still works.

    ``max_body_size`` (bytes, None for no limit beyond the server's) is checked against
    Content-Length before anything is read, then against what arrives.
    """

    def __init__(self, scope: dict[str, Any], receive: Receive | None = None, *,
                 max_body_size: int | None = None) -> None:
        super().__init__(scope)
        self._receive = receive if scope.get("type", "http") == "http" else None
        self.max_body_size = max_body_size
        self._json: Any = _UNSET
        self._form: FormData | None = None

    @property
    def method(self) -> str:
        """Upper-case method; ``GET`` for a WebSocket handshake, which is one."""
        return str(self.scope.get("method", "GET"))

    @property
    def state(self) -> SimpleNamespace:
        """Per-request attributes that hooks set and handlers read (kept in the scope, so
        every ``Request`` over it shares them)."""
        state = self.scope.get(_STATE)
        if state is None:
            state = self.scope[_STATE] = SimpleNamespace()
        assert isinstance(state, SimpleNamespace)
        return state

    async def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, as it arrives, without keeping it.

        Yields the kept body if ``body()`` read it already. ``RuntimeError`` if another
        ``stream()`` took the body; ``PayloadTooLarge`` over the limit; ``BadRequest`` if
        the client goes away before the end of the body.
        """
        kept = self.scope.get(_BODY)
        if kept is not None:
            if kept:
                yield kept
            return
        receive = self._receive
        if receive is None:
            return
        if self.scope.get(_STREAMED):
            raise RuntimeError("the request body was already streamed; it can be read once")
        self.scope[_STREAMED] = True
        limit = self.max_body_size
        self._check_declared_length(limit)
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest(detail="the client disconnected before the end of the body")
            chunk = message.get("body", b"")
            received += len(chunk)
            if limit is not None and received > limit:
                raise _too_large(limit)
            if chunk:
                yield bytes(chunk)
            if not message.get("more_body", False):
                return

    def _check_declared_length(self, limit: int | None) -> None:
        # Refuse before reading a byte: the client said how much it will send.
        declared = self.headers.get("content-length")
        if limit is not None and declared is not None and declared.isdigit() \
                and int(declared) > limit:
            raise _too_large(limit)

    async def body(self) -> bytes:
        """The whole body (read once, then kept). See :meth:`stream` for the errors."""
        kept = self.scope.get(_BODY)
        if kept is not None:
            assert isinstance(kept, bytes)
            return kept
        if self._receive is None:
            return b""  # nothing kept: a Request with the channel may still read it
        body = b"".join([chunk async for chunk in self.stream()])
        self.scope[_BODY] = body
        return body

    async def json(self) -> Any:
        """The body parsed as JSON; ``BadRequest`` when it is empty or not JSON."""
        if self._json is _UNSET:
            body = await self.body()
            if not body:
                raise BadRequest(detail="expected a JSON body, got an empty one")
            try:
                self._json = jsoncodec.loads(body)
            except ValueError as exc:
                raise BadRequest(detail=f"the body is not valid JSON: {exc}") from None
        return self._json

    async def form(self, *, max_fields: int = MAX_PARTS) -> FormData:
        """The body as form fields: ``str`` values, :class:`UploadFile` for files.

        Accepts ``application/x-www-form-urlencoded`` and ``multipart/form-data``; any
        other Content-Type, a malformed body or more than ``max_fields`` fields raise
        ``BadRequest``.
        """
        if self._form is None:
            try:
                media_type, params = parse_header_params(self.headers.get("content-type", ""))
            except ValueError:
                raise BadRequest(detail=f"malformed Content-Type; form() accepts "
                                        f"{_FORM_TYPES}") from None
            if media_type == "application/x-www-form-urlencoded":
                self._form = _parse_urlencoded(await self.body(), max_fields)
            elif media_type == "multipart/form-data":
                boundary = params.get("boundary")
                if not boundary:
                    raise BadRequest(detail="multipart/form-data without a boundary parameter")
                try:
                    self._form = parse_multipart(await self.body(), boundary,
                                                 max_parts=max_fields)
                except ValueError as exc:
                    raise BadRequest(detail=f"malformed multipart body: {exc}") from None
            else:
                raise BadRequest(detail=f"form() accepts {_FORM_TYPES}; this request's "
                                        f"Content-Type is neither")
        return self._form

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path!r})"


def _too_large(limit: int) -> Exception:
    return PayloadTooLarge(detail=f"the request body is over the limit of {limit} bytes")


def _parse_urlencoded(body: bytes, max_fields: int) -> FormData:
    # The WHATWG urlencoded parser: '+' is a space, %XX are UTF-8 bytes. Raw UTF-8 is
    # accepted too (curl --data sends it). max_num_fields counts separators before any
    # field is decoded, so an oversized form costs no allocation.
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict", max_num_fields=max_fields)
    except UnicodeDecodeError:
        raise BadRequest(detail="the form body is not valid percent-encoded UTF-8") from None
    except ValueError:
        raise BadRequest(detail=f"more than {max_fields} form fields") from None
    return FormData(pairs)
