"""Direct writes (legato.server.direct): a connection's Sender sends straight to its
socket while the transport holds nothing and hands the rest to the transport, so the
bytes keep their order and the transport's flow control still applies; send_all is the
hub's broadcast loop over such writers. Real TCP connections over loopback, on asyncio
and uvloop."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from conftest import RunningServer, client_frame, echo_app, open_raw_websocket, parse_frames

from legato.server import direct
from legato.server.serve import new_event_loop

native = pytest.mark.skipif(not direct.NATIVE,
                            reason="compiled module not built (LEGATO_NO_EXTENSIONS=1?)")
IMPLEMENTATIONS = ["python"] + (["native"] if direct.NATIVE else [])


class Recorder(asyncio.Protocol):
    """The server side of a test connection: what the transport told it."""

    def __init__(self, made: asyncio.Future[Recorder]) -> None:
        self.made = made
        self.transport: Any = None
        self.paused = 0
        self.resumed = 0
        self.lost: asyncio.Future[Exception | None] = made.get_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made.set_result(self)

    def pause_writing(self) -> None:
        self.paused += 1

    def resume_writing(self) -> None:
        self.resumed += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class Pair:
    """A real loopback TCP connection: our transport on one end, a plain socket on the
    other."""

    def __init__(self, server: asyncio.Server, proto: Recorder, client: socket.socket,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.server, self.proto, self.client, self.loop = server, proto, client, loop
        self.tls_client: Any = None

    @property
    def transport(self) -> Any:
        return self.proto.transport

    async def read(self, n: int, timeout: float = 10.0) -> bytes:
        got = bytearray()
        while len(got) < n:
            chunk = await asyncio.wait_for(self.loop.sock_recv(self.client, n - len(got)),
                                           timeout)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    async def nothing_arrives(self) -> bool:
        try:
            await asyncio.wait_for(self.loop.sock_recv(self.client, 1), 0.2)
        except asyncio.TimeoutError:
            return True
        return False

    def close(self) -> None:
        if self.tls_client is not None:
            self.tls_client[1].close()
        self.client.close()
        if self.transport is not None:
            self.transport.abort()
        self.server.close()


async def connect(loop: asyncio.AbstractEventLoop, *, rcvbuf: int | None = None,
                  ssl_context: ssl.SSLContext | None = None,
                  client_ssl: ssl.SSLContext | None = None) -> Pair:
    made: asyncio.Future[Recorder] = loop.create_future()
    server = await loop.create_server(lambda: Recorder(made), "127.0.0.1", 0,
                                      ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    client.setblocking(False)
    await loop.sock_connect(client, ("127.0.0.1", port))
    tls_client = None
    if client_ssl is not None:
        tls_client = await asyncio.open_connection(sock=client, ssl=client_ssl,
                                                   server_hostname="127.0.0.1")
    proto = await asyncio.wait_for(made, 10)
    pair = Pair(server, proto, client, loop)
    pair.tls_client = tls_client
    return pair


def run(loop_kind: str, test: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    loop = new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(test(loop), 30))
    finally:
        loop.close()


def on_a_connection(loop_kind: str, test: Callable[[Pair], Awaitable[None]],
                    **connect_args: Any) -> None:
    """Run ``test`` with a fresh connection on a fresh loop of ``loop_kind``."""
    async def main(loop: asyncio.AbstractEventLoop) -> None:
        pair = await connect(loop, **connect_args)
        try:
            await test(pair)
        finally:
            pair.close()

    run(loop_kind, main)


def chunk(i: int, size: int = 16384) -> bytes:
    return struct.pack("!I", i) + bytes([i % 251]) * (size - 4)


# ------------------------------------------------------------------------------ Sender


@native
def test_sender_writes_reach_the_peer_in_order_and_leave_the_transport_empty(
        loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        sender = direct.Sender(pair.transport.get_extra_info("socket").fileno(),
                               pair.transport)
        sender(b"one,")
        sender.write(bytearray(b"two,"))
        sender(memoryview(b"xthree,")[1:])
        sender(b"")
        assert pair.transport.get_write_buffer_size() == 0
        assert await pair.read(14) == b"one,two,three,"

    on_a_connection(loop_kind, test)


@native
def test_sender_hands_what_the_kernel_refuses_to_the_transport_keeping_order(
        loop_kind: str) -> None:
    """A peer that does not read: the socket fills, the rest waits in the transport
    (which pauses the protocol above its high-water mark), and once the peer reads,
    every byte arrives exactly once, in order, including what was written later."""

    async def test(pair: Pair) -> None:
        transport = pair.transport
        transport.set_write_buffer_limits(high=65536)
        sender = direct.Sender(transport.get_extra_info("socket").fileno(), transport)
        sent = 0
        while transport.get_write_buffer_size() == 0:
            sender(chunk(sent))
            sent += 1
            assert sent < 10000, "the kernel never refused a byte"
        for _ in range(8):  # while the transport holds bytes, all go through it
            sender(chunk(sent))
            sent += 1
        assert pair.proto.paused == 1
        expected = b"".join(chunk(i) for i in range(sent))
        assert await pair.read(len(expected)) == expected
        # The transport drained: later writes go straight out again, after the rest.
        for _ in range(50):
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.01)
        assert pair.proto.resumed == 1
        sender(chunk(sent))
        assert transport.get_write_buffer_size() == 0
        assert await pair.read(16384) == chunk(sent)

    on_a_connection(loop_kind, test, rcvbuf=4096)


@native
def test_sender_to_a_reset_peer_raises_nothing_and_the_transport_reports_the_loss(
        loop_kind: str) -> None:
    async def test(loop: asyncio.AbstractEventLoop) -> None:
        pair = await connect(loop)
        try:
            sender = direct.Sender(pair.transport.get_extra_info("socket").fileno(),
                                   pair.transport)
            pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
            pair.client.close()  # RST
            for _ in range(100):
                if pair.proto.lost.done():
                    break
                sender(b"x" * 1000)
                await asyncio.sleep(0.01)
            await asyncio.wait_for(pair.proto.lost, 5)
        finally:
            pair.server.close()

    run(loop_kind, test)


@native
def test_a_detached_sender_writes_nothing(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        fd = pair.transport.get_extra_info("socket").fileno()
        sender = direct.Sender(fd, pair.transport)
        assert sender.fd == fd
        sender.detach()
        assert sender.fd == -1
        sender(b"lost on purpose")
        direct.detach(sender)  # twice is harmless
        assert await pair.nothing_arrives()

    on_a_connection(loop_kind, test)


@native
def test_sender_rejects_bad_arguments_with_clear_errors(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        fd = pair.transport.get_extra_info("socket").fileno()
        with pytest.raises(ValueError, match="fd must be >= 0"):
            direct.Sender(-1, pair.transport)
        sender = direct.Sender(fd, pair.transport)
        with pytest.raises(TypeError):
            sender("text is not bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="keyword"):
            sender(data=b"x")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="exactly one"):
            sender()  # type: ignore[call-arg]
        blank = direct.Sender.__new__(direct.Sender)  # never initialised
        assert blank.fd == -1
        blank(b"goes nowhere")

    on_a_connection(loop_kind, test)


def test_writer_for_gives_a_sender_for_plain_tcp_when_compiled(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        writer = direct.writer_for(pair.transport)
        if direct.NATIVE:
            assert type(writer) is direct.Sender
        else:
            assert writer == pair.transport.write
        writer(b"through the writer")
        assert await pair.read(18) == b"through the writer"

    on_a_connection(loop_kind, test)


def test_writer_for_leaves_tls_to_the_transport(loop_kind: str, tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def test(pair: Pair) -> None:
        assert direct.writer_for(pair.transport) == pair.transport.write

    on_a_connection(loop_kind, test, ssl_context=server_ctx, client_ssl=client_ctx)


@native
def test_held_bytes_leave_with_the_next_write_in_order(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        sender = direct.writer_for(pair.transport)
        assert sender.hold(b"one,") is True  # a new batch: the caller flushes later
        assert sender.hold(bytearray(b"two,")) is False
        assert sender.hold(b"") is False
        assert sender.held == 8
        assert await pair.nothing_arrives()
        sender(b"three,")
        assert sender.held == 0
        assert await pair.read(14) == b"one,two,three,"
        assert sender.hold(b"four,") is True
        sender.flush()
        sender.flush()  # nothing held: nothing sent
        assert await pair.read(5) == b"four,"
        # send_all (the hub) writes after what the connection held, too.
        sender.hold(b"held,")
        assert direct.send_all([Box(sender)], b"broadcast") is None
        assert await pair.read(14) == b"held,broadcast"

    on_a_connection(loop_kind, test)


@native
def test_holding_more_than_64_kib_sends_everything_at_once(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        sender = direct.writer_for(pair.transport)
        sender.hold(b"a" * 40000)
        assert sender.hold(b"b" * 40000) is False
        assert sender.held == 0
        assert await pair.read(80000) == b"a" * 40000 + b"b" * 40000

    on_a_connection(loop_kind, test)


@native
def test_detaching_drops_what_was_held(loop_kind: str) -> None:
    async def test(pair: Pair) -> None:
        sender = direct.writer_for(pair.transport)
        sender.hold(b"never sent")
        sender.detach()
        assert sender.held == 0
        assert sender.hold(b"nor this") is False
        sender.flush()
        assert await pair.nothing_arrives()

    on_a_connection(loop_kind, test)


def test_pipelined_messages_are_answered_in_order(serve: Callable[..., RunningServer]) -> None:
    """Answers to queued messages are held and leave together (one system call with the
    compiled Sender): every answer arrives, in order, whatever the batching."""
    server = serve(echo_app)
    sock, head, rest = open_raw_websocket(server.port)
    try:
        assert head.startswith(b"HTTP/1.1 101")
        texts = [f"message {n:03d} ".encode() * (1 + n % 7) for n in range(200)]
        sock.sendall(b"".join(client_frame(0x1, t) for t in texts))
        data = rest
        while len(parse_frames(data)) < len(texts):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert [payload for _, _, payload in parse_frames(data)] == texts
    finally:
        sock.close()


async def answer_all_but_silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers every message except those saying "silent"."""
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") != "silent":
            await send({"type": "websocket.send", "text": "re: " + message["text"]})


