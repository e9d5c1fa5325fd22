"""One WebSocket connection over asyncio streams, driven by legato's sans-I/O core.

The opening handshake is :class:`~legato.protocol.ClientHandshake` (request, then the
101 checked: accept key, subprotocol, extensions), framing is
:class:`~legato.protocol.Connection` in the client role (masking, permessage-deflate,
control frames, close). This module only moves bytes and time:

* it records when bytes last arrived (:attr:`WebSocket.last_received`) for the
  application-level heartbeat;
* a binary message fails the connection with 1003 (legato.v1 frames are text, §Frames).
"""

from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from collections import deque
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..exceptions import InvalidResponse, InvalidStatus
from ..protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    BytesMessage,
    ClientHandshake,
    CloseReceived,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    State,
    TextMessage,
)
from ..protocol.http import HeadError, find_head_end, parse_response_head
from .errors import ConnectError, ServerProtocolError
from .frames import CLOSE_UNSUPPORTED_DATA

__all__ = ["WebSocket", "SUBPROTOCOL"]

logger = logging.getLogger("legato.client")

SUBPROTOCOL = "legato.v1"
#: 64 KiB: an upgrade response head is a few hundred bytes; a refusal body is shown to a
#: person in an error message, so its first KiB is plenty (the rest is not read).
MAX_RESPONSE_HEAD = 64 * 1024
MAX_REFUSAL_BODY = 64 * 1024
_READ_SIZE = 64 * 1024


