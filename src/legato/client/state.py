"""The client's two state machines, with every allowed transition in one table each
(docs/channels.md, States). A transition the table does not list is a bug in the client
and raises ``RuntimeError`` at once instead of leaving a half-updated object."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

__all__ = ["ConnectionState", "TopicState", "StateChange", "check_connection_transition",
           "check_topic_transition"]

logger = logging.getLogger("legato.client")


class ConnectionState(str, enum.Enum):
    """Where the connection is; a ``str`` so ``client.state == "connected"`` reads well."""

    CONNECTING = "connecting"  # TCP + handshake + waiting for `welcome`
    CONNECTED = "connected"  # `welcome` received
    DISCONNECTED = "disconnected"  # no socket; a reconnect is scheduled (or connect() not called)
    CLOSED = "closed"  # close() was called, or the first connect was refused: final

    def __str__(self) -> str:
        return self.value


class TopicState(str, enum.Enum):
    JOINING = "joining"  # a join is wanted and not yet answered (also after a reconnect)
    JOINED = "joined"
    LEFT = "left"  # leave(), or the client closed: final
    FAILED = "failed"  # the server refused the join; the client does not retry: final

    def __str__(self) -> str:
        return self.value


_C = ConnectionState
_CONNECTION_TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _C.DISCONNECTED: frozenset({_C.CONNECTING, _C.CLOSED}),
    _C.CONNECTING: frozenset({_C.CONNECTED, _C.DISCONNECTED, _C.CLOSED}),
    _C.CONNECTED: frozenset({_C.DISCONNECTED, _C.CLOSED}),
    _C.CLOSED: frozenset(),
}

_T = TopicState
_TOPIC_TRANSITIONS: dict[TopicState, frozenset[TopicState]] = {
    _T.JOINING: frozenset({_T.JOINED, _T.LEFT, _T.FAILED}),
    _T.JOINED: frozenset({_T.JOINING, _T.LEFT}),
    _T.LEFT: frozenset(),
    _T.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class StateChange:
    """One connection transition; ``error`` says why a connection ended (None for a
    clean close or a change that is not an ending)."""

    state: ConnectionState
    previous: ConnectionState
    error: BaseException | None = None


def check_connection_transition(old: ConnectionState, new: ConnectionState) -> None:
    if new not in _CONNECTION_TRANSITIONS[old]:
        raise RuntimeError(f"channel client: no transition {old.value} -> {new.value}")
    logger.debug("channel connection %s -> %s", old.value, new.value)


def check_topic_transition(name: str, old: TopicState, new: TopicState) -> None:
    if new not in _TOPIC_TRANSITIONS[old]:
        raise RuntimeError(f"channel topic {name!r}: no transition {old.value} -> {new.value}")
    logger.debug("channel topic %r %s -> %s", name, old.value, new.value)
