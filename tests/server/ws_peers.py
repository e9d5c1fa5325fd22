"""One small face for two WebSocket client libraries nobody here wrote: ``websockets``
(asyncio client) and aiohttp, so interop tests run the same steps against both."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

LIBRARIES = ["websockets", "aiohttp"]


class Refused(Exception):
    """The server answered the upgrade with a plain HTTP response."""

    def __init__(self, status: int, body: bytes | None, headers: Any) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


class WebsocketsPeer:
    """``websockets``' asyncio client; it answers pings by itself."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.subprotocol = ws.subprotocol
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        self.compressed = "permessage-deflate" in extensions

    async def send(self, data: Any) -> None:
        await self.ws.send(data)

    async def recv(self) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), 5)  # type: ignore[no-any-return]

    async def ping(self, payload: bytes) -> bytes:
        await asyncio.wait_for(await self.ws.ping(payload), 5)  # resolves on its own pong
        return payload

    async def close(self, code: int, reason: str) -> int:
        """Close; the code the server's Close answered with."""
        await self.ws.close(code, reason)
        return int(self.ws.protocol.close_rcvd.code)

    async def closed_by_server(self) -> tuple[int, str]:
        with pytest.raises(ConnectionClosed) as info:
            await self.recv()
        assert info.value.rcvd is not None
        return info.value.rcvd.code, info.value.rcvd.reason


class AiohttpPeer:
    """aiohttp's client with autoping off, so that ``ping()`` sees the Pong itself (it
    answers nothing while no ``receive()`` runs anyway)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.subprotocol = ws.protocol
        self.compressed = ws.compress > 0

    async def send(self, data: str | bytes) -> None:
        await (self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data))

    async def _message(self) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self.ws.receive(), 5)

    async def recv(self) -> str | bytes:
        message = await self._message()
        assert message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), message
        return message.data  # type: ignore[no-any-return]

    async def ping(self, payload: bytes) -> bytes:
        await self.ws.ping(payload)
        message = await self._message()
        assert message.type is aiohttp.WSMsgType.PONG, message
        return message.data  # type: ignore[no-any-return]

    async def close(self, code: int, reason: str) -> int:
        await self.ws.close(code=code, message=reason.encode())
        assert self.ws.close_code is not None
        return self.ws.close_code

    async def closed_by_server(self) -> tuple[int, str]:
        message = await self._message()
        assert message.type is aiohttp.WSMsgType.CLOSE, message
        return message.data, message.extra or ""


Peer = WebsocketsPeer | AiohttpPeer


@asynccontextmanager
async def peer(library: str, url: str, *, compression: bool,
               subprotocols: tuple[str, ...] = (), origin: str | None = None,
               tls: ssl.SSLContext | None = None) -> AsyncIterator[Peer]:
    """A connected client of ``library``; ``Refused`` if the server said no."""
    if library == "websockets":
        try:
            ws = await websockets_connect(
                url, compression="deflate" if compression else None,
                subprotocols=list(subprotocols) or None, origin=origin, max_size=2**21,
                ping_interval=None, proxy=None, open_timeout=5, close_timeout=2,
                **({"ssl": tls} if tls else {}))
        except InvalidStatus as exc:
            raise Refused(exc.response.status_code, exc.response.body,
                          exc.response.headers) from None
        try:
            yield WebsocketsPeer(ws)
        finally:
            await ws.close()
        return
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                url, compress=15 if compression else 0, protocols=subprotocols,
                origin=origin, autoping=False, max_msg_size=2**21, ssl=tls or True)
        except aiohttp.WSServerHandshakeError as exc:
            raise Refused(exc.status, None, exc.headers) from None
        try:
            yield AiohttpPeer(ws)
        finally:
            await ws.close()
