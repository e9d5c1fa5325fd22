"""How long to wait before reconnecting (docs/channels.md, Reconnecting).

Without advice: exponential backoff with full jitter, ``random(0, min(max, base * 2 **
attempt))``, so that clients dropped together do not come back together. With the
server's ``reconnect`` advice: ``delay + random(0, jitter)``, the server knowing best how
many clients it is about to disconnect.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]

# 2 ** 32 * base is beyond any sensible max_delay; capping the exponent keeps the float
# finite however long a server stays down.
_MAX_EXPONENT = 32


class Backoff:
    """The delay sequence of one client. ``rng`` returns a float in [0, 1)."""

    def __init__(self, base: float = 0.5, max_delay: float = 30.0,
                 rng: Callable[[], float] = random.random) -> None:
        if base <= 0 or max_delay < 0:
            raise ValueError("base_delay must be > 0 and max_delay >= 0 (seconds)")
        self.base = base
        self.max_delay = max_delay
        self.attempt = 0
        self._rng = rng

    def next_delay(self) -> float:
        """Seconds before the next attempt; each call counts one more failed attempt."""
        ceiling = min(self.max_delay, self.base * 2 ** min(self.attempt, _MAX_EXPONENT))
        self.attempt += 1
        return float(self._rng() * ceiling)

    def advised_delay(self, delay_ms: int, jitter_ms: int) -> float:
        """Seconds the server's advice asks for. It counts as an attempt, so that if the
        server is still down afterwards the backoff keeps growing."""
        self.attempt += 1
        return (delay_ms + self._rng() * jitter_ms) / 1000.0

    def reset(self) -> None:
        """A connection reached `welcome`: the next failure starts from ``base`` again."""
        self.attempt = 0
