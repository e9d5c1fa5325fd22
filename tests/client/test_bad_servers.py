"""What the client does when the server breaks legato.v1 or refuses the handshake
(docs/channels.md, Errors and Frames): fail the connection with the code the server
would use for the same fault (1007 not JSON / not an object, 1003 binary, 1008 an
invalid frame), say which frame and field in ``last_error``, and reconnect; a refusal
that cannot pass closes the client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import fake_servers
import pytest
from ports import free_port
from servers import serve_in_thread

from legato.protocol import accept_key
from legato.client import (
    ChannelError,
    Client,
    ConnectError,
    ServerProtocolError,
    StateChange,
)


@pytest.fixture(scope="module")
def fake_port() -> Iterator[int]:
    with serve_in_thread(fake_servers.app) as port:
        yield port


async def first_failure(client: Client) -> ServerProtocolError:
    """Connect (welcome may come) and return the error the first connection ended with."""
    changes = client.state_changes()
    connecting = asyncio.ensure_future(client.connect())
    async for change in changes:
        if change.state == "disconnected":
            connecting.cancel()
            assert isinstance(change.error, ServerProtocolError), change
            return change.error
    raise AssertionError("no disconnect")


@pytest.mark.parametrize(("case", "close_code", "says"), [
    ("not_json", 1007, "not JSON"),
    ("not_object", 1007, "JSON list, not an object"),
    ("binary", 1003, "binary message"),
    ("ref_not_int", 1008, "'reply' frame whose 'ref' should be a non-negative integer, got str"),
    ("t_not_string", 1008, "'t' is a int"),
    ("message_without_id", 1008, "message frame whose 'id' should be a string, got nothing"),
    ("member_without_conn", 1008, "'member' should be an object with a string \"conn\""),
    ("before_welcome", 1008, "Reply frame before welcome"),
    ("version_2", 1008, "version 2"),
    ("second_welcome", 1008, "second welcome"),
])
async def test_client_fails_a_bad_server_frame_with_the_matching_close_code(
        fake_port: int, case: str, close_code: int, says: str) -> None:
    client = Client(f"ws://127.0.0.1:{fake_port}/fake?case={case}", base_delay=0.05,
                    max_delay=0.05)
    try:
        error = await asyncio.wait_for(first_failure(client), 5)
        assert error.code == "protocol"
        assert error.close_code == close_code
        assert says in error.message
        assert client.last_error is error
        for _ in range(100):  # it reconnects: one server bug does not end the client
            if fake_servers.connections.get(case, 0) >= 2:
                break
            await asyncio.sleep(0.02)
        assert fake_servers.connections[case] >= 2
    finally:
        await client.close()
    assert fake_servers.closed_with[case][0] == close_code


async def test_client_without_welcome_gives_up_on_the_connection_after_open_timeout(
        fake_port: int) -> None:
    client = Client(f"ws://127.0.0.1:{fake_port}/silent", open_timeout=0.3, base_delay=5)
    try:
        error = await asyncio.wait_for(first_failure(client), 5)
        assert "no welcome frame within 0.3 s" in error.message
    finally:
        await client.close()


async def test_connect_to_a_route_that_does_not_speak_legato_v1_is_refused_for_good(
        fake_port: int) -> None:
    client = Client(f"ws://127.0.0.1:{fake_port}/plain")
    with pytest.raises(ConnectError) as caught:
        await asyncio.wait_for(client.connect(), 5)
    assert caught.value.permanent and caught.value.code == "refused"
    assert client.state == "closed"


async def test_connect_to_a_missing_path_raises_with_the_status_and_closes(fake_port: int
                                                                          ) -> None:
    client = Client(f"ws://127.0.0.1:{fake_port}/nothing-here")
    with pytest.raises(ConnectError) as caught:
        await asyncio.wait_for(client.connect(), 5)
    assert caught.value.status == 404
    assert client.state == "closed"
    with pytest.raises(ChannelError) as again:
        await client.join("room:a")
    assert again.value.code == "closed"


async def test_connect_to_nothing_keeps_retrying_with_backoff(fake_port: int) -> None:
    client = Client(f"ws://127.0.0.1:{free_port()}/_legato/ws", base_delay=0.01,
                    max_delay=0.02)
    changes: list[StateChange] = []
    client.on_state(changes.append)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.connect(), 0.5)
    assert client.state in ("connecting", "disconnected")
    assert isinstance(client.last_error, ConnectError)
    assert client.last_error.code == "unreachable"
    assert sum(c.state == "connecting" for c in changes) >= 3
    await client.close()
    assert changes[-1].state == "closed"


# --------------------------------------------------------- RFC 6455 below legato.v1

WELCOME_FRAME = b"\x81" + bytes([len(fake_servers.WELCOME)]) + fake_servers.WELCOME.encode()


async def raw_server(after_welcome: bytes) -> tuple[asyncio.Server, int, list[bytes]]:
    """A hand-written WebSocket server: a valid 101 for legato.v1, ``welcome``, then
    ``after_welcome`` as raw bytes; it records what the client sends back."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Protocol: legato.v1\r\n"
                     b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
                     + WELCOME_FRAME + after_welcome)
        received.append(await reader.read(1000))
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


@pytest.mark.parametrize(("frame", "close_code"), [
    (b"\x81\x02\xff\xfe", 1007),  # RFC 6455 §8.1: a text message that is not UTF-8
    (b"\x81\x82abcd\x00\x00", 1002),  # §5.1: a client MUST fail a masked frame
    (b"\x83\x00", 1002),  # §5.2: a reserved opcode
])
async def test_client_fails_a_server_that_breaks_rfc_6455_with_its_code(
        frame: bytes, close_code: int) -> None:
    server, port, received = await raw_server(frame)
    client = Client(f"ws://127.0.0.1:{port}/", base_delay=5)
    try:
        error = await asyncio.wait_for(first_failure(client), 5)
        assert error.close_code == close_code
        assert "server broke RFC 6455" in error.message
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.02)
        # The client's masked Close frame: FIN+Close, masked, 2 bytes of code + reason.
        assert received[0][0] == 0x88
        masked = received[0]
        code = bytes(b ^ m for b, m in zip(masked[6:8], masked[2:4], strict=True))
        assert int.from_bytes(code, "big") == close_code
    finally:
        await client.close()
        server.close()


async def test_reconnect_advice_sets_the_delay_instead_of_the_backoff(fake_port: int
                                                                      ) -> None:
    """docs/channels.md: after advice the client waits delay + random(0, jitter), here
    300 ms, although its backoff (30 s base) would wait far longer."""
    client = Client(f"ws://127.0.0.1:{fake_port}/advice", base_delay=30, max_delay=30)
    try:
        await asyncio.wait_for(client.connect(), 5)
        for _ in range(100):
            if len(fake_servers.visits) >= 2:
                break
            await asyncio.sleep(0.02)
        first, second = fake_servers.visits[:2]
        assert 0.28 <= second - first < 1.5
        assert isinstance(client.last_error, ChannelError)
    finally:
        await client.close()
