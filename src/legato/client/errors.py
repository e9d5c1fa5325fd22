"""The channel client's errors: one class with the protocol's ``code`` (docs/channels.md,
Errors), so a caller handles a refused publish and a dropped connection alike.

::

    ChannelError              .code .message .details
    │                         server codes: invalid, not_found, forbidden, not_joined,
    │                         timeout, too_many, unavailable, error
    │                         client codes: disconnected, queue_full, closed, timeout
    ├── Disconnected          code "disconnected": the connection ended (.close_code,
    │                         .reason); what a state change to "disconnected" carries
    ├── ServerProtocolError   code "protocol": the server sent a frame legato.v1 does not
    │                         allow; the client closed the socket with .close_code and
    │                         reconnects (a server bug, not a condition to handle)
    └── ConnectError          code "refused" (permanent: an HTTP 4xx, no legato.v1) or
                              "unreachable" (retried): the WebSocket could not be opened
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ChannelError",
    "ServerProtocolError",
    "Disconnected",
    "ConnectError",
    "DISCONNECTED",
    "QUEUE_FULL",
    "CLOSED",
    "TIMEOUT",
    "NOT_JOINED",
    "PROTOCOL",
    "REFUSED",
    "UNREACHABLE",
]

#: A request was in flight when the connection dropped: its outcome is unknown.
DISCONNECTED = "disconnected"
#: More requests are waiting for a connection than ``queue_limit`` allows.
QUEUE_FULL = "queue_full"
#: The client was closed before the request could finish.
CLOSED = "closed"
#: No answer within the call's timeout (the server's code for its own deadline too).
TIMEOUT = "timeout"
#: The server's code, also raised by the client for a topic it has left.
NOT_JOINED = "not_joined"
PROTOCOL = "protocol"
REFUSED = "refused"
UNREACHABLE = "unreachable"


class ChannelError(Exception):
    """A request failed; ``code`` says why in a word a program can switch on."""

    def __init__(self, code: str, message: str = "", details: Any = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.details = details


class Disconnected(ChannelError):
    """The connection ended: the server closed it (``close_code`` and ``reason`` from its
    Close frame, 1006 without one) or the heartbeat found it dead."""

    def __init__(self, message: str, close_code: int = 1006, reason: str = "") -> None:
        super().__init__(DISCONNECTED, message, {"close_code": close_code, "reason": reason})
        self.close_code = close_code
        self.reason = reason


class ServerProtocolError(ChannelError):
    """The server broke legato.v1 (or RFC 6455); ``close_code`` is what we closed with.

    ``details`` holds the start of the offending frame (at most 200 characters) so the
    log line is enough to file the server bug.
    """

    def __init__(self, message: str, *, close_code: int = 1008, frame: str | None = None
                 ) -> None:
        details = None if frame is None else {"frame": frame[:200]}
        super().__init__(PROTOCOL, message, details)
        self.close_code = close_code


class ConnectError(ChannelError):
    """The WebSocket could not be opened. ``permanent`` is True when retrying cannot help
    (the server refused the handshake with a 4xx or does not speak legato.v1);
    ``status`` is the HTTP status when the server answered with one."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None,
                 body: bytes = b"", reached: bool = True) -> None:
        details: dict[str, Any] = {}
        if status is not None:
            details["status"] = status
            details["body"] = body[:1000].decode("utf-8", "replace")
        super().__init__(REFUSED if permanent else UNREACHABLE, message, details or None)
        self.permanent = permanent
        self.status = status
        #: False when not even a TCP connection was made (refused, no route): the
        #: server is down or restarting, which says nothing about WebSocket vs SSE.
        self.reached = reached
