"""The NATS backend of the hub: core NATS fans out, JetStream orders and keeps (SPEC §6).

Names (``P`` is the prefix with anything but ``[A-Za-z0-9_-]`` made ``_``; a topic is
one subject token, ``t(topic)``: ``[A-Za-z0-9_-]`` as they are, any other character as
``=XX`` per UTF-8 byte, the empty topic as ``=``)::

    stream {P}_hub         every message of every topic, subject {P}.h.{t(topic)}
    subject {P}.l.{t}      core NATS: the live copy of each stored message (fan-out)
    KV {P}_presence        key {t}.{process_id} → JSON {member: info}, n.{t}.{process_id}
                           → their number; TTL presence_ttl
    KV {P}_once            key t(claim key) → "<deadline> <value>" (claim/settle)

*Ids and order.* A publish is a JetStream publish to the topic's stream subject with
``Nats-Expected-Last-Subject-Sequence`` set to the topic's previous stream sequence, so
JetStream stores it only as the direct successor of that message: every stored message
knows its predecessor (the header stays on it), and a topic's messages form a chain.
Then the publisher sends the live copy on core NATS: ``b"<id> <prev> <keep> <data>"``.
The id is ``"<created>-<seq>"``: the stream's creation time in milliseconds and the
JetStream sequence, so ids grow within a topic, and a stream that was deleted and
created again (its history gone) gives larger ids than the old one, never equal ones.

A receiver remembers the last sequence it delivered per topic. A live copy whose
``prev`` is that sequence is delivered; one at or below it is a copy already delivered
(skipped); one whose ``prev`` is further on means copies are missing (the fan-out of
two publishers crossed on the way, the live copy was lost in a reconnection): the
topic's live copies are held while the missing messages are read from JetStream by
sequence, then delivered in order. So every process gets each message once, in id
order, whatever order core NATS brought them in.

Why not fan-out from JetStream alone (a consumer per process): a consumer is server
state per process and topic (NATS 2.9 filters one subject per consumer), and core NATS
is the fan-out path every NATS team runs. Why not let the stream's own subject be the
fan-out subject: core subscribers would get each message before it has a sequence, and
in an order that can differ from the stream's.

*Cost of the chain.* A publisher must know the predecessor, so one process's publishes
to one topic are one JetStream round trip after the other (publishes to different
topics overlap), and two processes publishing to one topic at once make one of them
try again (one more round trip, the current sequence is in JetStream's refusal). One
that loses ``_CAS_TRIES`` times appends instead (``AFTER``: a lower bound of its
predecessor) and reads what came between, so no publisher starves.

*History.* Each stored message carries ``keep`` (the topic's history, like Redis's
``k``): ``history()`` reads back from the newest message along the chain (direct gets
by sequence), at most ``keep`` of them. JetStream keeps ``max_history`` messages per
topic at most (``max_msgs_per_subject``) and each for ``history_ttl`` (``max_age``).
*Gaps* (P5) come from the chain: a message whose predecessor is no longer stored, or
more than ``keep`` messages after ``since``, is ``"trimmed"``; an id of an older stream,
or from before the topic's first message, ``"lost"``; past the newest, ``"future"``.

*Presence*: each process writes one KV value per topic it has members in, rewritten
every third of ``presence_ttl``; the bucket's TTL removes a dead process's values.

*Failures.* One NATS connection (nats-py), PINGed every ``ping_interval`` (two
unanswered: a dead or hung server). While it is down ``publish`` raises
:class:`HubUnavailable` at once, a JetStream publish unanswered within ``timeout``
raises :class:`PublishOutcomeUnknown` (it may be stored: its live copy is sent again
once NATS answers, or the next message's chain brings it). nats-py reconnects with
backoff and subscribes again; then every listened topic is refilled from JetStream
after its last delivered sequence before its live copies, and ``"reconnected"``
``{"downtime", "refilled"}`` is reported (``"disconnected"`` before, ``"gap"``
``{"topic", "after", "reason"}`` when the chain is broken: trimmed, or a stream gone).

States (all transitions in :meth:`NatsBackend._set_state`)::

    IDLE ──start()──▶ CONNECTING ──set up, refilled──▶ CONNECTED
                        ▲    └──fails──▶ DISCONNECTED ◀──connection lost──┘
                        └──nats-py reconnected─┘
    any ──stop()──▶ CLOSED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import uuid
from contextlib import suppress
from typing import Any

try:
    import nats
    import nats.errors
    import nats.js.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.api import RawStreamMsg, StorageType, StreamConfig
    from nats.js.kv import KeyValue
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the NATS hub needs nats-py: pip install 'legato[nats]'") from exc

from .. import jsoncodec
from .backend import (EventSink, Gap, HubUnavailable, PublishOutcomeUnknown, Sink, Stored,
                      id_key, replay_gap)
from .payload import decode as decode_payload
from .payload import encode as encode_payload
from .nats_kv import NATS_ERRORS, ONCE_BUCKET_TTL, Claims, Presence, topic_token

__all__ = ["NatsBackend", "State", "topic_token", "names"]

logger = logging.getLogger("legato.hub")

EXPECTED = "Nats-Expected-Last-Subject-Sequence"  # JetStream's compare-and-set header
#: Header of a message stored without compare-and-set: the topic's last sequence as its
#: publisher knew it, a lower bound of its predecessor (see ``_append``).
AFTER = "Legato-After"
_WRONG_LAST = 10071  # JetStream's error code: the subject's last sequence is another
#: Compare-and-set attempts before a publisher that keeps losing the race for a topic's
#: next sequence (to a publisher that learns its own sequences first) appends instead.
_CAS_TRIES = 3
#: Seconds between checks that the stream is the same one (see ``_watch_stream``).
STREAM_CHECK = 5.0
_REFILL_TRIES = 10  # reads of a hole a live copy showed, while connected (~3 s in all)


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


_TRANSITIONS = {
    State.IDLE: {State.CONNECTING, State.CLOSED},
    State.CONNECTING: {State.CONNECTED, State.DISCONNECTED, State.CLOSED},
    State.CONNECTED: {State.DISCONNECTED, State.CLOSED},
    State.DISCONNECTED: {State.CONNECTING, State.CLOSED},
    State.CLOSED: set(),
}

_NATS_ERRORS = NATS_ERRORS


def names(prefix: str) -> dict[str, str]:
    """The stream, buckets and subject root of a prefix (tests delete them by these)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", prefix) or "_"
    return {"root": safe, "stream": f"{safe}_hub", "presence": f"{safe}_presence",
            "once": f"{safe}_once"}


