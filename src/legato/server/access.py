"""The access log of WebSocket connections (``--access-log``, logger ``legato.access``).

HTTP responses get one line each (cycle.py). A WebSocket gets one line when it opens
and one when it ends; a denied handshake is an HTTP response and is logged as one::

    127.0.0.1:50312 - "WebSocket /chat/lobby" open subprotocol=chat.v1
    127.0.0.1:50312 - "WebSocket /chat/lobby" closed 1000 after 12.407 s, 2031 B in, 18220 B out
    127.0.0.1:50314 - "GET /chat/lobby HTTP/1.1" 403

Zero cost when the log is off: the server makes a :class:`WebSocketAccess` only when
it is on, and the per-message path never looks at it. Nothing is counted per message
either: the bytes are the kernel's own counters for the socket (Linux ``TCP_INFO``:
bytes received, and bytes sent less retransmissions plus those still queued), read when
the connection opens and when it ends, so frames the hub writes from C count too.
They are bytes on the wire since the 101: frame headers, permessage-deflate output and
TLS records included. Where ``TCP_INFO`` is not available they are logged as ``-``.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from .state import access_logger, escape_log

__all__ = ["WebSocketAccess", "socket_bytes"]

# struct tcp_info (linux/tcp.h): offsets of the counters read here, and the length a
# kernel (4.19+) returns when it has all of them.
_BYTES_RECEIVED = 128  # __u64 tcpi_bytes_received (RFC 4898 HCDataOctetsIn)
_NOTSENT_BYTES = 144  # __u32 tcpi_notsent_bytes: written, not yet sent
_BYTES_SENT = 200  # __u64 tcpi_bytes_sent (retransmissions included)
_BYTES_RETRANS = 208  # __u64 tcpi_bytes_retrans
_TCP_INFO_LENGTH = 216
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux only


def socket_bytes(transport: Any) -> tuple[int, int] | None:
    """(bytes in, bytes out) of the transport's TCP socket so far, or None where the
    kernel does not say (not Linux, not TCP, a kernel before 4.19, a closed socket)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if _TCP_INFO is None or sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_LENGTH)
    except (OSError, ValueError):
        return None
    if len(info) < _TCP_INFO_LENGTH:
        return None
    received, = struct.unpack_from("=Q", info, _BYTES_RECEIVED)
    queued, = struct.unpack_from("=I", info, _NOTSENT_BYTES)
    sent, retransmitted = struct.unpack_from("=QQ", info, _BYTES_SENT)
    return received, sent - retransmitted + queued


class WebSocketAccess:
    """The access log lines of one WebSocket connection."""

    __slots__ = ("client", "target", "request_line", "transport", "loop", "opened_at",
                 "start_bytes")

    def __init__(self, http: Any, scope: dict[str, Any], method: str, version: str) -> None:
        client = scope.get("client") or ("-", 0)
        self.client = f"{client[0]}:{client[1]}"
        target = scope.get("raw_path", b"").decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        self.target = escape_log(target)
        self.request_line = f"{escape_log(method)} {self.target} HTTP/{escape_log(version)}"
        self.transport = http.transport
        self.loop = http.loop
        self.opened_at: float | None = None
        self.start_bytes: tuple[int, int] | None = None

    def opened(self, subprotocol: str | None, response_size: int) -> None:
        """The 101 is about to be written: log the open, start the clock and the byte
        counts. Read before the write: once the 101 is out the peer may send at once,
        and what it sends must count (the counters then stand at the end of the
        request; the response is added to the bytes out)."""
        self.opened_at = self.loop.time()
        start = socket_bytes(self.transport)
        self.start_bytes = None if start is None else (start[0], start[1] + response_size)
        access_logger.info('%s - "WebSocket %s" open subprotocol=%s', self.client,
                           self.target, escape_log(subprotocol) if subprotocol else "-")

    def denied(self, response: bytes) -> None:
        """The handshake was answered with a plain HTTP response (403, 404, 400...)."""
        status = response[9:12].decode("latin-1")
        access_logger.info('%s - "%s" %s', self.client, self.request_line, status)

    def closed(self, code: int | None, reason: str) -> None:
        """The connection is gone: log its close code, duration and bytes."""
        transport, self.transport = self.transport, None  # no cycle through the log
        if self.opened_at is None:
            return  # never opened: denied (logged then) or dropped during the handshake
        duration = self.loop.time() - self.opened_at
        end, start = socket_bytes(transport), self.start_bytes
        traffic = (f"{end[0] - start[0]} B in, {end[1] - start[1]} B out"
                   if end is not None and start is not None else "- B in, - B out")
        said = f' "{escape_log(reason[:64])}"' if reason else ""
        access_logger.info('%s - "WebSocket %s" closed %s%s after %.3f s, %s', self.client,
                           self.target, code if code is not None else 1006, said, duration,
                           traffic)