def test_answers_held_for_a_batch_leave_even_when_its_last_message_gets_none(
        serve: Callable[..., RunningServer]) -> None:
    server = serve(answer_all_but_silent)
    sock, head, rest = open_raw_websocket(server.port)
    try:
        sock.sendall(client_frame(0x1, b"a") + client_frame(0x1, b"b") +
                     client_frame(0x1, b"silent"))
        data = rest
        while len(parse_frames(data)) < 2:
            chunk = sock.recv(65536)
            assert chunk, "the held answers never left"
            data += chunk
        assert [payload for _, _, payload in parse_frames(data)] == [b"re: a", b"re: b"]
    finally:
        sock.close()


# ---------------------------------------------------------------------------- send_all


class Box:
    """An outbox as send_all sees it: only its ``fast`` writer matters."""

    __slots__ = ("fast",)

    def __init__(self, fast: Any) -> None:
        self.fast = fast


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_send_all_writes_through_every_fast_writer_and_returns_the_rest(
        loop_kind: str, impl: str) -> None:
    send_all = direct.send_all if impl == "native" else direct.send_all_python

    async def test(loop: asyncio.AbstractEventLoop) -> None:
        pairs = [await connect(loop) for _ in range(3)]
        try:
            got: list[bytes] = []
            boxes = [Box(direct.writer_for(p.transport)) for p in pairs]
            boxes.insert(1, Box(None))
            boxes.append(Box(got.append))
            boxes.append(Box(None))
            slow = send_all(boxes, b"frame")
            assert slow == [boxes[1], boxes[-1]]
            assert got == [b"frame"]
            for p in pairs:
                assert await p.read(5) == b"frame"
            assert send_all([b for b in boxes if b.fast is not None], b"again") is None
            assert send_all([], b"nobody") is None
        finally:
            for p in pairs:
                p.close()

    run(loop_kind, test)


@native
def test_send_all_rejects_what_is_not_a_list_of_outboxes_and_bytes() -> None:
    with pytest.raises(TypeError, match="list"):
        direct.send_all((Box(None),), b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        direct.send_all([Box(None)], "x")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        direct.send_all([object()], b"x")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_send_all_lets_a_writer_error_propagate(impl: str) -> None:
    send_all = direct.send_all if impl == "native" else direct.send_all_python

    def broken(data: bytes) -> None:
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        send_all([Box(broken)], b"x")
