"""One joined topic: its messages, in order and once each, and its events.

Delivery (docs/channels.md, Joining, resume and epochs):

* Messages that arrive while a join is unanswered (the resume replay comes *before* the
  reply) are held, and handled when the reply says which epoch they belong to: a new
  epoch forgets the ids of the old one first, so ids that repeat across epochs (a
  restarted memory hub) are not taken for duplicates.
* Duplicates by id within an epoch are dropped, as a safety net behind the hub's own
  gap-free resume (the last :data:`DEDUP_WINDOW` ids are remembered).
* ``on_message`` callbacks see every message as it arrives. ``async for`` reads a
  bounded buffer (``receive_limit``, default 1,000): when the iterator falls that far
  behind, the **oldest** buffered message is dropped, :attr:`Topic.dropped` counts it,
  and a ``Lost(reason="overflow")`` event says so (once per overflow, until the iterator
  catches up). The reader never waits for a slow consumer: that would stall every
  topic on the connection. ``receive_limit=0`` keeps no buffer (callbacks only).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .errors import ChannelError, ServerProtocolError
from .frames import Member, Message
from .observers import Observers
from .queues import BoundedQueue, QueueClosed
from .state import TopicState, check_topic_transition

__all__ = ["Topic", "Lost", "PresenceEvent", "TopicEvent", "DEDUP_WINDOW"]

logger = logging.getLogger("legato.client")


class _Owner(Protocol):
    """What a topic asks of the client that joined it (client.Client is the one; that
    module is above this one)."""

    async def _publish(self, topic: Topic, data: Any) -> str: ...

    async def _presence(self, topic: Topic) -> list[Member]: ...

    async def _presence_count(self, topic: Topic) -> int: ...

    async def _leave(self, topic: Topic) -> None: ...

#: Ids remembered per topic to drop duplicates: far more than a reconnect can repeat
#: (a resend window), few enough to cost nothing per topic.
DEDUP_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class Lost:
    """Messages were lost, or may have been. ``reason`` is the server's (``epoch``,
    ``trimmed``, ``lost``, ``future``, ``no_history``) or the client's ``overflow``
    (the receive buffer dropped its oldest); ``first_kept`` the first id still known."""

    reason: str
    first_kept: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """Someone joined or left a topic joined on a channel with presence."""

    kind: Literal["joined", "left"]
    member: Member


TopicEvent = Lost | PresenceEvent


class Topic:
    """A topic this client joined (``await client.join(name)``); iterate it for messages.

    Attributes: ``name``; ``state`` (:class:`TopicState`); ``info`` (what the channel's
    ``on_join`` returned); ``epoch`` and ``last_id`` (where a resume starts); ``lost``
    (the last join's loss, or None); ``dropped`` (messages the receive buffer dropped).
    """

    def __init__(self, client: _Owner, name: str, data: Any, since: str | None,
                 receive_limit: int) -> None:
        self._client = client
        self.name = name
        self.join_data = data
        self.state = TopicState.JOINING
        self.info: Any = None
        self.epoch: str | None = None
        self.last_id: str | None = since
        self.resumed = False
        self.lost: Lost | None = None
        self.dropped = 0
        self.error: ChannelError | None = None  # why the join was refused
        self._queue: BoundedQueue[Message] | None = (
            BoundedQueue(receive_limit) if receive_limit > 0 else None)
        self._overflowing = False
        self._on_message: Observers[Message] = Observers()
        self._events: Observers[TopicEvent] = Observers()
        self._held: list[Message] = []
        self._seen: set[str] = set()
        self._seen_order: deque[str] = deque()
        #: The connection (Client._generation) the last join was sent on.
        self.sent_on = -1
        self.first_join: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first_join.add_done_callback(_retrieve)

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} {self.state.value}>"

    # ------------------------------------------------------------------ public API

    def __aiter__(self) -> AsyncIterator[Message]:
        return self.messages()

    async def messages(self) -> AsyncIterator[Message]:
        """Messages in order, once each, until the topic is left or the client closed;
        raises the join's ``ChannelError`` if a rejoin was refused."""
        queue = self._queue
        if queue is None:
            raise RuntimeError(f"{self.name!r} was joined with receive_limit=0: "
                               "use on_message()")
        while True:
            if not len(queue):
                self._overflowing = False
            try:
                message = await queue.get()
            except QueueClosed:
                return
            yield message

    def on_message(self, callback: Callable[[Message], Any]) -> Callable[[], None]:
        """Call ``callback(message)`` for every message; returns the unsubscribe function."""
        return self._on_message.add(callback)

    def on_lost(self, callback: Callable[[Lost], Any]) -> Callable[[], None]:
        """Call ``callback(lost)`` when a (re)join reports lost messages (``reply.data.lost``
        non-null) or the receive buffer overflows."""
        return self._events.add(lambda e: callback(e) if isinstance(e, Lost) else None)

    def on_presence(self, callback: Callable[[PresenceEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every member that joins or leaves."""
        return self._events.add(
            lambda e: callback(e) if isinstance(e, PresenceEvent) else None)

    def events(self) -> AsyncIterator[TopicEvent]:
        """``Lost`` and ``PresenceEvent`` events from now on, until the topic ends."""
        return self._events.stream()

    async def publish(self, data: Any) -> str:
        """Publish ``data``; return its message id once the server acknowledged it.

        Sets ``once`` itself and resends with the same one after a reconnect, so a
        publish is delivered once even if its ack was lost. Raises ``ChannelError``
        (``forbidden``, ``invalid``, ``queue_full``, ``closed``...); ``TypeError`` for
        data JSON cannot express.
        """
        return await self._client._publish(self, data)

    async def presence(self) -> list[Member]:
        """Who is on the topic now (a channel with presence)."""
        return await self._client._presence(self)

    async def presence_count(self) -> int:
        """How many are on the topic now, without the list (cheap for a big room)."""
        return await self._client._presence_count(self)

    async def leave(self) -> None:
        """Leave: no more messages, iterators end, no rejoin after a reconnect."""
        await self._client._leave(self)

    # ------------------------------------------------------- driven by the client

    def set_state(self, state: TopicState) -> None:
        check_topic_transition(self.name, self.state, state)
        self.state = state

    def receive(self, message: Message) -> None:
        if self.state is TopicState.JOINED:
            self._deliver(message)
        elif self.state is TopicState.JOINING:
            self._held.append(message)

    def presence_changed(self, event: PresenceEvent) -> None:
        if self.state is TopicState.JOINED or self.state is TopicState.JOINING:
            self._events.emit(event)

    def join_answered(self, data: Any) -> None:
        """The (re)join's reply: apply the epoch, report a loss, deliver what was held."""
        if self.state is not TopicState.JOINING:
            return  # left while the join was in flight
        if not isinstance(data, dict) or not isinstance(data.get("epoch"), str):
            raise ServerProtocolError(f"the reply to joining {self.name!r} lacks a string "
                                      "'epoch'", frame=repr(data))
        lost = _parse_lost(self.name, data.get("lost"))
        epoch = data["epoch"]
        if (self.epoch is not None and epoch != self.epoch) or \
                (lost is not None and lost.reason == "epoch"):
            self._seen.clear()
            self._seen_order.clear()
        self.epoch = epoch
        self.resumed = data.get("resumed") is True
        self.info = data.get("info")
        last = data.get("last")  # not in legato.v1 yet: a resume point before any message
        if self.last_id is None and isinstance(last, str):
            self.last_id = last
        self.lost = lost
        self.set_state(TopicState.JOINED)
        if lost is not None:
            logger.info("channel topic %r: messages lost (%s)", self.name, lost.reason)
            self._events.emit(lost)
        held, self._held = self._held, []
        for message in held:
            self._deliver(message)
        if not self.first_join.done():
            self.first_join.set_result(None)

    def lost_while_joined(self, reason: str, epoch: str) -> None:
        """The server's ``lost`` frame: keep the new epoch (the ids seen before belong to
        a history that is gone) and report the loss."""
        if self.state is not TopicState.JOINED:
            return
        if epoch != self.epoch:
            self.epoch = epoch
            self._seen.clear()
            self._seen_order.clear()
            self.last_id = None
        lost = Lost(reason, None)
        self.lost = lost
        logger.info("channel topic %r: messages lost (%s)", self.name, reason)
        self._events.emit(lost)

    def join_refused(self, error: ChannelError) -> None:
        """The server refused the (re)join: final (the client does not retry)."""
        if self.state is not TopicState.JOINING:
            return
        self.error = error
        self.set_state(TopicState.FAILED)
        self._end(error)
        if not self.first_join.done():
            self.first_join.set_exception(error)

    def connection_lost(self) -> None:
        if self.state is TopicState.JOINED:
            self.set_state(TopicState.JOINING)

    def ended(self, error: ChannelError | None = None) -> None:
        """Left, or the client closed: end the iterators after what they buffered."""
        if self.state is TopicState.JOINING or self.state is TopicState.JOINED:
            self.set_state(TopicState.LEFT)
        self._end(None)
        if not self.first_join.done() and error is not None:
            self.first_join.set_exception(error)

    # ------------------------------------------------------------------ delivery

    def _deliver(self, message: Message) -> None:
        seen = self._seen
        if message.id in seen:
            logger.debug("channel topic %r: duplicate %s dropped", self.name, message.id)
            return
        seen.add(message.id)
        order = self._seen_order
        order.append(message.id)
        if len(order) > DEDUP_WINDOW:
            seen.discard(order.popleft())
        self.last_id = message.id
        self._on_message.emit(message)
        if self._queue is not None and self._queue.put(message) is not None:
            self.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logger.warning("channel topic %r: receive buffer full (%d), dropping the "
                               "oldest messages", self.name, self._queue.limit)
                self._events.emit(Lost("overflow", None))

    def _end(self, error: ChannelError | None) -> None:
        self._held.clear()
        if self._queue is not None:
            self._queue.close(error)
        self._events.close()
        self._on_message.close()


def _parse_lost(name: str, value: Any) -> Lost | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("reason"), str):
        raise ServerProtocolError(f"the reply to joining {name!r} has a 'lost' that is not "
                                  'null or {"reason": ...}', frame=repr(value))
    first_kept = value.get("first_kept")
    return Lost(value["reason"], first_kept if isinstance(first_kept, str) else None)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a join nobody awaits any more must not log "never retrieved"
