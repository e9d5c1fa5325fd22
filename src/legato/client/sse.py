"""The fallback transport, client side (docs/channels.md, "SSE down, POST up").

:class:`SseConnection` offers the client what it uses of a :class:`~.transport.WebSocket`
(``send``, ``receive``, ``last_received``, ``close_code``, ``fail``, ``start_close``,
``abort``) over two HTTP/1.1 connections:

* a ``GET {base}/sse`` whose body is the event stream: one frame per event, ``id:``
  ``<conn>.<seq>``; the first is ``welcome`` with the ``token`` the POSTs carry. A
  ``{"t": "close", "code": ...}`` event is the server closing the connection (the
  WebSocket's Close frame): it ends :meth:`~SseConnection.receive`, it is not handed on.
* ``POST {base}/send?conn=<conn>`` with ``X-Legato-Token``: what :meth:`send` queued
  while the previous POST was out goes in the next one, up to 100 frames (the server's
  limit), in order, on one kept-alive connection.

Resume: when the stream is cut (no ``close`` event, no POST failed, the client did not
close it) the connection is :attr:`~SseConnection.resumable`: the server keeps it for
30 s, and a GET with ``Last-Event-ID`` gets every frame after it, without a new
``welcome``. The GET's answer does not say whether it resumed, so the client POSTs a
``ping`` on the old connection at once: a resumed stream brings the ``pong`` (or what it
had kept), a new one starts with ``welcome``. A POST that fails ends the connection for
good: whether its frames arrived is unknown, so the client reconnects afresh (publishes
are resent with their ``once``, calls fail with ``disconnected``, as over a WebSocket).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .. import jsoncodec
from .errors import ConnectError, ServerProtocolError
from .eventstream import EventStreamError, EventStreamParser
from .frames import CLOSE_INVALID_PAYLOAD
from .http import HttpConnection, HttpFailure
from .transport import MAX_REFUSAL_BODY, _target

__all__ = ["SseConnection", "SseResume", "sse_base", "RESUME_WITHIN"]

logger = logging.getLogger("legato.client")

#: The server keeps a cut stream's connection 30 s (its ``linger``); the client tries to
#: resume within 25 s of the cut, so that a slow answer does not race the expiry.
RESUME_WITHIN = 25.0
#: Frames in one POST: the server's limit (docs/channels.md).
MAX_BATCH = 100
#: A 202's body is ``{}``; an error's is a short message.
MAX_POST_ANSWER = 4096


@dataclass(frozen=True, slots=True)
class SseResume:
    """What a stream needs to come back: the connection, its secret, the last event id,
    and the loop time after which the server will have forgotten it."""

    conn: str
    token: str
    last_event_id: str
    deadline: float


#: Close POSTs on their way (kept referenced until done).
_CLOSING: set[asyncio.Task[None]] = set()


def sse_base(url: str) -> tuple[str, str, int, str, bool]:
    """(host, Host header, port, base path, tls) of a ws:// or wss:// channel URL:
    ``ws://h/_legato/ws`` gives the base ``/_legato`` (the SSE paths are beside ``ws``)."""
    host, host_header, port, target, tls = _target(url)
    path = target.partition("?")[0].rstrip("/")
    if path.endswith("/ws"):
        path = path[:-3]
    return host, host_header, port, path, tls


