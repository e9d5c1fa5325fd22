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