def _target(url: str) -> tuple[str, str, int, str, bool]:
    """(host to dial, Host header, port, request target, tls) of a ws:// or wss:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"a channel URL is ws://host[:port]/path or wss://..., not {url!r}")
    tls = parts.scheme == "wss"
    default_port = 443 if tls else 80
    port = parts.port or default_port
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header += f":{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, host_header, port, target, tls


class WebSocket:
    """An open WebSocket: ``send`` a text message, ``receive`` the next one (None when
    the connection has ended; then ``close_code``/``close_reason`` say how)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: Connection) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = conn
        self._texts: deque[str] = deque()
        self._ended = False
        self._loop = asyncio.get_running_loop()
        #: loop.time() when bytes last arrived: any frame, control frames included.
        self.last_received = self._loop.time()
        self.close_code: int | None = None
        self.close_reason = ""
        #: Set when the server broke RFC 6455 or sent a binary message.
        self.failure: ServerProtocolError | None = None

    # ---------------------------------------------------------------- opening

    @classmethod
    async def connect(cls, url: str, *, headers: Sequence[tuple[str, str]] = (),
                      origin: str | None = None, ssl: _ssl.SSLContext | None = None,
                      max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
                      ) -> WebSocket:
        """Open TCP (TLS for wss://), run the opening handshake offering legato.v1.

        Raises ``ConnectError``: ``permanent`` for a 4xx answer (except 408/429) or a
        server that does not select legato.v1, retryable otherwise. The caller bounds
        the time (``asyncio.wait_for``).
        """
        host, host_header, port, target, tls = _target(url)
        context = ssl if ssl is not None else (_ssl.create_default_context() if tls else None)
        handshake = ClientHandshake(host_header, target, subprotocols=[SUBPROTOCOL],
                                    origin=origin, headers=headers,
                                    max_message_size=max_message_size)
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context is not None else None)
        except OSError as exc:
            raise ConnectError(f"cannot reach {host}:{port}: {exc}", permanent=False,
                               reached=False) from exc
        try:
            writer.write(handshake.request())
            conn = await cls._read_answer(reader, handshake)
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer, conn)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        """The response head and whatever arrived behind it (frames, a refusal body)."""
        buf = b""
        while True:
            end = find_head_end(buf, MAX_RESPONSE_HEAD)  # HeadError past the limit
            if end is not None:
                return buf[:end], buf[end:]
            data = await reader.read(_READ_SIZE)
            if not data:
                raise asyncio.IncompleteReadError(buf, None)
            buf += data

    @classmethod
    async def _read_answer(cls, reader: asyncio.StreamReader, handshake: ClientHandshake
                           ) -> Connection:
        try:
            head, rest = await cls._read_head(reader)
            response = parse_response_head(head)
            if response.status_code != 101:
                length = response.headers.get("content-length") or "0"
                size = min(int(length) if length.isdigit() else 0, MAX_REFUSAL_BODY)
                if len(rest) < size:
                    rest += await reader.readexactly(size - len(rest))
                rest = rest[:size]
            result = handshake.check_response(response.status_code, response.headers, rest)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectError(f"the connection broke during the handshake: {exc!r}",
                               permanent=False) from exc
        except HeadError as exc:
            raise ConnectError(f"the server's handshake answer is not HTTP: {exc}",
                               permanent=False) from exc
        except InvalidStatus as exc:
            status = exc.status_code
            permanent = 400 <= status < 500 and status not in (408, 429)
            raise ConnectError(f"the server refused the WebSocket with HTTP {status}",
                               permanent=permanent, status=status, body=exc.body) from exc
        except InvalidResponse as exc:
            raise ConnectError(f"the server's 101 is not a valid upgrade: {exc}",
                               permanent=False) from exc
        if result.subprotocol != SUBPROTOCOL:
            raise ConnectError(f"the server did not select the {SUBPROTOCOL} subprotocol "
                               "(is this a channels endpoint?)", permanent=True)
        conn = result.connection
        if rest:  # frames the server sent right behind its 101
            conn.receive_data(rest)
        return conn

    # ---------------------------------------------------------------- I/O

    @property
    def open(self) -> bool:
        return self._conn.state is State.OPEN

    def send(self, text: str) -> bool:
        """Queue a text message for the socket; False when the connection is closing."""
        if self._conn.state is not State.OPEN or self._writer.is_closing():
            return False
        self._conn.send_text(text)
        self._writer.write(self._conn.data_to_send())
        return True

    async def receive(self) -> str | None:
        """The next text message, or None once the connection has ended.

        The messages that arrived whole before a protocol failure (RFC 6455 §7.1.7) or a
        binary message come first; then ``ServerProtocolError`` is raised once (the
        connection already failed with its code); later calls return None.
        """
        while True:
            self._process()
            if self._texts:
                return self._texts.popleft()
            if self.failure is not None:
                failure, self.failure = self.failure, None
                raise failure
            if self._ended:
                return None
            try:
                data = await self._reader.read(_READ_SIZE)
            except OSError:
                data = b""
            self.last_received = self._loop.time()
            if data:
                self._conn.receive_data(data)
            else:
                self._conn.receive_eof()

    def _process(self) -> None:
        for event in self._conn.events_received():
            if self._ended:
                continue  # nothing after a failure or a Close is read (§7.1.7, §5.5.1)
            if isinstance(event, TextMessage):
                self._texts.append(event.data)
            elif isinstance(event, BytesMessage):
                self._fail_transport(CLOSE_UNSUPPORTED_DATA, "binary message")
                self.failure = ServerProtocolError(
                    "server sent a binary message (legato.v1 frames are text)",
                    close_code=CLOSE_UNSUPPORTED_DATA)
            elif isinstance(event, (CloseReceived, ConnectionFailed)):
                self._end(event.code, event.reason)
                if isinstance(event, ConnectionFailed):
                    self.failure = ServerProtocolError(
                        f"server broke RFC 6455: {event.reason}", close_code=event.code)
            elif isinstance(event, ConnectionLost):
                self._end(1006, "")
        self._flush()

    def _end(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._ended = True

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)
        if self._conn.close_transport():
            self._writer.close()

    def fail(self, code: int, reason: str) -> None:
        """Close with ``code`` because the server misbehaved, and drop TCP at once
        (RFC 6455 §7.1.7): nothing more it sends is read."""
        self._texts.clear()
        self._fail_transport(code, reason)

    def _fail_transport(self, code: int, reason: str) -> None:
        if self._conn.state is State.OPEN:
            self._conn.send_close(code, reason)
        self._end(code, reason)
        out = self._conn.data_to_send()
        if out and not self._writer.is_closing():
            self._writer.write(out)
        self._writer.close()

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Begin the closing handshake (§7.1.2); ``receive`` returns None when the server
        has answered and closed TCP (the caller bounds that wait)."""
        if self._conn.state is State.OPEN:
            self._conn.send_close(code, reason)
            self._flush()

    def abort(self) -> None:
        """Drop TCP now, without a closing handshake (a dead or stalled peer)."""
        self._ended = True
        if self.close_code is None:
            self.close_code = 1006
        self._writer.transport.abort()
