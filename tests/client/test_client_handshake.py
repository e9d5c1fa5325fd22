"""The opening handshake as the client runs it (RFC 6455 §4.1 on legato's
ClientHandshake): extra headers reach the App's hooks (authenticate the connection
there, docs/channels.md Endpoints), and wss:// verifies the server's certificate."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import WS_PATH, serve_in_thread

from legato import App
from legato.client import ChannelError, Client, ConnectError
from legato.exceptions import HTTPError
from legato.websocket import WebSocket

secured = App()
secured.channel("room:{id}")


@secured.before_request(websocket=True)
async def need_token(ws: WebSocket) -> None:
    if ws.headers.get("x-token") != "sesame":
        raise HTTPError(403, "no token")


@pytest.fixture(scope="module")
def secured_url() -> Iterator[str]:
    with serve_in_thread(secured) as port:
        yield f"ws://127.0.0.1:{port}{WS_PATH}"


async def test_handshake_headers_reach_the_apps_hooks(secured_url: str) -> None:
    async with Client(secured_url, headers={"X-Token": "sesame"}) as client:
        assert (await client.join("room:a")).state == "joined"


async def test_a_hook_that_refuses_is_a_permanent_connect_error_with_the_body(
        secured_url: str) -> None:
    client = Client(secured_url, transport="websocket")
    with pytest.raises(ConnectError) as caught:
        await client.connect()
    assert caught.value.status == 403 and caught.value.permanent
    assert "no token" in caught.value.details["body"]


async def test_with_auto_a_hook_that_refuses_the_websocket_refuses_the_sse_fallback_too(
        secured_url: str) -> None:
    client = Client(secured_url)
    try:
        with pytest.raises(ConnectError) as caught:
            await asyncio.wait_for(client.connect(), 5)
        assert caught.value.status == 403 and caught.value.permanent
    finally:
        await client.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ssl.SSLContext]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    pem = Path(tmp_path_factory.mktemp("tls")) / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    from channel_apps import app

    with serve_in_thread(app, ssl_certfile=str(pem), ssl_keyfile=str(pem)) as port:
        yield port, client_context


async def test_wss_with_a_trusted_certificate_works(tls: tuple[int, ssl.SSLContext]) -> None:
    port, context = tls
    async with Client(f"wss://127.0.0.1:{port}{WS_PATH}", ssl=context) as client:
        assert await client.call("add", {"a": 20, "b": 22}) == 42


async def test_wss_with_an_untrusted_certificate_is_not_connected(
        tls: tuple[int, ssl.SSLContext]) -> None:
    port, _ = tls
    client = Client(f"wss://127.0.0.1:{port}{WS_PATH}", base_delay=5)
    changes = client.state_changes()
    connecting = asyncio.ensure_future(client.connect())
    async for change in changes:
        if change.state == "disconnected":
            break
    assert isinstance(change.error, ConnectError)
    assert "CERTIFICATE_VERIFY_FAILED" in change.error.message
    await client.close()
    with pytest.raises(ChannelError):
        await connecting


def test_a_url_that_is_not_ws_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="ws://host"):
        Client("http://127.0.0.1/_legato/ws")
