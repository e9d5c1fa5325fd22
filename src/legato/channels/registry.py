"""What the App declares: channels (topic patterns with their hooks) and rpc handlers.

A channel pattern is a topic with placeholders: ``room:{id}`` matches ``room:lobby``
(``id="lobby"``); a placeholder matches one segment without ``:``, ``{rest:path}``
matches the rest. Placeholder values reach the hooks as path parameters do in routes
(by name, converted to the annotation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from ..typed import validator_for

__all__ = ["Channel", "Rpc", "Registry", "TopicPattern"]

F = TypeVar("F", bound=Callable[..., Any])

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|path))?\}")
#: A topic a client may name: printable, no control characters, bounded.
_TOPIC = re.compile(r"[^\x00-\x1f\x7f]{1,200}\Z")


def valid_topic(topic: object) -> bool:
    return isinstance(topic, str) and _TOPIC.match(topic) is not None \
        and not topic.startswith("~")


class TopicPattern:
    """A compiled channel pattern; :meth:`match` gives the placeholders' raw values."""

    __slots__ = ("pattern", "regex", "names")

    def __init__(self, pattern: str) -> None:
        if not pattern or pattern.startswith("~"):
            raise ValueError(f"a channel pattern is a non-empty topic, not {pattern!r}")
        self.pattern = pattern
        self.names: list[str] = []
        regex, pos = "", 0
        for m in _PLACEHOLDER.finditer(pattern):
            name = m.group(1)
            if name in self.names:
                raise ValueError(f"placeholder {name!r} appears twice in {pattern!r}")
            regex += re.escape(pattern[pos:m.start()])
            regex += f"(?P<{name}>.+)" if m.group(2) == "path" else f"(?P<{name}>[^:]+)"
            self.names.append(name)
            pos = m.end()
        regex += re.escape(pattern[pos:])
        self.regex = re.compile(regex + r"\Z")

    def match(self, topic: str) -> dict[str, str] | None:
        m = self.regex.match(topic)
        return m.groupdict() if m is not None else None


class Channel:
    """One declared channel: ``app.channel("room:{id}", ...)``; decorate hooks on it.

    ``message``: a pydantic model or dataclass every publish must validate against.
    ``history``: messages kept per topic (resume, P5); ``presence``: list joined members
    (True: with the join's ``data``; a callable: what it returns).
    """

    def __init__(self, pattern: str, *, message: Any = None, history: int | None = None,
                 presence: bool | Callable[..., Any] = False, summary: str | None = None
                 ) -> None:
        if history is not None and history < 0:
            raise ValueError("history must be >= 0")
        self.topic = TopicPattern(pattern)
        self.pattern = pattern
        self.message = message
        self.validate: Callable[[Any], Any] | None = \
            validator_for(message) if message is not None else None
        self.history = history
        self.presence = presence
        self.summary = summary
        self.authorizer: Callable[..., Any] | None = None
        self.join_hook: Callable[..., Any] | None = None
        self.publish_hook: Callable[..., Any] | None = None

    def authorize(self, func: F) -> F:
        """``func(action, ...) -> bool``: may this connection ``"join"`` / ``"publish"``?
        False (or raising ``HTTPError(403)``) refuses with ``forbidden``."""
        self.authorizer = func
        return func

    def on_join(self, func: F) -> F:
        """Runs at each join once authorized; what it returns is the reply's ``info``."""
        self.join_hook = func
        return func

    def on_publish(self, func: F) -> F:
        """Runs before each publish with ``message`` (validated): return a new value to
        publish it instead, None to publish as is, False to refuse."""
        self.publish_hook = func
        return func

    def __repr__(self) -> str:
        return f"<Channel {self.pattern!r}>"


class Rpc:
    """A handler clients ``call`` by name."""

    def __init__(self, name: str, func: Callable[..., Any], summary: str | None) -> None:
        self.name = name
        self.func = func
        self.summary = summary or (func.__doc__ or "").strip().split("\n")[0] or None


class Registry:
    """The App's channels and rpc handlers."""

    def __init__(self) -> None:
        self.channels: list[Channel] = []
        self.rpcs: dict[str, Rpc] = {}

    def add_channel(self, channel: Channel) -> None:
        if any(c.pattern == channel.pattern for c in self.channels):
            raise ValueError(f"channel {channel.pattern!r} is declared twice")
        self.channels.append(channel)

    def add_rpc(self, rpc: Rpc) -> None:
        if not rpc.name or rpc.name in self.rpcs:
            raise ValueError(f"rpc {rpc.name!r} is empty or declared twice")
        self.rpcs[rpc.name] = rpc

    def match(self, topic: str) -> tuple[Channel, dict[str, str]] | None:
        """The first declared channel whose pattern matches ``topic``."""
        for channel in self.channels:
            params = channel.topic.match(topic)
            if params is not None:
                return channel, params
        return None

    def __bool__(self) -> bool:
        return bool(self.channels or self.rpcs)