class NatsBackend:
    """Carries hub messages between processes through NATS (core + JetStream + KV).

    * ``url``: ``nats://host:port`` (``tls://`` for TLS; several, comma-separated).
    * ``prefix``: of the stream, buckets and subjects, so apps can share a NATS.
    * ``presence_ttl`` (s, 15): a dead process's members vanish at most this long after
      it died (the presence bucket's TTL); each process rewrites its values every third.
    * ``history_default`` (messages, 0): kept per topic when ``publish`` does not say.
    * ``max_history`` (messages, 1,000): JetStream keeps at most this many per topic
      (the stream's ``max_msgs_per_subject``), history or not: a larger ``history=`` is
      cut to it. Also what a process can refill after an outage.
    * ``history_ttl`` (s, 86,400): the stream's ``max_age``: a message is gone this
      long after it was published (0: kept until ``max_history`` pushes it out).
    * ``timeout`` (s, 1.0): to connect, and for any JetStream answer.
    * ``ping_interval`` (s, 1.0): two PINGs unanswered: the connection is dead.
    * ``reconnect_wait`` (s, 0.25): nats-py's wait between reconnection attempts.

    The stream and buckets are created when missing; an existing one is used as it is.
    Counters: ``reconnects``, ``messages_refilled``, ``cas_retries`` (races lost for a
    topic's next sequence), ``appends`` (publishes stored after losing ``_CAS_TRIES``).
    """

    def __init__(self, url: str = "nats://127.0.0.1:4222", *, prefix: str = "legato",
                 presence_ttl: float = 15.0, history_default: int = 0,
                 max_history: int = 1000, history_ttl: float = 86_400.0,
                 timeout: float = 1.0, ping_interval: float = 1.0,
                 reconnect_wait: float = 0.25) -> None:
        if presence_ttl <= 0 or timeout <= 0 or ping_interval <= 0 or reconnect_wait <= 0:
            raise ValueError("presence_ttl, timeout, ping_interval, reconnect_wait must be > 0")
        if history_default < 0 or max_history < 1 or history_ttl < 0:
            raise ValueError("history_default, history_ttl must be >= 0, max_history >= 1")
        self.servers = url.split(",")
        self.prefix = prefix
        self.names = names(prefix)
        self.process_id = uuid.uuid4().hex
        self.presence_ttl, self.history_default = presence_ttl, history_default
        self.max_history, self.history_ttl = max_history, history_ttl
        self.timeout, self.ping_interval, self.reconnect_wait = (
            timeout, ping_interval, reconnect_wait)
        self.reconnects = self.messages_refilled = self.cas_retries = self.appends = 0
        self._state = State.IDLE
        self._sink: Sink | None = None
        self._on_event: EventSink | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._created = 0  # the stream's creation time in ms: the first part of ids
        self._subs: dict[str, Any] = {}  # topic → its live subscription
        self._topics: dict[str, str] = {}  # live subject → topic
        self._last: dict[str, int | None] = {}  # topic → last sequence delivered
        self._held: dict[str, list[tuple[int, int, int, bytes]]] = {}  # while refilling
        self._tails: dict[str, int] = {}  # topic → its last sequence, as this process knows
        # topic → [lock, publishers using it]: one JetStream publish at a time per topic
        self._locks: dict[str, list[Any]] = {}
        self._down_since: float | None = None
        # A JetStream publish went unanswered: NATS may be hung, so the publishes queued
        # behind it fail at once instead of one timeout each; any answer clears it.
        self._silent = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._presence = Presence(self.names["presence"], self.process_id, presence_ttl, timeout,
                                  connected=self._is_connected, spawn=self._spawn)
        self._claims = Claims()

    @property
    def state(self) -> State:
        return self._state

    def _subject(self, kind: str, topic: str) -> str:
        return f"{self.names['root']}.{kind}.{topic_token(topic)}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, sink: Sink, on_event: EventSink) -> None:
        """Connect once; an unreachable NATS is reported, not raised, and retried."""
        self._sink, self._on_event = sink, on_event
        self._set_state(State.CONNECTING)
        try:
            await self._connect()
        except _NATS_ERRORS as exc:
            self._set_state(State.DISCONNECTED)
            self._lost(exc)
            self._spawn(self._connect_later(), "legato-hub-nats-connect")
        self._spawn(self._presence.run(), "legato-hub-nats-presence")
        self._spawn(self._watch_stream(), "legato-hub-nats-stream")

    async def stop(self) -> None:
        """Stop the tasks, remove this process's presence, close the connection."""
        if self._state is State.CLOSED:
            return
        if self._nc is not None and self._nc.is_connected:
            await self._presence.clear()
        self._set_state(State.CLOSED)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError, Exception):
                await task
        nc, self._nc = self._nc, None
        if nc is not None:
            with suppress(*_NATS_ERRORS):
                await asyncio.wait_for(nc.close(), self.timeout)

    def _set_state(self, state: State) -> bool:
        if state not in _TRANSITIONS[self._state]:
            return False
        logger.debug("hub nats %s: %s → %s", self.process_id[:8], self._state.name, state.name)
        self._state = state
        return True

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        # nats-py's first connect tries for ever (max_reconnect_attempts=-1): bounded
        # here, and retried by _connect_later with the hub's own backoff.
        nc = await asyncio.wait_for(self._open(), self.timeout + 0.5)
        self._nc, self._js = nc, nc.jetstream(timeout=self.timeout)
        try:
            await self._set_up()
            await self._subscribe_waiting(nc)
        except BaseException:
            self._nc = None
            with suppress(Exception):
                await nc.close()
            raise
        await self._recover()

    async def _open(self) -> Client:
        return await nats.connect(
            self.servers, name=f"legato:{self.names['root']}:{self.process_id[:12]}",
            connect_timeout=self.timeout, ping_interval=self.ping_interval,
            max_outstanding_pings=2, allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            error_cb=self._on_error)

    async def _connect_later(self) -> None:
        delay = self.reconnect_wait
        while self._state is State.DISCONNECTED:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            if not self._set_state(State.CONNECTING):
                return
            try:
                await self._connect()
            except _NATS_ERRORS as exc:
                logger.debug("hub nats: connecting failed: %s", exc)
                self._set_state(State.DISCONNECTED)

    async def _set_up(self) -> None:
        """The stream and the buckets, created when missing (an existing one is kept)."""
        assert self._js is not None
        config = StreamConfig(
            name=self.names["stream"], subjects=[f"{self.names['root']}.h.>"],
            max_msgs_per_subject=self.max_history, max_age=self.history_ttl or None,
            storage=StorageType.FILE, allow_direct=True, num_replicas=1)
        try:
            info = await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:  # there, with another configuration
            info = await self._js.stream_info(self.names["stream"])
        assert info.created is not None
        self._stream_is(_created_ms(info.created))
        self._presence.kv = await self._bucket(self.names["presence"], self.presence_ttl)
        self._presence.js = self._js
        self._claims.kv = await self._bucket(self.names["once"], ONCE_BUCKET_TTL)

    async def _bucket(self, name: str, ttl: float) -> KeyValue:
        assert self._js is not None
        try:
            return await self._js.create_key_value(bucket=name, ttl=ttl, history=1)
        except nats.js.errors.BadRequestError:
            return await self._js.key_value(name)

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("hub nats: %s", exc)

    async def _on_disconnected(self) -> None:
        if self._set_state(State.DISCONNECTED):
            self._lost(ConnectionError("the NATS connection was lost"))

    async def _on_reconnected(self) -> None:
        if self._set_state(State.CONNECTING):
            self._spawn(self._reconnected(), "legato-hub-nats-recover")

    async def _reconnected(self) -> None:
        """nats-py reconnected and subscribed again what it had; what was listened
        while NATS was down is subscribed here, before the refill reads after it."""
        nc, self._silent = self._nc, False
        try:
            await self._set_up()  # a NATS that came back empty has no stream
            if nc is not None:
                await self._subscribe_waiting(nc)
        except _NATS_ERRORS as exc:
            logger.warning("hub nats: setting up after reconnection failed: %s", exc)
        await self._recover()

    async def _subscribe_waiting(self, nc: Client) -> None:
        """Subscribe the topics listened while NATS was unreachable: where the topic
        is first, then the subscription, so the refill that follows brings whatever
        came between the two."""
        for topic, sub in list(self._subs.items()):
            if sub is None:
                if self._last.get(topic) is None:
                    with suppress(HubUnavailable):
                        tail = await self._tail(self._subject("h", topic), "listen")
                        self._last[topic] = 0 if tail is None else tail.seq
                sub = await nc.subscribe(self._subject("l", topic), cb=self._on_live)
                if topic in self._subs:
                    self._subs[topic] = sub
                else:  # unlistened meanwhile
                    await sub.unsubscribe()

    async def _watch_stream(self) -> None:
        """Every ``STREAM_CHECK`` seconds: is the stream still the one whose creation time
        starts our ids? One deleted by hand and made again (by another process) would
        otherwise go unnoticed by a process that only publishes."""
        while True:
            await asyncio.sleep(STREAM_CHECK)
            await self._check_stream()

    async def _check_stream(self) -> None:
        with suppress(HubUnavailable, *_NATS_ERRORS):
            _, js = self._connected("check the stream")
            info = await js.stream_info(self.names["stream"])
            if info.created is not None:
                self._stream_is(_created_ms(info.created))

    def _lost(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            logger.warning("hub: lost the NATS connection (%s); reconnecting", exc)
            self._emit("disconnected", {"error": str(exc)})

    async def _recover(self) -> None:
        """Refill every listened topic after its last delivered sequence, then report."""
        refilled = 0
        if self._down_since is not None:
            for topic in list(self._subs):
                refilled += await self._refill(topic)
        if not self._set_state(State.CONNECTED) or self._down_since is None:
            return
        downtime = asyncio.get_running_loop().time() - self._down_since
        self._down_since = None
        self.reconnects += 1
        self.messages_refilled += refilled
        logger.warning("hub: NATS reconnected after %.1f s; %d missed messages delivered "
                       "from JetStream", downtime, refilled)
        self._emit("reconnected", {"downtime": downtime, "refilled": refilled})

    def _emit(self, kind: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, details)
            except Exception:
                logger.exception("hub: the %r event handler failed", kind)

    # ------------------------------------------------------------------ publishing

    def _is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def _connected(self, what: str) -> tuple[Client, JetStreamContext]:
        nc, js = self._nc, self._js
        if self._state is State.CLOSED or nc is None or js is None or not nc.is_connected:
            raise HubUnavailable(f"cannot {what}: not connected to NATS")
        return nc, js

    async def publish(self, topic: str, payload: str | bytes, *,
                      history: int | None = None, key: str | None = None) -> str:
        """Store (JetStream), then fan out (core NATS); returns the id.
        ``HubUnavailable``: not published; ``PublishOutcomeUnknown``: no answer."""
        keep = self.history_default if history is None else history
        if keep < 0:
            raise ValueError("history must be >= 0")
        nc, _ = self._connected(f"publish to {topic!r}")
        body = b"%d " % min(keep, self.max_history) + encode_payload(payload, key)
        # One lock per topic while it has publishers, counted (a released lock is not
        # "locked" while the next waiter has yet to run: only the count says it is free).
        held = self._locks.get(topic)
        if held is None:
            held = self._locks[topic] = [asyncio.Lock(), 0]
        held[1] += 1
        try:
            async with held[0]:
                seq, prev = await self._store(topic, body)
                message_id = f"{self._created}-{seq}"
                if prev is not None:
                    with suppress(*_NATS_ERRORS):  # stored: a lost copy is refilled
                        await nc.publish(self._subject("l", topic),
                                         b"%s %d " % (message_id.encode(), prev) + body)
        finally:
            held[1] -= 1
            if not held[1]:
                del self._locks[topic]
        return message_id

    async def _store(self, topic: str, body: bytes) -> tuple[int, int | None]:
        """JetStream publish as the successor of the topic's last message; returns its
        sequence and its predecessor's (None: not known yet, no live copy to send now).

        Compare-and-set first: stored only as the successor of the sequence given, so
        the predecessor is known without a read. A publisher that loses the race
        ``_CAS_TRIES`` times (another one publishes back to back, learning its own
        sequences first, and would win every time) appends without it and reads what
        came between: slower, but every publish is stored, none starves."""
        _, js = self._connected(f"publish to {topic!r}")
        subject = self._subject("h", topic)
        prev = self._tails.get(topic)
        for attempt in range(_CAS_TRIES + 1):
            if self._silent:  # the publishers queued behind one that timed out
                raise HubUnavailable(f"cannot publish to {topic!r}: NATS has not answered "
                                     "since a publish timed out")
            if prev is None:  # from the stream's leader: a missing stream says so at once
                tail = await self._get(f"publish to {topic!r}", subject=subject, direct=False)
                prev = 0 if tail is None else tail.seq
            cas = attempt < _CAS_TRIES
            try:
                ack = await js.publish(subject, body, timeout=self.timeout,
                                       headers={EXPECTED if cas else AFTER: str(prev)})
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _WRONG_LAST:
                    raise HubUnavailable(f"cannot publish to {topic!r}: {exc}") from None
                self.cas_retries += 1
                known, prev = prev, int((exc.description or "").rpartition(" ")[2] or 0)
                if known is not None and prev < known:  # went back: purged, or a new stream
                    await self._check_stream()
                continue
            except nats.js.errors.NoStreamResponseError:
                await self._set_up_again(topic)
                prev = None
                continue
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                self._tails.pop(topic, None)
                self._silent = True  # until NATS answers again (_announce_tail asks)
                self._spawn(self._announce_tail(topic), "legato-hub-nats-announce")
                raise PublishOutcomeUnknown(
                    f"publish to {topic!r}: NATS did not answer within {self.timeout} s"
                ) from None
            except _NATS_ERRORS as exc:
                raise HubUnavailable(f"cannot publish to {topic!r}: {exc}") from None
            if len(self._tails) > 100_000:  # bounded: a forgotten tail costs a read
                self._tails.clear()
            assert ack.seq is not None and prev is not None
            self._tails[topic] = ack.seq
            if cas:
                return ack.seq, prev
            self.appends += 1
            try:  # stored: a read that fails now is no failed publish
                return ack.seq, await self._predecessor(subject, ack.seq, prev)
            except HubUnavailable:
                self._spawn(self._announce_tail(topic), "legato-hub-nats-announce")
                return ack.seq, None  # no live copy now: _announce_tail sends it
        raise HubUnavailable(f"cannot publish to {topic!r}: no stream")

    async def _predecessor(self, subject: str, seq: int, after: int) -> int:
        """The predecessor of message ``seq``, stored without compare-and-set after
        ``after`` (its ``AFTER`` header): the subject's last message between the two
        (read forward, one round trip each: the messages of the publishers that won the
        race meanwhile), else ``after`` itself."""
        between = await self._between(subject, after, seq)
        return between[-1].seq if between and between[-1].seq is not None else after

    async def _between(self, subject: str, low: int, high: int) -> list[RawStreamMsg]:
        """The subject's messages after ``low`` and before ``high``, oldest first."""
        found: list[RawStreamMsg] = []
        while True:
            message = await self._get("read a topic's messages", seq=low + 1,
                                      subject=subject, after=True)
            if message is None or message.seq is None or message.seq >= high:
                return found
            found.append(message)
            low = message.seq

    async def _set_up_again(self, topic: str) -> None:
        try:
            await self._set_up()
        except _NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot publish to {topic!r}: no stream: {exc}") from None

    async def _announce_tail(self, topic: str) -> None:
        """After a publish went unanswered: once NATS answers, send the live copy of the
        topic's newest message again, so that a stored one is delivered without waiting
        for the topic's next message (receivers skip a copy they have)."""
        for attempt in range(120):
            await asyncio.sleep(0.1 if attempt == 0 else 0.5)
            try:
                nc, _ = self._connected("announce")
                tail = await self._tail(self._subject("h", topic), "announce")
                if tail is not None and tail.seq is not None:
                    prev, exact, body = _stored(tail)
                    if not exact:
                        prev = await self._predecessor(self._subject("h", topic), tail.seq,
                                                       prev)
                    await nc.publish(self._subject("l", topic),
                                     b"%d-%d %d " % (self._created, tail.seq, prev) + body)
                return
            except HubUnavailable:
                continue

    async def _tail(self, subject: str, what: str) -> RawStreamMsg | None:
        return await self._get(what, subject=subject)

    async def _get(self, what: str, *, seq: int | None = None, subject: str | None = None,
                   after: bool = False, direct: bool = True) -> RawStreamMsg | None:
        """One direct get: the subject's last message, the message ``seq``, or (``after``)
        the subject's first at or after ``seq``; None when there is none."""
        _, js = self._connected(what)
        try:
            found = await js.get_msg(self.names["stream"], seq=seq, subject=subject,
                                     direct=direct, next=after)
        except nats.js.errors.NotFoundError:
            self._silent = False  # an answer
            return None
        except nats.errors.NoRespondersError:
            return None  # no stream (NATS came back empty): nothing kept
        except _NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot {what}: {exc}") from None
        self._silent = False
        return found

    # ------------------------------------------------------------------ history

    async def _chain(self, topic: str, after: int, most: int, what: str
                     ) -> tuple[list[tuple[int, int, bytes]], RawStreamMsg | None, str]:
        """Walk back from the topic's newest message along ``prev`` while sequences are
        above ``after``, at most ``most`` + 1 messages. Returns them newest first as
        ``(seq, prev, body)``, the newest, and how the walk ended: ``"complete"`` (the
        next one back is at or before ``after``), ``"first"`` (the topic's first
        message), ``"more"`` (``most`` + 1 reached) or ``"broken"`` (a predecessor is no
        longer stored)."""
        subject = self._subject("h", topic)
        newest = await self._tail(subject, what)
        found: list[tuple[int, int, bytes]] = []
        cur = newest
        while cur is not None and cur.seq is not None and cur.seq > after:
            prev, exact, body = _stored(cur)
            found.append((cur.seq, prev, body))
            if len(found) > most:
                return found, newest, "more"
            if not exact:  # appended after a lost race: who came between?
                between = await self._between(subject, max(prev, after), cur.seq)
                if between:
                    cur = between[-1]  # its true predecessor
                    continue
            if prev <= after:
                return found, newest, "first" if prev == 0 else "complete"
            cur = await self._get(what, seq=prev)
            if cur is None:
                return found, newest, "broken"
        return found, newest, "complete"

    def _since(self, since: str) -> int:
        """``since`` as a sequence of the current stream: -1 for an older stream's id
        (all of this one is after it), a huge one for a newer stream's."""
        created, seq = id_key(since)
        if created == self._created:
            return seq
        return -1 if created < self._created else 2**64

    async def history(self, topic: str, since: str | None = None,
                      limit: int | None = None) -> list[Stored]:
        """Messages after ``since``, oldest first, at most the last ``limit`` and never
        more than the topic keeps. ``ValueError`` for a malformed ``since``."""
        after = 0 if since is None else max(0, self._since(since))
        if limit is not None and limit <= 0:
            return []
        what = f"read the history of {topic!r}"
        newest = await self._tail(self._subject("h", topic), what)
        if newest is None:
            return []
        most = _keep(newest)
        if limit is not None:
            most = min(most, limit)
        if most == 0:
            return []
        found, _, _ = await self._chain(topic, after, most - 1, what)
        return [self._message(seq, body) for seq, _, body in reversed(found[:most])]

    async def replay(self, topic: str, since: str) -> tuple[list[Stored], Gap | None]:
        """History after ``since`` for a client that resumes, with a :class:`Gap` when
        the chain shows messages after ``since`` that are no longer kept (P5)."""
        after = self._since(since)
        what = f"read the history of {topic!r}"
        newest = await self._tail(self._subject("h", topic), what)
        keep = 0 if newest is None else _keep(newest)
        found, _, end = await self._chain(topic, max(after, 0), keep, what)
        trimmed = end in ("more", "broken") and since not in ("0", "0-0")
        missed = [self._message(seq, body) for seq, _, body in reversed(found[:keep])]
        gap = replay_gap(
            topic, since, missed, newest=None if newest is None else self._id(newest.seq),
            trimmed=trimmed and after >= 0,
            # an older stream's id, or one from before the topic's first message
            predates=bool(missed) and (after < 0 or (end == "first" and after > 0)))
        return missed, gap

    def _id(self, seq: int | None) -> str:
        return f"{self._created}-{seq}"

    def _message(self, seq: int, body: bytes) -> Stored:
        payload, key = decode_payload(body, body.index(b" ") + 1)
        return self._id(seq), payload, key

    # ------------------------------------------------------------------ receiving

    async def listen(self, topic: str) -> None:
        """Subscribe this process to ``topic``: once it returns, what is published is
        delivered. Never raises: during an outage the reconnection subscribes."""
        if topic in self._subs or self._state is State.CLOSED:
            return
        self._subs[topic] = None
        self._topics[self._subject("l", topic)] = topic
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        self._held[topic] = []  # live copies wait until we know where the topic is
        try:
            sub = await nc.subscribe(self._subject("l", topic), cb=self._on_live)
            if topic not in self._subs:  # unlistened meanwhile
                await sub.unsubscribe()
                return
            self._subs[topic] = sub
            await nc.flush(int(self.timeout) + 1)  # the server has it: later publishes reach us
            tail = await self._tail(self._subject("h", topic), "listen")
            self._last.setdefault(topic, 0 if tail is None else tail.seq)
        except (HubUnavailable, *_NATS_ERRORS) as exc:
            logger.debug("hub nats: listening to %r: %s", topic, exc)
        finally:
            self._release(topic)

    async def unlisten(self, topic: str) -> None:
        if topic not in self._subs:
            return
        sub = self._subs.pop(topic)
        self._topics.pop(self._subject("l", topic), None)
        self._last.pop(topic, None)
        self._held.pop(topic, None)
        if sub is not None:
            with suppress(*_NATS_ERRORS):
                await sub.unsubscribe()

    async def _on_live(self, msg: Msg) -> None:
        topic = self._topics.get(msg.subject)
        if topic is None:
            return  # unlistened while it was on its way
        try:
            data = msg.data
            first = data.index(b" ")
            second = data.index(b" ", first + 1)
            created, seq = id_key(data[:first].decode())
            prev = int(data[first + 1:second])
        except (ValueError, IndexError):
            logger.warning("hub nats: ignored a malformed message on %r", msg.subject)
            return
        self._receive(topic, created, seq, prev, data[second + 1:])

    def _receive(self, topic: str, created: int, seq: int, prev: int, body: bytes) -> None:
        """Deliver in chain order: a copy already delivered is skipped, a copy past a
        missing one waits for the refill (see the module docstring)."""
        held = self._held.get(topic)
        if held is not None:
            held.append((created, seq, prev, body))
            return
        if created != self._created:
            if created < self._created:
                return  # a copy from a stream deleted since
            self._stream_is(created)
        last = self._last.get(topic)
        if last is not None and seq <= last:
            return
        if last is None or prev <= last:
            self._last[topic] = seq
            self._deliver(topic, seq, body)
            return
        self._held[topic] = [(created, seq, prev, body)]  # prev > last: some are missing
        self._spawn(self._refill_then_release(topic, prev), "legato-hub-nats-refill")

    def _stream_is(self, created: int) -> None:
        """The stream's creation time; a new one means the stream was created again
        (NATS came back without its store, or it was deleted): its history is gone, ids
        start over, and every topic delivered from the old one has a gap."""
        if created == self._created:
            return
        if self._created:
            for topic, last in self._last.items():
                if last:
                    self._emit("gap", {"topic": topic, "after": self._id(last),
                                       "reason": "stream recreated"})
                    self._last[topic] = 0
            self._tails.clear()
        self._created = created

    async def _refill_then_release(self, topic: str, until: int) -> None:
        """Read the messages a live copy showed missing. While NATS is unreachable the
        copies stay held: the reconnection's refill delivers them with the rest."""
        for attempt in range(_REFILL_TRIES):
            try:
                await self._read_forward(topic, until)
            except HubUnavailable as exc:
                logger.debug("hub nats: refilling %r failed: %s", topic, exc)
                if self._state is not State.CONNECTED:
                    return
                await asyncio.sleep(0.05 * (attempt + 1))
                continue
            break
        else:  # NATS answers, but not this: give the hole up rather than hold for ever
            last = self._last.get(topic) or 0
            self._emit("gap", {"topic": topic, "after": self._id(last), "reason": "unread"})
            self._last[topic] = until
        self._release(topic)

    def _release(self, topic: str) -> None:
        """Deliver the live copies held while refilling, in order (skipping what the
        refill delivered); a copy past another gap starts the next refill."""
        held = self._held.pop(topic, None)
        for created, seq, prev, body in sorted(held or ()):
            self._receive(topic, created, seq, prev, body)

    async def _refill(self, topic: str) -> int:
        """After a reconnection: deliver what JetStream holds after the topic's last
        delivered sequence, holding its live copies meanwhile."""
        if topic not in self._subs:
            return 0
        self._held.setdefault(topic, [])
        count = 0
        try:
            count = await self._read_forward(topic, None)
        except HubUnavailable as exc:
            logger.debug("hub nats: refilling %r failed: %s", topic, exc)
        finally:
            self._release(topic)
        return count

    async def _read_forward(self, topic: str, until: int | None) -> int:
        """Deliver the topic's stored messages after its last delivered sequence (up to
        ``until``), in order; a predecessor that is not the one delivered before is a
        broken chain: a ``"gap"`` event. Safe beside another reader of the same topic."""
        subject = self._subject("h", topic)
        if self._last.get(topic) is None:  # never knew where the topic was: from now
            tail = await self._tail(subject, "refill a gap")
            self._last[topic] = 0 if tail is None else tail.seq
            return 0
        count = 0
        while topic in self._subs:
            last = self._last.get(topic) or 0
            if until is not None and last >= until:
                break
            found = await self._get("refill a gap", seq=last + 1, subject=subject, after=True)
            if found is None or found.seq is None or topic not in self._subs:
                break
            current = self._last.get(topic) or 0
            if found.seq <= current:
                continue  # another reader delivered it meanwhile
            prev, exact, body = _stored(found)
            if prev != current and (exact or prev > current):
                self._emit("gap", {"topic": topic, "after": self._id(current),
                                   "reason": "trimmed"})
            self._last[topic] = found.seq
            self._deliver(topic, found.seq, body)
            count += 1
        if until is not None and (self._last.get(topic) or 0) < until:
            self._emit("gap", {"topic": topic, "after": self._id(self._last.get(topic) or 0),
                               "reason": "trimmed"})
            self._last[topic] = until
        return count

    def _deliver(self, topic: str, seq: int, body: bytes) -> None:
        assert self._sink is not None
        try:
            payload, key = decode_payload(body, body.index(b" ") + 1)
        except (ValueError, IndexError):
            logger.warning("hub nats: ignored a malformed message %d on %r", seq, topic)
            return
        try:
            self._sink(topic, self._id(seq), payload, key)
        except Exception:
            logger.exception("hub: delivering %d on %r failed", seq, topic)

    # ------------------------------------------------------------------ presence, epochs

    async def join(self, topic: str, member: str, info: Any) -> None:
        """``info`` must be JSON-serializable (``TypeError`` otherwise)."""
        await self._presence.join(topic, member, jsoncodec.dumps(info))

    async def leave(self, topic: str, member: str) -> None:
        await self._presence.leave(topic, member)

    async def members(self, topic: str) -> dict[str, Any]:
        self._connected(f"read the presence of {topic!r}")
        return await self._presence.members(topic)

    async def count(self, topic: str) -> int:
        """How many members ``topic`` has in live processes, without listing them."""
        self._connected(f"count the presence of {topic!r}")
        return await self._presence.count(topic)

    async def epoch(self, topic: str) -> str:
        """The stream's creation time: one epoch for every topic, new when the stream
        (the history of every topic) was deleted and created again, which is when the
        ids of the old history stop meaning anything."""
        _, js = self._connected(f"read the epoch of {topic!r}")
        try:
            info = await js.stream_info(self.names["stream"])
        except _NATS_ERRORS as exc:
            raise HubUnavailable(f"cannot read the epoch of {topic!r}: {exc}") from None
        assert info.created is not None
        return f"{_created_ms(info.created):x}"

    async def claim(self, key: str, ttl: float) -> str | None:
        """Take ``key`` for every process: None when it was free, else the value it was
        settled with ("" while pending). A claim expires at its deadline (wall clock)."""
        self._connected("check a publish's once key")
        return await self._claims.claim(key, ttl)

    async def settle(self, key: str, value: str, ttl: float) -> None:
        self._connected("record a publish's once key")
        await self._claims.settle(key, value, ttl)


def _created_ms(created: Any) -> int:
    return int(created.timestamp() * 1000)


def _stored(message: RawStreamMsg) -> tuple[int, bool, bytes]:
    """A stored message's predecessor, whether that is exact (the compare-and-set
    header) or a lower bound (``AFTER``: appended after a lost race), and its body."""
    headers = message.headers or {}
    exact = EXPECTED in headers
    return int(headers.get(EXPECTED if exact else AFTER, 0)), exact, message.data or b""


def _keep(message: RawStreamMsg) -> int:
    data = message.data or b"0 "
    return int(data[:data.index(b" ")])

