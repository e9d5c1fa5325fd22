"""The asyncio channel client: one connection, many topics, reconnecting on its own.

Lifecycle (docs/channels.md, Reconnecting and States)::

    connect() ─▶ CONNECTING ──welcome──▶ CONNECTED ──socket ends──▶ DISCONNECTED
                     ▲   └──handshake fails────────────────────────────▶ │
                     └──────────── delay: advice, or backoff ◀────────────┘
    close() from anywhere ─▶ CLOSED (also: the *first* handshake refused for good)

After each ``welcome`` the client rejoins every topic with ``since`` (the last id seen)
and the ``epoch`` it belongs to, waits for the answers, then sends what waited (see
:mod:`.requests`): only then is it *ready*, and new requests go straight out.

A frame the protocol does not allow fails the connection (:class:`ServerProtocolError`
in the log, :attr:`Client.last_error` and the state change), and the client reconnects:
one server bug must not leave an app with no connection.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import ssl as _ssl
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ..protocol import DEFAULT_MAX_MESSAGE_SIZE
from .backoff import Backoff
from .errors import (
    CLOSED,
    NOT_JOINED,
    TIMEOUT,
    ChannelError,
    ConnectError,
    Disconnected,
    ServerProtocolError,
)
from .frames import (
    PING_BODY,
    ErrorFrame,
    Member,
    Message,
    LostFrame,
    PresenceFrame,
    Reconnect,
    Reply,
    ServerFrame,
    UnknownFrame,
    Welcome,
    call_body,
    join_body,
    leave_body,
    parse_server_frame,
    presence_body,
    pub_body,
    with_ref,
)
from .fallback import TransportChoice, TransportName
from .observers import Observers
from .requests import Kind, Pending, Request
from .state import ConnectionState, StateChange, TopicState, check_connection_transition
from .topic import PresenceEvent, Topic
from .sse import RESUME_WITHIN, SseConnection, SseResume
from .transport import WebSocket, _target

__all__ = ["Client"]

#: What a connection runs on: the two transports offer the same methods.
Socket = WebSocket | SseConnection

logger = logging.getLogger("legato.client")

#: How much longer than a call's timeout the client waits, so that the server's own
#: `timeout` error (which says the handler was cancelled) arrives first.
CALL_GRACE = 1.0
#: The spec's ceiling for a call's server-side timeout (ms).
MAX_CALL_TIMEOUT_MS = 300_000


class Client:
    """A legato.v1 channel client (``async with Client(url) as client: ...``).

    * ``headers``: extra handshake headers (cookies, ``Authorization``).
    * ``base_delay``/``max_delay`` (s, 0.5/30): reconnect backoff, full jitter.
    * ``heartbeat`` (s): ping interval; None takes the server's (welcome), 0 disables.
      The connection is declared dead after ``heartbeat + heartbeat_grace`` s (grace
      10 s, the spec's) without a frame.
    * ``queue_limit`` (100): publishes, calls and presence queries that may wait for a
      connection; more fail with ``queue_full``.
    * ``receive_limit`` (1,000): each topic's receive buffer (see :mod:`.topic`).
    * ``open_timeout`` (s, 10): TCP + handshake + welcome; ``close_timeout`` (s, 2):
      how long ``close()`` waits for the server's Close.
    * ``transport``: ``"auto"`` (WebSocket, falling back to SSE + POST when it cannot
      connect; see :mod:`.fallback`), ``"websocket"`` or ``"sse"``. :attr:`transport`
      names the one in use.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        heartbeat: float | None = None,
        heartbeat_grace: float = 10.0,
        queue_limit: int = 100,
        receive_limit: int = 1000,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        origin: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        rng: Callable[[], float] = random.random,
        transport: str = "auto",
    ) -> None:
        _target(url)  # ValueError now, not on the first reconnect
        self._choice = TransportChoice(transport)
        self._attempt: TransportName = "websocket"  # the transport being tried
        self._switch_now = False  # just fell back to SSE: try it without a delay
        self._resume_from: SseResume | None = None  # a cut SSE stream to continue
        self.url = url
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self._headers = [(str(k), str(v)) for k, v in items]
        self._origin, self._ssl, self._max_message_size = origin, ssl, max_message_size
        self._heartbeat_setting = heartbeat
        self._heartbeat_grace = heartbeat_grace
        self._receive_limit = receive_limit
        self._open_timeout, self._close_timeout = open_timeout, close_timeout
        self._backoff = Backoff(base_delay, max_delay, rng)
        self._pending = Pending(queue_limit)
        self._topics: dict[str, Topic] = {}
        self._refs = itertools.count(1)
        self._state = ConnectionState.DISCONNECTED
        self._states: Observers[StateChange] = Observers()
        self._ws: Socket | None = None
        self._reached_welcome = False  # this session got welcome (or resumed)
        self._generation = 0  # one per connection: which one a join was sent on
        self._welcomed = False  # the current connection got `welcome`
        self._ready = False  # ... and every topic was rejoined, the queue sent
        self._advice: Reconnect | None = None
        self._dead: Disconnected | None = None  # set by the heartbeat
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        #: This connection's id (from `welcome`), and the heartbeat in use (s).
        self.conn_id: str | None = None
        self.heartbeat: float | None = None
        #: The transport of the current connection ("websocket" or "sse"), or of the
        #: last one while disconnected; None before the first.
        self.transport: TransportName | None = None
        #: What ended the last connection or connection attempt.
        self.last_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def topics(self) -> dict[str, Topic]:
        """The topics joined or joining, by name (a copy)."""
        return dict(self._topics)

    async def connect(self) -> None:
        """Connect, and return once the server's `welcome` arrived.

        Failures that may pass (no route, a 5xx, a dropped socket) are retried with
        backoff while this waits (bound it with ``asyncio.wait_for``); a refusal that
        cannot pass (an HTTP 4xx, no legato.v1) raises ``ConnectError`` and closes the
        client.
        """
        if self._state is ConnectionState.CLOSED:
            raise ChannelError(CLOSED, "the client is closed")
        if self._task is None:
            self._first = asyncio.get_running_loop().create_future()
            self._first.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._task = asyncio.create_task(self._run(), name=f"legato.client {self.url}")
        assert self._first is not None
        await asyncio.shield(self._first)

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Close (1000) and stop reconnecting; what waits fails with ``closed``."""
        if self._state is ConnectionState.CLOSED:
            return
        self._closing = True
        task, ws = self._task, self._ws
        if task is not None and not task.done():
            if ws is not None:
                ws.start_close(1000)
                await asyncio.wait({task}, timeout=self._close_timeout)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        self._shut(ChannelError(CLOSED, "the client was closed"))

    def on_state(self, callback: Callable[[StateChange], Any]) -> Callable[[], None]:
        """Call ``callback(change)`` on every connection state change; returns the
        unsubscribe function."""
        return self._states.add(callback)

    def state_changes(self) -> AsyncIterator[StateChange]:
        """Every state change from now on, until the client is closed."""
        return self._states.stream()

    def _set_state(self, state: ConnectionState, error: BaseException | None = None) -> None:
        previous = self._state
        check_connection_transition(previous, state)
        self._state = state
        self._states.emit(StateChange(state, previous, error))

    def _shut(self, error: ChannelError) -> None:
        self._closing = True
        if self._state is not ConnectionState.CLOSED:
            self._set_state(ConnectionState.CLOSED, None if error.code == CLOSED else error)
        self._pending.fail_all(error)
        for topic in list(self._topics.values()):
            topic.ended(error)
        self._topics.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
        self._states.close()

    # --------------------------------------------------------------- connection loop

    async def _run(self) -> None:
        while not self._closing:
            self._set_state(ConnectionState.CONNECTING)
            error = await self._connect_once()
            if self._closing:
                return
            self.last_error = error
            if isinstance(error, ConnectError) and self.conn_id is None and \
                    self._choice.gives_up(self._attempt, error):
                logger.error("channel client: %s", error)
                self._shut(error)
                return
            self._set_state(ConnectionState.DISCONNECTED, error)
            delay, self._switch_now = (0.0 if self._switch_now else self._next_delay()), False
            logger.info("channel client: %s; reconnecting in %.2f s", error, delay)
            await asyncio.sleep(delay)

    def _next_delay(self) -> float:
        advice, self._advice = self._advice, None
        if advice is not None:
            return self._backoff.advised_delay(advice.delay_ms, advice.jitter_ms)
        return self._backoff.next_delay()

    async def _connect_once(self) -> BaseException:
        resume = self._take_resume()
        kind = self._attempt = "sse" if resume is not None else self._choice.next()
        try:
            ws = await asyncio.wait_for(self._open(kind, resume), self._open_timeout)
        except ConnectError as exc:
            return self._failed(kind, exc)
        except asyncio.TimeoutError:
            return self._failed(kind, ConnectError(
                f"no handshake answer within {self._open_timeout:g} s", permanent=False))
        self._resume_from = None
        if resume is not None and not (isinstance(ws, SseConnection) and ws.resumed):
            self._lose_connection()  # the server forgot it: what was in flight is lost
        return await self._session(ws)

    async def _open(self, kind: TransportName, resume: SseResume | None
                    ) -> Socket:
        if kind == "websocket":
            return await WebSocket.connect(
                self.url, headers=self._headers, origin=self._origin, ssl=self._ssl,
                max_message_size=self._max_message_size)
        return await SseConnection.connect(
            self.url, headers=self._headers, origin=self._origin, ssl=self._ssl,
            max_message_size=self._max_message_size, resume=resume)

    def _take_resume(self) -> SseResume | None:
        """The cut SSE stream to continue, while the server may still hold it."""
        resume = self._resume_from
        if resume is not None and asyncio.get_running_loop().time() >= resume.deadline:
            self._resume_from = resume = None
            self._lose_connection()
        return resume

    def _failed(self, kind: TransportName, error: BaseException) -> BaseException:
        if self._choice.failed(kind, error):
            self._switch_now = True
        return error

    def _lose_connection(self) -> None:
        """The connection is gone for good: sort what was in flight, rejoin topics."""
        self._pending.connection_lost()
        for topic in self._topics.values():
            topic.connection_lost()

    async def _session(self, ws: Socket) -> BaseException:
        self._ws, self._dead = ws, None
        self._reached_welcome = False
        if isinstance(ws, SseConnection) and ws.resumed:
            self._connected("sse")
        else:
            self._generation += 1
        try:
            error = await self._read(ws)
        finally:
            for task in self._session_tasks:
                task.cancel()
            self._session_tasks.clear()
            self._ws = None
            self._welcomed = self._ready = False
            ws.abort()
        if not self._reached_welcome:
            self._failed(self._attempt, error)
        if self._closing:
            return error
        if isinstance(ws, SseConnection) and ws.resumable:
            deadline = asyncio.get_running_loop().time() + RESUME_WITHIN
            self._resume_from = ws.resume_info(deadline)  # in flight stays in flight
        else:
            self._lose_connection()
        return error

    async def _read(self, ws: Socket) -> BaseException:
        """Dispatch frames until the connection ends; return why it ended."""
        loop = asyncio.get_running_loop()
        welcome_by = loop.time() + self._open_timeout
        while True:
            try:
                if self._welcomed:
                    text = await ws.receive()
                else:
                    text = await asyncio.wait_for(ws.receive(), welcome_by - loop.time())
                if text is None:
                    return self._dead or _closed_by_server(ws)
                self._dispatch(parse_server_frame(text))
            except asyncio.TimeoutError:
                return self._protocol_error(ws, ServerProtocolError(
                    f"no welcome frame within {self._open_timeout:g} s of the handshake"))
            except ServerProtocolError as exc:
                return self._protocol_error(ws, exc)
            except Exception as exc:  # a bug of ours: lose this connection, not the client
                logger.exception("channel client: internal error; closing with 1011")
                ws.fail(1011, "client error")
                return exc

    def _protocol_error(self, ws: Socket, error: ServerProtocolError) -> ServerProtocolError:
        logger.warning("channel client: %s (%s); closing with %d", error.message,
                       error.details, error.close_code)
        ws.fail(error.close_code, "protocol error")
        return error

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, frame: ServerFrame) -> None:
        if isinstance(frame, Message):
            topic = self._topics.get(frame.topic)
            if topic is not None:
                topic.receive(frame)
        elif not self._welcomed and not isinstance(frame, (Welcome, Reconnect)):
            raise ServerProtocolError(f"server sent a {type(frame).__name__} frame before "
                                      "welcome")
        elif isinstance(frame, Reply):
            self._answer(frame.ref, frame.data, None)
        elif isinstance(frame, ErrorFrame):
            if frame.ref is None:
                logger.warning("channel client: the server reports an error in a frame "
                               "without ref: %s %s", frame.code, frame.message)
            else:
                self._answer(frame.ref, None,
                             ChannelError(frame.code, frame.message, frame.details))
        elif isinstance(frame, PresenceFrame):
            topic = self._topics.get(frame.topic)
            if topic is not None:
                topic.presence_changed(PresenceEvent(frame.kind, frame.member))
        elif isinstance(frame, Welcome):
            self._on_welcome(frame)
        elif isinstance(frame, Reconnect):
            logger.info("channel client: server advises reconnecting (%s) in %d + "
                        "random(0, %d) ms", frame.reason, frame.delay_ms, frame.jitter_ms)
            self._advice = frame
        elif isinstance(frame, LostFrame):
            topic = self._topics.get(frame.topic)
            if topic is not None:
                topic.lost_while_joined(frame.reason, frame.epoch)
        elif isinstance(frame, UnknownFrame):
            logger.debug("channel client: ignoring a %r frame", frame.t)
        # Pong: its arrival already fed the heartbeat (WebSocket.last_received)

    def _answer(self, ref: int, data: Any, error: ChannelError | None) -> None:
        request = self._pending.answered(ref)
        if request is None:
            logger.debug("channel client: answer to ref %d that nothing waits for", ref)
            return
        if request.kind is Kind.JOIN:
            assert request.topic is not None
            if error is None:
                try:
                    request.topic.join_answered(data)
                except ServerProtocolError as exc:
                    error = exc
            if error is not None:
                request.topic.join_refused(error)
                self._pending.fail_topic(request.topic, error)
                self._topics.pop(request.topic.name, None)
            request.resolve(None)
        elif error is not None:
            request.reject(error)
        else:
            request.resolve(data)

    def _on_welcome(self, frame: Welcome) -> None:
        if self._welcomed:
            raise ServerProtocolError("server sent a second welcome")
        self.conn_id = frame.conn
        setting = self._heartbeat_setting
        self.heartbeat = frame.heartbeat_ms / 1000 if setting is None else setting
        self._connected(self._attempt)

    def _connected(self, kind: TransportName) -> None:
        """A welcome, or an SSE stream that resumed its connection (no welcome)."""
        self._welcomed = self._reached_welcome = True
        self.transport = kind
        self._choice.connected(kind)
        self._backoff.reset()
        self._advice = None
        self.last_error = None
        self._set_state(ConnectionState.CONNECTED)
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        ws = self._ws
        assert ws is not None
        if self.heartbeat:
            self._spawn(self._beat(ws, self.heartbeat))
        self._spawn(self._resume(self._generation))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._session_tasks.add(task)
        task.add_done_callback(self._session_tasks.discard)

    # ------------------------------------------------------------- resume, heartbeat

    async def _resume(self, generation: int) -> None:
        """Rejoin every topic (with since/epoch), then send what waited: ready."""
        joins = [self._send_join(topic) for topic in list(self._topics.values())
                 if topic.state is TopicState.JOINING and topic.sent_on != generation]
        if joins:
            await asyncio.gather(*(join.future for join in joins), return_exceptions=True)
        self._ready = True
        for request in self._pending.to_send():
            self._transmit(request)

    async def _beat(self, ws: Socket, interval: float) -> None:
        """Ping every ``interval`` s; declare the connection dead after ``interval +
        grace`` s without a frame (a half-open TCP connection), and drop it."""
        loop = asyncio.get_running_loop()
        dead_after = interval + self._heartbeat_grace
        next_ping = loop.time() + interval
        while True:
            now = loop.time()
            silent = now - ws.last_received
            if silent >= dead_after:
                self._dead = Disconnected(
                    f"no frame from the server for {silent:.1f} s (heartbeat {interval:g} s "
                    f"+ {self._heartbeat_grace:g} s): connection presumed dead")
                logger.warning("channel client: %s", self._dead.message)
                ws.abort()
                return
            if now >= next_ping:
                ws.send(with_ref(PING_BODY, next(self._refs)))
                next_ping = now + interval
            await asyncio.sleep(min(next_ping, ws.last_received + dead_after) - now)

    # ------------------------------------------------------------------ requests

    def _transmit(self, request: Request) -> None:
        """Send now with a fresh ref; a drop before the answer is sorted by Pending."""
        ws = self._ws
        assert ws is not None
        ref = next(self._refs)
        extra = ""
        if request.deadline is not None:
            remaining = int((request.deadline - asyncio.get_running_loop().time()) * 1000)
            extra = f'"timeout":{max(1, min(remaining, MAX_CALL_TIMEOUT_MS))},'
        self._pending.sent(ref, request)
        ws.send(with_ref(request.body, ref, extra))

    def _request(self, kind: Kind, body: str, what: str, topic: Topic | None = None,
                 deadline: float | None = None) -> Request:
        if self._state is ConnectionState.CLOSED:
            raise ChannelError(CLOSED, f"{what}: the client is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        return Request(kind, body, future, topic, deadline, what)

    def _submit(self, request: Request) -> None:
        if self._ready:
            self._transmit(request)
        else:
            self._pending.enqueue(request)  # ChannelError(queue_full)

    async def join(self, name: str, data: Any = None, *, since: str | None = None,
                   receive_limit: int | None = None) -> Topic:
        """Join topic ``name`` (``data`` goes to the channel's hooks) and return it once
        the server accepted; ``since`` resumes from a message id (``"0"``: all kept).

        Waits through reconnects. Raises ``ChannelError`` (``not_found``, ``forbidden``,
        ``closed``...). Joining a topic already joined returns the same :class:`Topic`.
        """
        topic = self._topics.get(name)
        if topic is None:
            self._request(Kind.JOIN, "{}", f"join {name!r}")  # raises when closed
            limit = self._receive_limit if receive_limit is None else receive_limit
            topic = Topic(self, name, data, since, limit)
            self._topics[name] = topic
            if self._welcomed:
                self._send_join(topic)
        try:
            await asyncio.shield(topic.first_join)
        except asyncio.CancelledError:
            if topic.state is TopicState.JOINING and not topic.first_join.done():
                self._forget(topic)
            raise
        return topic

    def _send_join(self, topic: Topic) -> Request:
        body = join_body(topic.name, topic.join_data, topic.last_id, topic.epoch)
        request = self._request(Kind.JOIN, body, f"join {topic.name!r}", topic)
        topic.sent_on = self._generation
        self._transmit(request)
        return request

    async def _leave(self, topic: Topic) -> None:
        request = self._forget(topic)
        if request is not None:
            try:
                await request.future
            except ChannelError:
                pass  # not joined after all, or the connection dropped: left either way

    def _forget(self, topic: Topic) -> Request | None:
        """Mark ``topic`` left; tell the server when connected (the request to wait on)."""
        if topic.state is TopicState.LEFT or topic.state is TopicState.FAILED:
            return None
        topic.ended(ChannelError(CLOSED, f"left {topic.name!r}"))
        self._pending.fail_topic(topic, ChannelError(NOT_JOINED, f"{topic.name!r} was left"))
        if self._topics.get(topic.name) is topic:
            del self._topics[topic.name]
        if not self._welcomed:
            return None
        request = self._request(Kind.LEAVE, leave_body(topic.name), f"leave {topic.name!r}")
        request.future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._transmit(request)
        return request

    async def _publish(self, topic: Topic, data: Any) -> str:
        what = f"publish on {topic.name!r}"
        if topic.state is TopicState.LEFT or topic.state is TopicState.FAILED:
            raise ChannelError(NOT_JOINED, f"{what}: the topic is {topic.state.value}")
        # `once` (1-64 characters): 32 hex digits, unique without coordination.
        request = self._request(Kind.PUB, pub_body(topic.name, data, uuid.uuid4().hex),
                                what, topic)
        self._submit(request)
        reply = await request.future
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
            raise ServerProtocolError(f"the reply to {what} lacks a string 'id'",
                                      frame=repr(reply))
        message_id: str = reply["id"]
        return message_id

    async def _presence(self, topic: Topic) -> list[Member]:
        what = f"presence of {topic.name!r}"
        request = self._request(Kind.PRESENCE, presence_body(topic.name), what, topic)
        self._submit(request)
        reply = await request.future
        members = reply.get("members") if isinstance(reply, dict) else None
        if not isinstance(members, list) or not all(
                isinstance(m, dict) and isinstance(m.get("conn"), str) for m in members):
            raise ServerProtocolError(f"the reply to {what} lacks a list of members",
                                      frame=repr(reply))
        return [Member(m["conn"], m.get("data")) for m in members]

    async def _presence_count(self, topic: Topic) -> int:
        what = f"presence count of {topic.name!r}"
        request = self._request(Kind.PRESENCE, presence_body(topic.name, count=True), what,
                                topic)
        self._submit(request)
        reply = await request.future
        count = reply.get("count") if isinstance(reply, dict) else None
        if type(count) is not int or count < 0:
            raise ServerProtocolError(f"the reply to {what} lacks a count",
                                      frame=repr(reply))
        return count

    async def call(self, name: str, data: Any = None, *, timeout: float | None = 30.0
                   ) -> Any:
        """Run the server's ``@app.rpc(name)`` handler and return what it returned.

        ``timeout`` (s, default 30, the server's; at most 300) bounds the whole call,
        time spent waiting for a connection included. Raises ``ChannelError``:
        ``timeout``, ``not_found``, ``invalid``, ``error``, ``disconnected`` (in flight
        when the connection dropped: it may or may not have run), ``queue_full``...
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        request = self._request(Kind.CALL, call_body(name, data), f"call {name!r}",
                                deadline=deadline)
        self._submit(request)
        if timeout is None:
            return await request.future
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except asyncio.TimeoutError:
            if request.ref is not None:  # sent: let the server's `timeout` come first
                try:
                    return await asyncio.wait_for(request.future, CALL_GRACE)
                except asyncio.TimeoutError:
                    pass
            request.future.cancel()  # never sent: it never will be
            raise ChannelError(TIMEOUT, f"no answer to call {name!r} within "
                               f"{timeout:g} s") from None
        except asyncio.CancelledError:
            request.future.cancel()
            raise


def _closed_by_server(ws: Socket) -> Disconnected:
    code = ws.close_code or 1006
    how = f"{code} {ws.close_reason}" if ws.close_reason else str(code)
    return Disconnected(f"the server closed the connection ({how})", code, ws.close_reason)
