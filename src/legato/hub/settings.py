"""What a topic is configured with: history kept, slow-consumer policy, buffer, close code.

Below both the hub (``__init__.py``, which resolves a topic's settings) and the outbox
(``outbox.py``, which applies them), so neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POLICIES", "TopicSettings"]

#: What a full subscriber buffer does (outbox.py has the details).
POLICIES = ("drop_oldest", "drop_newest", "latest", "close")


@dataclass
class TopicSettings:
    """Per topic (or topic prefix ending in ``*``): how much history to keep and what a
    full subscriber buffer does (outbox.py)."""

    history: int = 0
    policy: str = "drop_oldest"
    buffer: int = 256
    close_code: int = 1013