class SseConnection:
    """One legato.v1 connection over SSE + POST (see the module docstring)."""

    kind = "sse"

    def __init__(self, stream: HttpConnection, url: str, headers: Sequence[tuple[str, str]],
                 ssl: _ssl.SSLContext | None, max_message_size: int | None) -> None:
        self._stream = stream
        self._host, _, self._port, self._base, _ = sse_base(url)
        self._headers = list(headers)
        self._ssl = ssl
        self._parser = EventStreamParser() if max_message_size is None else \
            EventStreamParser(max_message_size + 64 * 1024)
        self._texts: deque[str] = deque()
        self._outbox: deque[str] = deque()
        self._poster: HttpConnection | None = None
        self._sender: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._ended = False
        self._resumable = True
        self._closing_sent = False
        self.conn: str | None = None
        self.token: str | None = None
        #: True when this stream continued an earlier one (no welcome).
        self.resumed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.failure: ServerProtocolError | None = None

    # ---------------------------------------------------------------- opening

    @classmethod
    async def connect(cls, url: str, *, headers: Sequence[tuple[str, str]] = (),
                      origin: str | None = None, ssl: _ssl.SSLContext | None = None,
                      max_message_size: int | None = None,
                      resume: SseResume | None = None) -> SseConnection:
        """GET the stream and read its first event.

        Raises ``ConnectError``: ``permanent`` for a 4xx (except 408/429) or an answer
        that is not an event stream, retryable otherwise. The caller bounds the time.
        """
        host, host_header, port, base, tls = sse_base(url)
        context = ssl if ssl is not None else (_ssl.create_default_context() if tls else None)
        extra = [*headers, *([("Origin", origin)] if origin else [])]
        try:
            stream = await HttpConnection.open(host, port, host_header, context)
        except OSError as exc:
            raise ConnectError(f"cannot reach {host}:{port}: {exc}", permanent=False,
                               reached=False) from exc
        self = cls(stream, url, extra, context, max_message_size)
        try:
            await self._open(base, resume)
        except BaseException:
            self.abort()
            raise
        return self

    async def _open(self, base: str, resume: SseResume | None) -> None:
        fields = [("Accept", "text/event-stream"), ("Cache-Control", "no-cache"),
                  *self._headers]
        if resume is not None:
            # The token proves the resume is ours (the server asks for it).
            fields += [("Last-Event-ID", resume.last_event_id),
                       ("X-Legato-Token", resume.token)]
        try:
            response = await self._stream.request("GET", f"{base}/sse", fields)
            if response.status != 200:
                body = await self._stream.read_body(MAX_REFUSAL_BODY)
                permanent = 400 <= response.status < 500 and response.status not in (408, 429)
                raise ConnectError(f"the server refused the SSE stream with HTTP "
                                   f"{response.status}", permanent=permanent,
                                   status=response.status, body=body)
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise ConnectError(f"GET {base}/sse answered {kind or 'no content type'}, "
                                   "not text/event-stream (is this a channels endpoint?)",
                                   permanent=True)
            if resume is not None:  # so that a resumed stream says so at once
                self._probe = asyncio.ensure_future(self._ping(resume))
            await self._first_event(resume)
        except HttpFailure as exc:
            raise ConnectError(f"the SSE stream broke while opening: {exc}",
                               permanent=False) from exc

    async def _first_event(self, resume: SseResume | None) -> None:
        while not self._texts:
            if self._ended:
                raise ConnectError(f"the SSE stream ended before its first frame "
                                   f"({self.close_code} {self.close_reason})".rstrip(),
                                   permanent=False)
            await self._fill(raise_cut=True)
        first = self._texts[0]
        frame = _loads(first)
        if frame is not None and frame.get("t") == "welcome":
            conn, token = frame.get("conn"), frame.get("token")
            if not isinstance(conn, str) or not isinstance(token, str):
                raise ConnectError("the SSE welcome lacks a string 'conn' and 'token'",
                                   permanent=False)
            self.conn, self.token, self.resumed = conn, token, False
        elif resume is not None:
            self.conn, self.token, self.resumed = resume.conn, resume.token, True

    async def _ping(self, resume: SseResume) -> None:
        """One ``ping`` POSTed on the connection being resumed, on a connection of its
        own: if the server no longer has it (404, or lost in the hub) the new stream
        starts with ``welcome`` anyway, so the answer does not matter."""
        await self._post_alone(resume.conn, resume.token, b'{"t":"ping"}')

    async def _post_alone(self, conn: str, token: str, body: bytes) -> None:
        """POST one body on an HTTP connection of its own; failures only logged."""
        http = None
        try:
            http = await HttpConnection.open(self._host, self._port,
                                             self._stream.host_header, self._ssl)
            await http.request("POST", self._send_target(conn),
                               self._post_fields(token), body)
            await http.read_body(MAX_POST_ANSWER)
        except (OSError, HttpFailure) as exc:
            logger.debug("channel client: a POST of its own failed: %s", exc)
        finally:
            if http is not None:
                http.close()

    def _send_target(self, conn: str) -> str:
        return f"{self._base}/send?conn={quote(conn, safe='')}"

    def _post_fields(self, token: str) -> list[tuple[str, str]]:
        return [("X-Legato-Token", token), ("Content-Type", "application/json"),
                *self._headers]

    # ---------------------------------------------------------------- down

    @property
    def last_received(self) -> float:
        return self._stream.last_received

    @property
    def resumable(self) -> bool:
        """The stream was cut (not closed by either side, no POST failed): a GET with
        Last-Event-ID may continue the connection."""
        return (self._resumable and self.conn is not None and self.token is not None
                and bool(self._parser.last_id))

    def resume_info(self, deadline: float) -> SseResume:
        assert self.conn is not None and self.token is not None
        return SseResume(self.conn, self.token, self._parser.last_id, deadline)

    async def receive(self) -> str | None:
        """The next frame, None once the stream has ended (``close_code`` says how:
        the ``close`` event's code, 1006 for a cut); a stream that is not a valid event
        stream raises ``ServerProtocolError`` once."""
        while True:
            if self._texts:
                return self._texts.popleft()
            if self.failure is not None:
                failure, self.failure = self.failure, None
                raise failure
            if self._ended:
                return None
            await self._fill()

    async def _fill(self, raise_cut: bool = False) -> None:
        try:
            piece = await self._stream.chunk()
        except HttpFailure as exc:
            if raise_cut:
                raise
            piece = None
            logger.debug("channel client: SSE stream cut: %s", exc)
        if piece is None:
            self._end(1006, "")
            return
        try:
            events = self._parser.feed(piece)
        except EventStreamError as exc:
            self._resumable = False
            self.failure = ServerProtocolError(str(exc), close_code=CLOSE_INVALID_PAYLOAD)
            self._end(CLOSE_INVALID_PAYLOAD, "invalid event stream")
            self.abort()
            return
        for event in events:
            if '"close"' in event.data[:40]:
                frame = _loads(event.data)
                if frame is not None and frame.get("t") == "close":
                    code, reason = frame.get("code"), frame.get("reason")
                    self._resumable = False
                    self._end(code if isinstance(code, int) else 1006,
                              reason if isinstance(reason, str) else "")
                    self.abort()
                    return
            self._texts.append(event.data)

    def _end(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._ended = True

    # ---------------------------------------------------------------- up

    def send(self, text: str) -> bool:
        """Queue a frame for the next POST; False once the connection has ended."""
        if self._ended or self.conn is None:
            return False
        self._outbox.append(text)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._post_loop())
        return True

    async def _post_loop(self) -> None:
        while self._outbox and not self._ended:
            count = min(len(self._outbox), MAX_BATCH)
            batch = [self._outbox.popleft() for _ in range(count)]
            body = batch[0] if count == 1 else "[" + ",".join(batch) + "]"
            try:
                await self._post(body.encode())
            except (HttpFailure, OSError) as exc:
                logger.info("channel client: a POST of %d frame(s) failed (%s); the "
                            "connection is dropped", count, exc)
                self._resumable = False
                self._end(1006, "")
                self.abort()
                return

    async def _post(self, body: bytes) -> None:
        assert self.conn is not None and self.token is not None
        target, fields = self._send_target(self.conn), self._post_fields(self.token)
        for _ in range(2):
            http, reused = self._poster, True
            if http is None or not http.reusable:
                if http is not None:
                    http.close()
                http = self._poster = await HttpConnection.open(
                    self._host, self._port, self._stream.host_header, self._ssl)
                reused = False
            try:
                response = await http.request("POST", target, fields, body)
                answer = await http.read_body(MAX_POST_ANSWER)
            except HttpFailure as exc:
                http.abort()
                self._poster = None
                if reused and not exc.answered and b'"t":"call"' not in body:
                    # The server had closed the idle connection: send again. Not with a
                    # call in it: the server may have run it (its outcome is unknown,
                    # as after any drop); the rest is safe to repeat (publishes carry
                    # their once key).
                    continue
                raise
            if response.status != 202:
                raise HttpFailure(f"POST {target} answered {response.status}: "
                                  f"{answer[:200].decode('utf-8', 'replace')}")
            return

    # ---------------------------------------------------------------- ending

    def fail(self, code: int, reason: str) -> None:
        """The server misbehaved: drop both connections (no close frame goes up over
        POST; the server forgets the connection after its linger)."""
        self._texts.clear()
        self._resumable = False
        self._end(code, reason)
        self.abort()

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """``close()``: ``{"t": "close"}`` goes up (the server ends the connection and
        its presence now, not after its linger), then the stream is dropped."""
        if self.conn is not None and self.token is not None and not self._closing_sent:
            self._closing_sent = True
            task = asyncio.get_running_loop().create_task(
                self._post_alone(self.conn, self.token, b'[{"t":"close"}]'))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)
        self._resumable = False
        self._end(code, reason)
        self.abort()

    def abort(self) -> None:
        """Drop both connections now. A dead stream stays :attr:`resumable`, unless
        frames were still waiting to go up or a POST was out: whether those reached the
        server is unknown, so the connection must start afresh."""
        self._ended = True
        if self.close_code is None:
            self.close_code = 1006
        sender = self._sender
        if self._outbox or (sender is not None and not sender.done()):
            self._resumable = False
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
        if self._probe is not None:
            self._probe.cancel()
        self._stream.abort()
        if self._poster is not None:
            self._poster.abort()
            self._poster = None


def _loads(text: str) -> dict[str, Any] | None:
    try:
        obj = jsoncodec.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
