"""Which transport the next connection attempt uses (docs/channels.md, "The fallback
transport"), as a small state machine without I/O.

``transport="websocket"`` or ``"sse"``: always that one. ``"auto"`` (the default)::

    WEBSOCKET ──(refused with an HTTP status, or FALLBACK_AFTER attempts in a row that
       ▲         never reached `welcome`)──▶ SSE: every attempt over SSE, except
       │                                     each PROBE_EVERY-th, which tries the
       └────────(a WebSocket reaches `welcome`)───────── WebSocket again

An HTTP answer that is not a 101 (a proxy's 403 or 502 to the upgrade, a server without
the channels endpoint) says at once that something speaks HTTP there but not WebSocket;
attempts that reached the server but never `welcome` (an upgrade that hangs or is cut)
take FALLBACK_AFTER in a row. A TCP connect that fails (refused, no route) does not
count: the server is down or restarting, which says nothing about WebSocket vs SSE;
an SSE attempt that cannot connect either sends the client back to the WebSocket.
"""

from __future__ import annotations

import logging
from typing import Literal

from .errors import ConnectError

__all__ = ["TransportChoice", "TransportName", "FALLBACK_AFTER", "PROBE_EVERY"]

logger = logging.getLogger("legato.client")

TransportName = Literal["websocket", "sse"]
#: Consecutive WebSocket attempts without `welcome` before SSE is tried.
FALLBACK_AFTER = 2
#: Once on SSE, every 5th reconnect tries the WebSocket, so a network that heals (a
#: proxy reconfigured, a captive portal passed) goes back to the cheaper transport.
PROBE_EVERY = 5


class TransportChoice:
    """``next()`` names the transport of the next attempt; ``connected()`` and
    ``failed()`` report how it went."""

    def __init__(self, setting: str = "auto", fallback_after: int = FALLBACK_AFTER,
                 probe_every: int = PROBE_EVERY) -> None:
        if setting not in ("auto", "websocket", "sse"):
            raise ValueError(f"transport is 'auto', 'websocket' or 'sse', not {setting!r}")
        self.setting = setting
        self.fallback_after = fallback_after
        self.probe_every = probe_every
        self.fallen_back = setting == "sse"
        self._ws_failures = 0  # consecutive WebSocket attempts without welcome
        self._sse_attempts = 0  # attempts since falling back
        #: Why the WebSocket was given up (for the log and a final error).
        self.ws_error: BaseException | None = None

    def next(self) -> TransportName:
        if self.setting != "auto":
            return "sse" if self.setting == "sse" else "websocket"
        if not self.fallen_back:
            return "websocket"
        self._sse_attempts += 1
        return "websocket" if self._sse_attempts % self.probe_every == 0 else "sse"

    def connected(self, kind: TransportName) -> None:
        if kind == "websocket":
            if self.fallen_back and self.setting == "auto":
                logger.info("channel client: the WebSocket works again; leaving SSE")
            self._ws_failures = 0
            self.fallen_back = self.setting == "sse"

    def failed(self, kind: TransportName, error: BaseException) -> bool:
        """Count a failed attempt; True when the client just switched to SSE (so the
        next attempt should not wait out a backoff delay)."""
        if self.setting != "auto":
            return False
        unreached = isinstance(error, ConnectError) and not error.reached
        if kind == "sse":
            if unreached and self.fallen_back:
                # Not even TCP: the server is down (restarting), not WebSocket blocked;
                # the WebSocket is tried again first when it is back.
                self.fallen_back, self._ws_failures = False, 0
            return False
        if unreached:
            return False  # a server down says nothing about WebSocket vs SSE
        self._ws_failures += 1
        if self.fallen_back:
            return False
        answered = isinstance(error, ConnectError) and (
            error.status is not None or error.permanent)
        if answered or self._ws_failures >= self.fallback_after:
            logger.warning("channel client: the WebSocket failed (%s); falling back to "
                           "SSE + POST", error)
            self.fallen_back, self._sse_attempts, self.ws_error = True, 0, error
            return True
        return False

    def gives_up(self, kind: TransportName, error: ConnectError) -> bool:
        """Should a permanent refusal before any connection end the client? With auto,
        only SSE's: a refused WebSocket is why there is a fallback."""
        return error.permanent and (self.setting != "auto" or kind == "sse")
