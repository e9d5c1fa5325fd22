"""One pipelined command connection to Redis: every command of a loop iteration in one
write, replies matched in order, a bounded queue, and an honest answer on failure.

Why not a pool: a pool answers concurrency with more connections and a wait for a free
one, and under a burst (20,000 concurrent publishes, 10,000 presence removals) the wait
runs out while Redis is idle (issue 18 item 1). Redis answers the commands of one
connection in the order they came, so one connection carries any number of concurrent
callers: each gets its own reply, and the order in which a caller sent its commands is
the order Redis runs them (a publisher's messages keep their order).

What a caller learns (:meth:`Pipeline.call`):

- the reply (a :class:`~legato.hub.resp.ReplyError` value for ``-ERR``: the command was
  refused, not run);
- :class:`~legato.hub.backend.HubUnavailable`: the command was **not written** (no
  connection could be made, the connection is stopped, or it broke before the command's
  turn): it certainly did not run;
- :class:`~legato.hub.backend.PublishOutcomeUnknown`: the command was written and no reply
  came (the connection broke, or Redis stayed silent for ``timeout`` seconds: hung,
  SIGSTOPped, partitioned): it may have run, or may run later. Redis is then declared
  unreachable: the connection is aborted and ``on_stall`` is called.

Limits: ``max_pending`` commands queued or awaiting their reply (10,000 by default:
about 2 MB of 64-byte publishes, and on a healthy Redis well under a second of work);
a caller beyond it **waits for room** in arrival order (backpressure, as
``asyncio.Queue.put``), and fails with ``HubUnavailable`` only if the connection fails
meanwhile. Silence: with commands outstanding, ``timeout`` seconds without a byte from
Redis (not per command: a long backlog being answered is progress).

States (all transitions in :meth:`Pipeline._set_state`)::

    IDLE ──a command──▶ CONNECTING ──handshake answered──▶ READY
      ▲                     │ fails: queued commands fail     │ broken / silent
      └─────────────────────┴─────────────────────────────────┘
    any ──close()──▶ CLOSED
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from .backend import HubUnavailable, PublishOutcomeUnknown
from .resp import ProtocolError, Reply, ReplyError, ReplyParser, encode_command

__all__ = ["Command", "Pipeline", "State", "accepts", "handshake", "open_connection"]

logger = logging.getLogger("legato.hub")

Command = tuple[bytes | str | int, ...]


class State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    READY = "ready"
    CLOSED = "closed"


_TRANSITIONS = {
    State.IDLE: {State.CONNECTING, State.CLOSED},
    State.CONNECTING: {State.READY, State.IDLE, State.CLOSED},
    State.READY: {State.IDLE, State.CLOSED},
    State.CLOSED: set(),
}


class _Protocol(asyncio.Protocol):
    """The socket's side: bytes in go to the parser, replies to the pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.parser = ReplyParser()
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        try:
            replies = self.parser.replies()
        except ProtocolError as exc:
            self.pipeline._broken(self, exc)
            return
        self.pipeline._answered(self, replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipeline._broken(self, exc or ConnectionError("Redis closed the connection"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.pipeline._kick()


class Pipeline:
    """Commands to one Redis over one connection, pipelined (see the module docstring).

    ``options``: what ``redis.asyncio.connection.parse_url`` reads from a URL (host,
    port or path, db, username, password; ``rediss://`` for TLS). ``on_ready`` is called
    each time a connection is made (Redis answers), ``on_stall`` when Redis went silent.
    """

    def __init__(self, options: dict[str, Any], *, client_name: str, timeout: float,
                 max_pending: int = 10_000,
                 on_ready: Callable[[], None] | None = None,
                 on_stall: Callable[[], None] | None = None) -> None:
        if max_pending < 1 or timeout <= 0:
            raise ValueError("max_pending must be >= 1 and timeout > 0")
        self.options = options
        self.client_name = client_name
        self.timeout = timeout
        self.max_pending = max_pending
        self.on_ready = on_ready
        self.on_stall = on_stall
        self.state = State.IDLE
        self._proto: _Protocol | None = None
        self._queue: deque[tuple[bytes, asyncio.Future[Reply]]] = deque()  # not written
        self._inflight: deque[asyncio.Future[Reply]] = deque()  # written, unanswered
        self._waiters: deque[asyncio.Future[None]] = deque()  # callers waiting for room
        self._reserved = 0  # callers let in that have not queued yet
        self._handshaking = 0  # of _inflight: the connection's own commands
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._heard = 0.0  # loop time of the last byte from Redis (or of waiting's start)
        self._connecting: asyncio.Task[None] | None = None
        #: Counters: commands written, connections made, silences detected.
        self.written = 0
        self.connections = 0
        self.stalls = 0

    # --------------------------------------------------------------------- calling

    async def call(self, *args: bytes | str | int) -> Reply:
        """Run one command; see the module docstring for what it raises."""
        return (await self.call_many([args]))[0]

    async def call_many(self, commands: list[Command]) -> list[Reply]:
        """Run commands back to back (nobody else's in between), replies in order."""
        if self.state is State.CLOSED:
            raise HubUnavailable("the hub's Redis connection is stopped")
        if self._waiters or self.pending + self._reserved >= self.max_pending:
            await self._room()
        loop = asyncio.get_running_loop()
        futures = []
        for args in commands:
            future: asyncio.Future[Reply] = loop.create_future()
            self._queue.append((encode_command(*args), future))
            futures.append(future)
        self._kick()
        try:
            return [await future for future in futures]
        except BaseException:
            for future in futures:  # the caller hears the first failure, only once
                future.add_done_callback(_retrieved)
            raise

    @property
    def pending(self) -> int:
        """Commands queued or awaiting their reply (a connection's handshake aside)."""
        return len(self._queue) + len(self._inflight) - self._handshaking

    async def _room(self) -> None:
        """Wait, in arrival order, until the queue has room (or the connection fails)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake()
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._reserved -= 1  # woken, then cancelled: its room goes to the next
                self._wake()
            with suppress(ValueError):
                self._waiters.remove(waiter)
            raise
        self._reserved -= 1  # the caller queues its commands now, without a pause

    def _wake(self) -> None:
        """Let in as many waiting callers as there is room for, first come first."""
        room = self.max_pending - self.pending - self._reserved
        waiters = self._waiters
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._reserved += 1
                room -= 1

    # --------------------------------------------------------------------- writing

    def _kick(self) -> None:
        """Something to send: write it this loop iteration, connecting first if need be."""
        if self.state is State.READY:
            if not self._flush_scheduled and self._queue:
                if not self._inflight and len(self._queue) == 1:
                    self._flush()  # alone: no batch to wait for, save a loop iteration
                    return
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        elif self.state is State.IDLE and self._queue:
            self._set_state(State.CONNECTING)
            self._connecting = asyncio.get_running_loop().create_task(
                self._connect(), name="legato-hub-redis-connect")

    def _flush(self) -> None:
        """Every queued command in one write (the pipelining)."""
        self._flush_scheduled = False
        proto = self._proto
        if self.state is not State.READY or proto is None or proto.transport is None \
                or proto.paused or not self._queue:
            return  # resume_writing / the next connection calls _kick again
        chunks, queue, inflight = [], self._queue, self._inflight
        if not inflight:
            self._heard = asyncio.get_running_loop().time()  # the silence starts now
        while queue:
            data, future = queue.popleft()
            if future.done():  # cancelled while queued: never sent
                continue
            chunks.append(data)
            inflight.append(future)
        if chunks:
            self.written += len(chunks)
            proto.transport.write(b"".join(chunks))
            self._arm()

    # --------------------------------------------------------------------- replies

    def _answered(self, proto: _Protocol, replies: list[Reply]) -> None:
        if proto is not self._proto:
            return
        self._heard = asyncio.get_running_loop().time()
        inflight = self._inflight
        for reply in replies:
            if not inflight:
                self._broken(proto, ProtocolError("a reply to no command"))
                return
            future = inflight.popleft()
            if self._handshaking:
                self._handshaking -= 1  # the handshake's replies come first
            if not future.done():
                future.set_result(reply)
        self._wake()

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.timeout, self._watch)

    def _watch(self) -> None:
        """Outstanding commands and ``timeout`` seconds of silence: Redis is hung."""
        self._watchdog = None
        if not self._inflight or self._proto is None:
            return
        silent = asyncio.get_running_loop().time() - self._heard
        if silent < self.timeout:
            self._watchdog = asyncio.get_running_loop().call_later(
                self.timeout - silent, self._watch)
            return
        self.stalls += 1
        logger.warning("hub: Redis did not answer for %.1f s; declaring it unreachable",
                       silent)
        self._broken(self._proto, TimeoutError(f"no reply from Redis in {self.timeout} s"))
        if self.on_stall is not None:
            self.on_stall()

    # --------------------------------------------------------------------- faults

    def _broken(self, proto: _Protocol, exc: BaseException) -> None:
        """The connection is unusable: what was written has an unknown outcome; what
        was not is sent on the next connection (tried at once, if anything waits)."""
        if proto is not self._proto:
            return
        self._proto = None
        if proto.transport is not None:
            proto.transport.abort()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        inflight, self._inflight = self._inflight, deque()
        self._handshaking = 0
        unknown = PublishOutcomeUnknown(f"Redis did not answer ({exc}): the command may "
                                        "or may not have run")
        for future in inflight:
            if not future.done():
                future.set_exception(unknown)
        if self.state is State.READY:
            self._set_state(State.IDLE)
        self._kick()
        self._wake()

    def _fail_queued(self, exc: HubUnavailable) -> None:
        """Nothing queued was written: each caller learns it certainly did not run."""
        queue, self._queue = self._queue, deque()
        for _, future in queue:
            if not future.done():
                future.set_exception(exc)
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)

    # --------------------------------------------------------------------- connecting

    async def _connect(self) -> None:
        """Connect and run the handshake (AUTH, SELECT, CLIENT SETNAME) before anything
        queued is written: a Redis that does not answer it fails the queue as unsent."""
        proto = _Protocol(self)
        try:
            await asyncio.wait_for(open_connection(self.options, proto), self.timeout)
            self._proto = proto
            replies = await asyncio.wait_for(self._handshake(proto), self.timeout)
            refused = [r for r in replies if isinstance(r, ReplyError)]
            if refused:
                raise ConnectionError(f"Redis refused the connection: {refused[0]}")
        except Exception as exc:  # noqa: BLE001 - whatever it is, the queue must hear
            if proto.transport is not None:
                proto.transport.abort()
            self._proto = None
            self._inflight.clear()
            self._handshaking = 0
            if self._set_state(State.IDLE):
                self._fail_queued(HubUnavailable(f"cannot connect to Redis: {exc!r}"))
            return
        finally:
            self._connecting = None
        if not self._set_state(State.READY):  # closed meanwhile
            proto.transport.abort()  # type: ignore[union-attr]
            return
        self.connections += 1
        self._kick()
        if self.on_ready is not None:
            self.on_ready()

    async def _handshake(self, proto: _Protocol) -> list[Reply]:
        commands = handshake(self.options, self.client_name)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._inflight.extend(futures)
        self._handshaking = len(futures)
        assert proto.transport is not None
        proto.transport.write(b"".join(encode_command(*c) for c in commands))
        return [await f for f in futures]

    def _set_state(self, state: State) -> bool:
        if state not in _TRANSITIONS[self.state]:
            return False
        logger.debug("hub redis pipeline %s: %s → %s", self.client_name, self.state.name,
                     state.name)
        self.state = state
        return True

    async def close(self) -> None:
        """Stop: queued commands fail as unsent, outstanding ones as unknown."""
        if not self._set_state(State.CLOSED):
            return
        connecting = self._connecting
        if connecting is not None:
            connecting.cancel()
            with suppress(asyncio.CancelledError):
                await connecting
        self._fail_queued(HubUnavailable("the hub's Redis connection is stopped"))
        proto, self._proto = self._proto, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for future in self._inflight:
            if not future.done():
                future.set_exception(PublishOutcomeUnknown("stopped before Redis answered"))
        self._inflight.clear()
        if proto is not None and proto.transport is not None:
            proto.transport.close()


async def open_connection(options: dict[str, Any], protocol: asyncio.Protocol) -> None:
    """Connect ``protocol`` to the Redis of ``options`` (TCP, TLS or a Unix socket)."""
    loop = asyncio.get_running_loop()
    if options.get("path"):
        await loop.create_unix_connection(lambda: protocol, options["path"])
        return
    context = None
    if "SSL" in getattr(options.get("connection_class"), "__name__", ""):
        context = tls_context(options)
    await loop.create_connection(lambda: protocol, options.get("host", "127.0.0.1"),
                                 int(options.get("port", 6379)), ssl=context)


class _Probe(asyncio.Protocol):
    transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport


async def accepts(options: dict[str, Any], timeout: float) -> bool:
    """Does the address of ``options`` accept a connection (a probe: connect, close)?"""
    probe = _Probe()
    try:
        await asyncio.wait_for(open_connection(options, probe), timeout)
    except (OSError, asyncio.TimeoutError, ssl.SSLError):
        return False
    finally:
        if probe.transport is not None:
            probe.transport.close()
    return True


def tls_context(options: dict[str, Any]) -> ssl.SSLContext:
    """``rediss://``: verified against the system's CAs (or ``ssl_ca_certs``);
    ``ssl_cert_reqs=none`` turns verification off, ``ssl_certfile``/``ssl_keyfile``
    give a client certificate (the URL options redis-py reads)."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if str(options.get("ssl_cert_reqs", "required")).lower() in ("none", "cert_none"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    return context


def handshake(options: dict[str, Any], client_name: str) -> list[Command]:
    """What a new connection sends first: AUTH, SELECT, CLIENT SETNAME."""
    commands: list[Command] = []
    if options.get("password"):
        user = options.get("username")
        commands.append(("AUTH", user, options["password"]) if user
                        else ("AUTH", options["password"]))
    if int(options.get("db") or 0):
        commands.append(("SELECT", int(options["db"])))
    commands.append(("CLIENT", "SETNAME", client_name))
    return commands


def _retrieved(future: asyncio.Future[Reply]) -> None:
    """Mark a reply's failure as seen (its call already raised one)."""
    if not future.cancelled():
        future.exception()
