"""The built-in server's WebSockets against clients nobody here wrote.

``websockets`` (asyncio client) and aiohttp's ws client, each with and without
permessage-deflate (RFC 7692), talk to a real legato server on loopback, on asyncio and
on uvloop. Where a library will not misbehave on purpose (never answer a ping or a
Close), a hand-driven socket from conftest does. Each client runs in its own
``asyncio.run`` in the test thread; the server runs in its own thread.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import pytest
import trustme
from websockets.asyncio.client import connect as websockets_connect

from conftest import (
    RunningServer,
    client_frame,
    echo_app,
    close_code_of,
    open_raw_websocket,
    parse_frames,
    read_response,
    serve_lifespan,
)
from ws_peers import LIBRARIES, Refused, peer
ONE_MIB_MINUS_1 = (1 << 20) - 1
#: The subprotocols the app speaks, best first.
APP_SUBPROTOCOLS = ["chat.v2", "chat.v1"]


# ------------------------------------------------------------------------- the app


class WsApp:
    """An ASGI app whose WebSocket behaviour is chosen by the path; what it sees goes to
    ``seen`` (a thread-safe queue the test reads)."""

    def __init__(self) -> None:
        self.seen: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.gate = threading.Event()  # /slow-reader reads nothing until it is set

    def next_seen(self, timeout: float = 3.0) -> tuple[Any, ...]:
        return self.seen.get(timeout=timeout)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await serve_lifespan(receive, send)
        if scope["type"] == "http":
            upgrade = dict(scope["headers"]).get(b"upgrade", b"").decode()
            body = f"plain {scope['method']} {scope['path']} upgrade={upgrade}".encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": body})
            return
        assert (await receive())["type"] == "websocket.connect"
        path: str = scope["path"]
        if path.startswith("/app-closes/"):
            code = int(path.rsplit("/", 1)[1])
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": code, "reason": f"app {code}"})
            await self._until_disconnect(receive)
        elif path == "/deny":
            await send({"type": "websocket.http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain"),
                                    (b"x-denied-by", b"app")]})
            await send({"type": "websocket.http.response.body", "body": b"login ",
                        "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"first"})
        elif path == "/refuse":
            await send({"type": "websocket.close"})
        elif path == "/fail-before-accept":
            raise RuntimeError("the app fails before accepting")
        elif path == "/fail-after-accept":
            await send({"type": "websocket.accept"})
            await receive()
            raise RuntimeError("the app fails after accepting")
        elif path == "/scheme":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": scope["scheme"]})
            await self._until_disconnect(receive)
        elif path == "/slow-reader":
            await self._slow_reader(receive, send)
        else:
            offered = scope["subprotocols"]
            chosen = next((p for p in APP_SUBPROTOCOLS if p in offered), None)
            await send({"type": "websocket.accept", "subprotocol": chosen})
            await self._echo(receive, send)

    async def _echo(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.seen.put(("disconnect", message["code"], message.get("reason", "")))
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    async def _until_disconnect(self, receive: Any) -> None:
        message = await receive()
        self.seen.put(("disconnect", message.get("code"), message.get("reason", "")))

    async def _slow_reader(self, receive: Any, send: Any) -> None:
        """Accept, read nothing until the gate opens, then check every message arrived."""
        await send({"type": "websocket.accept"})
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        expected = 0
        while True:
            message = await receive()
            if message.get("text") == "end" or message["type"] == "websocket.disconnect":
                break
            if int.from_bytes(message["bytes"][:8], "big") != expected:
                break
            expected += 1
        await send({"type": "websocket.send", "text": str(expected)})


@pytest.fixture
def app() -> WsApp:
    return WsApp()


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["deflate", "plain"])
def compression(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


def text_of(size: int) -> str:
    """Exactly ``size`` bytes of UTF-8, multi-byte characters included when it fits."""
    head = "légato €🎵 "  # 16 bytes
    return head + "x" * (size - 16) if size >= 16 else "y" * size


SIZES = [0, 5, 64 * 1024, ONE_MIB_MINUS_1]


# ------------------------------------------------------------------------ messages


def test_client_messages_are_echoed_intact_at_every_size(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool
) -> None:
    server = serve(app)

    async def main() -> None:
        async with peer(library, server.ws_url + "/echo", compression=compression) as ws:
            assert ws.compressed is compression  # RFC 7692 §5: negotiated in the handshake
            for size in SIZES:
                text, data = text_of(size), random.randbytes(size)
                await ws.send(text)
                assert await ws.recv() == text
                await ws.send(data)
                assert await ws.recv() == data

    run(main())


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_client_message_is_reassembled(
        serve: Callable[..., RunningServer], app: WsApp, compression: bool, kind: str
) -> None:
    """RFC 6455 §5.4: a message may arrive as a first frame and continuation frames.
    (aiohttp's client cannot send fragments, so only ``websockets`` here.)"""
    server = serve(app)
    texts = ["frag", "mént", "", "ed " * 30000]
    pieces: list[Any] = texts if kind == "text" else [t.encode() for t in texts]
    expected = "".join(texts) if kind == "text" else "".join(texts).encode()

    async def main() -> None:
        async with peer("websockets", server.ws_url + "/echo",
                        compression=compression) as ws:
            await ws.send(pieces)  # websockets sends an iterable as one fragmented message
            assert await ws.recv() == expected

    run(main())


def test_ping_between_fragments_is_answered_and_the_message_still_arrives(
        serve: Callable[..., RunningServer], app: WsApp) -> None:
    """RFC 6455 §5.4: control frames MAY be injected in the middle of a fragmented
    message; §5.5.2: a Ping is answered with a Pong carrying the same payload."""
    server = serve(app)
    sock, head, rest = open_raw_websocket(server.port, "/echo")
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(client_frame(0x1, b"hello ", fin=False) + client_frame(0x9, b"mid")
                     + client_frame(0x0, b"world"))
        data = rest
        while len(parse_frames(data)) < 2 and (chunk := sock.recv(65536)):
            data += chunk
        assert parse_frames(data)[:2] == [(0xA, True, b"mid"), (0x1, True, b"hello world")]


# ---------------------------------------------------------------------- closing


@pytest.mark.parametrize(("code", "reason"), [(1000, ""), (4000, "client says bye")])
def test_client_close_reaches_the_app_and_is_echoed(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool,
        code: int, reason: str) -> None:
    """RFC 6455 §5.5.1: the endpoint that receives a Close answers with a Close (the
    server echoes the status code); ASGI: the app's receive() gets the code and reason."""
    server = serve(app)

    async def main() -> int:
        async with peer(library, server.ws_url + "/echo", compression=compression) as ws:
            await ws.send("before closing")
            assert await ws.recv() == "before closing"
            return await ws.close(code, reason)

    assert run(main()) == code
    assert app.next_seen() == ("disconnect", code, reason)


@pytest.mark.parametrize("code", [1001, 4001])
def test_app_close_reaches_the_client_with_its_code_and_reason(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool,
        code: int) -> None:
    server = serve(app)

    async def main() -> tuple[int, str]:
        async with peer(library, f"{server.ws_url}/app-closes/{code}",
                        compression=compression) as ws:
            return await ws.closed_by_server()

    assert run(main()) == (code, f"app {code}")
    # The client answered the Close: the app learns the connection ended.
    assert app.next_seen()[0] == "disconnect"


# ---------------------------------------------------------- subprotocols and pings


@pytest.mark.parametrize(("offered", "chosen"), [
    (["chat.v1", "chat.v2"], "chat.v2"),  # the app's preference wins
    (["chat.v1"], "chat.v1"),
    (["other"], None),  # RFC 6455 §4.2.2: no match → no Sec-WebSocket-Protocol at all
])
def test_app_chooses_the_subprotocol_among_those_the_client_offered(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool,
        offered: list[str], chosen: str | None) -> None:
    server = serve(app)

    async def main() -> str | None:
        async with peer(library, server.ws_url + "/echo", compression=compression,
                        subprotocols=tuple(offered)) as ws:
            await ws.send("still works")
            assert await ws.recv() == "still works"
            return ws.subprotocol

    assert run(main()) == chosen


def test_client_ping_is_answered_with_its_payload(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool
) -> None:
    """RFC 6455 §5.5.2-3: a Pong carries the Ping's application data."""
    server = serve(app)

    async def main() -> None:
        async with peer(library, server.ws_url + "/echo", compression=compression) as ws:
            assert await ws.ping(b"are you there") == b"are you there"
            await ws.send("after ping")
            assert await ws.recv() == "after ping"

    run(main())


# ------------------------------------------------------------------- keepalive


def test_client_that_never_answers_pings_is_closed_and_the_app_told(
        serve: Callable[..., RunningServer], app: WsApp) -> None:
    server = serve(app, ws_ping_interval=0.2, ws_ping_timeout=0.2)
    sock, head, rest = open_raw_websocket(server.port, "/echo")
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        assert app.next_seen(timeout=3)[0] == "disconnect"  # without reading anything
        assert time.monotonic() - started < 2.5
        frames = parse_frames(rest + read_response(sock, timeout=2))
    assert frames[0][0] == 0x9  # the unanswered Ping
    closes = [payload for opcode, _, payload in frames if opcode == 0x8]
    assert [close_code_of(p) for p in closes] == [1011]  # RFC 6455 §7.4.1: unexpected condition


def test_client_that_answers_pings_stays_connected(
        serve: Callable[..., RunningServer], app: WsApp, library: str) -> None:
    """Keepalive closes only the silent: several ping intervals pass, the client answers
    each Ping by itself (RFC 6455 §5.5.2), the connection still carries messages."""
    server = serve(app, ws_ping_interval=0.1, ws_ping_timeout=0.2)

    async def with_websockets() -> None:
        async with websockets_connect(server.ws_url + "/echo", ping_interval=None,
                                      proxy=None) as ws:
            await asyncio.sleep(0.7)
            await ws.send("still here")
            assert await asyncio.wait_for(ws.recv(), 5) == "still here"

    async def with_aiohttp() -> None:
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(server.ws_url + "/echo", autoping=True) as ws:
            receiving = asyncio.ensure_future(ws.receive())  # aiohttp answers pings only
            await asyncio.sleep(0.7)  # while a receive() runs
            assert not receiving.done()
            await ws.send_str("still here")
            assert (await asyncio.wait_for(receiving, 5)).data == "still here"

    run(with_websockets() if library == "websockets" else with_aiohttp())
    assert app.next_seen() == ("disconnect", 1000, "")  # ended by the client, not by keepalive


def test_client_that_never_answers_the_close_is_dropped_after_close_timeout(
        serve: Callable[..., RunningServer], app: WsApp) -> None:
    """RFC 6455 §7.1.1: the server closes TCP; it waits for the Close answer only so long."""
    server = serve(app, ws_close_timeout=0.3)
    sock, head, rest = open_raw_websocket(server.port, "/app-closes/1001")
    with sock:
        assert head.startswith(b"HTTP/1.1 101")
        started = time.monotonic()
        data = rest
        sock.settimeout(3)
        while chunk := sock.recv(65536):  # read the server's Close, never answer it
            data += chunk
        elapsed = time.monotonic() - started
    assert [(op, close_code_of(p)) for op, _, p in parse_frames(data)] == [(0x8, 1001)]
    assert 0.2 < elapsed < 2.5
    assert app.next_seen()[0] == "disconnect"


# ------------------------------------------------------------------ backpressure


def test_server_stops_reading_when_the_app_does_not_and_loses_nothing(
        serve: Callable[..., RunningServer], app: WsApp) -> None:
    """With ws_max_queue messages waiting for the app, the server stops reading: TCP
    flow control pushes back on the client, whose send then blocks. Once the app reads,
    every message arrives, in order."""
    server = serve(app, ws_max_queue=4, ws_deflate=None)
    payload = bytes(64 * 1024 - 8)
    cap = 400  # 25 MiB: far more than socket buffers hold

    async def main() -> tuple[int | None, int, str | bytes]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.connect(("127.0.0.1", server.port))
        async with websockets_connect(server.ws_url + "/slow-reader", sock=sock, proxy=None,
                                      compression=None, write_limit=16 * 1024,
                                      ping_interval=None) as ws:
            blocked_at = None
            sent = 0
            while sent < cap:
                sending = asyncio.ensure_future(ws.send(sent.to_bytes(8, "big") + payload))
                done, _ = await asyncio.wait({sending}, timeout=0.5)
                sent += 1
                if not done:
                    blocked_at = sent
                    app.gate.set()  # now the app reads; the blocked send completes
                    await asyncio.wait_for(sending, 10)
                    break
            app.gate.set()  # (if the send never blocked, the assertion below says so)
            for _ in range(5):
                await ws.send(sent.to_bytes(8, "big") + payload)
                sent += 1
            await ws.send("end")
            return blocked_at, sent, await asyncio.wait_for(ws.recv(), 10)

    blocked_at, sent, received = run(main())
    assert blocked_at is not None, f"{cap} messages of 64 KiB sent without blocking"
    assert received == str(sent)  # every message, in order


def test_message_over_the_size_limit_fails_the_connection_with_1009(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool
) -> None:
    """RFC 6455 §7.4.1: 1009, a message too big to process."""
    server = serve(app, ws_max_message_size=1024)

    async def main() -> tuple[int, str]:
        async with peer(library, server.ws_url + "/echo", compression=compression) as ws:
            await ws.send("a" * 1024)  # the limit itself is fine
            assert await ws.recv() == "a" * 1024
            await ws.send(b"b" * 1025)
            return await ws.closed_by_server()

    assert run(main())[0] == 1009
    assert app.next_seen()[:2] == ("disconnect", 1009)


# ------------------------------------------------------------- scope and TLS


@pytest.fixture
def tls(tmp_path: Any) -> tuple[dict[str, str], ssl.SSLContext]:
    """Server settings for a certificate from a throwaway CA, and a client that trusts it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}, client


def test_wss_carries_messages_with_a_trusted_certificate(
        serve: Callable[..., RunningServer], app: WsApp, library: str, compression: bool,
        tls: tuple[dict[str, str], ssl.SSLContext]) -> None:
    settings, client = tls
    server = serve(app, **settings)

    async def main() -> None:
        async with peer(library, server.ws_url.replace("ws:", "wss:") + "/echo",
                        compression=compression, tls=client) as ws:
            for message in (text_of(70_000), random.randbytes(70_000)):
                await ws.send(message)
                assert await ws.recv() == message

    run(main())


@pytest.mark.parametrize("secure", [False, True], ids=["ws", "wss"])
def test_websocket_scope_scheme_is_ws_or_wss(
        serve: Callable[..., RunningServer], app: WsApp,
        tls: tuple[dict[str, str], ssl.SSLContext], secure: bool) -> None:
    """ASGI websocket scope: ``scheme`` is "ws" or "wss", never "http"/"https"."""
    settings, client = tls
    server = serve(app, **(settings if secure else {}))
    url = server.ws_url.replace("ws:", "wss:" if secure else "ws:") + "/scheme"

    async def main() -> str | bytes:
        async with peer("websockets", url, compression=True,
                        tls=client if secure else None) as ws:
            return await ws.recv()

    assert run(main()) == ("wss" if secure else "ws")


# ------------------------------------------------------- refusing the handshake


def refusal(library: str, url: str, **options: Any) -> Refused:
    async def main() -> None:
        async with peer(library, url, compression=True, **options):
            pass

    with pytest.raises(Refused) as info:
        run(main())
    return info.value


def test_denial_response_reaches_the_client_with_its_status_and_body(
        serve: Callable[..., RunningServer], app: WsApp, library: str) -> None:
    """ASGI websocket.http.response extension: the app answers the upgrade with HTTP."""
    server = serve(app)
    refused = refusal(library, server.ws_url + "/deny")
    assert refused.status == 401
    assert refused.headers.get("x-denied-by") == "app"
    if library == "websockets":  # aiohttp does not keep the body of a refusal
        assert refused.body == b"login first"
    response = httpx.get(server.url + "/deny", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, trust_env=False)
    assert (response.status_code, response.text) == (401, "login first")


@pytest.mark.parametrize(("path", "status"), [
    ("/refuse", 403),  # ASGI: websocket.close before accept
    ("/fail-before-accept", 500),
])
def test_app_that_does_not_accept_refuses_the_handshake(
        serve: Callable[..., RunningServer], app: WsApp, library: str, path: str,
        status: int) -> None:
    server = serve(app)
    assert refusal(library, server.ws_url + path).status == status


def test_app_exception_after_accept_closes_with_1011(
        serve: Callable[..., RunningServer], app: WsApp, library: str) -> None:
    """RFC 6455 §7.4.1: 1011, the server met an unexpected condition."""
    server = serve(app)

    async def main() -> tuple[int, str]:
        async with peer(library, server.ws_url + "/fail-after-accept",
                        compression=True) as ws:
            await ws.send("make it fail")
            return await ws.closed_by_server()

    assert run(main())[0] == 1011


def test_origin_not_allowed_is_refused_with_403(
        serve: Callable[..., RunningServer], app: WsApp, library: str) -> None:
    """RFC 6455 §10.2: the server may refuse Origins it does not trust (403)."""
    server = serve(app, ws_allowed_origins=["https://good.example"])
    assert refusal(library, server.ws_url + "/echo",
                   origin="https://evil.example").status == 403

    async def main() -> None:
        for origin in ("https://good.example", None):  # no Origin: not a browser, allowed
            async with peer(library, server.ws_url + "/echo", compression=True,
                            origin=origin) as ws:
                await ws.send("welcome")
                assert await ws.recv() == "welcome"

    run(main())


def test_upgrade_request_is_plain_http_when_websockets_are_off(
        serve: Callable[..., RunningServer], app: WsApp, library: str) -> None:
    server = serve(app, ws=False)
    refused = refusal(library, server.ws_url + "/echo")
    assert refused.status == 200
    if library == "websockets":
        assert refused.body == b"plain GET /echo upgrade=websocket"


def test_server_survives_every_refusal_and_keeps_serving(
        serve: Callable[..., RunningServer], app: WsApp) -> None:
    server = serve(app)
    for path in ("/deny", "/refuse", "/fail-before-accept"):
        refusal("websockets", server.ws_url + path)

    async def main() -> None:
        async with peer("websockets", server.ws_url + "/echo", compression=True) as ws:
            await ws.send("alive")
            assert await ws.recv() == "alive"

    run(main())


# ------------------------------------------------------------------------ memory


def hub_app() -> Any:
    """legato's App whose WebSocket route subscribes to a hub topic (the hub's outbox
    hooks into the session) and echoes."""
    from legato import App, WebSocket

    app = App(hub="memory://")

    # "all": a client that vanishes (1006) ends the handler quietly (a logged
    # traceback would keep the connection's frames alive in pytest's log capture).
    @app.websocket("/echo", caught_close_codes="all")
    async def echo(ws: WebSocket) -> None:
        async with app.hub.subscribe(ws, "room"):
            async for message in ws:
                await ws.send(message)

    @app.get("/")
    async def index() -> str:
        return "ok"

    return app


@pytest.mark.parametrize("make_app", [lambda: echo_app, hub_app], ids=["asgi", "app+hub"])
def test_closed_connections_are_freed_without_the_cyclic_gc(
        serve: Callable[..., RunningServer], make_app: Callable[[], Any]) -> None:
    """A finished connection (WebSocket closed by either side, HTTP keep-alive or not)
    leaves no reference cycle behind: reference counting frees it at once, so a busy
    server neither holds dead connections until a collection nor pays for collections."""
    from legato.hub.outbox import Outbox
    from legato.protocol import Connection
    from legato.server.http import HttpProtocol
    from legato.server.websocket import WebSocketSession
    from legato.websocket import WebSocket

    server = serve(make_app())
    kinds = (HttpProtocol, WebSocketSession, Connection, WebSocket, Outbox)
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            sock, _, _ = open_raw_websocket(server.port, "/echo")
            sock.sendall(client_frame(0x1, b"hello"))
            sock.sendall(client_frame(0x8, (1000).to_bytes(2, "big")))
            while sock.recv(4096):
                pass  # until the server closes after echoing our Close
            sock.close()
        sock, _, _ = open_raw_websocket(server.port, "/echo")
        sock.close()  # the client vanishes without a closing handshake
        with socket.create_connection(("127.0.0.1", server.port)) as http:
            # two requests on one connection, the second one closing it
            http.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(http).count(b"HTTP/1.1 200") == 2
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            state = server.server.state
            if state is not None and not state.connections and not state.tasks and \
                    not any(isinstance(o, kinds) for o in gc.get_objects()):
                break
            time.sleep(0.02)
        alive = [type(o).__name__ for o in gc.get_objects() if isinstance(o, kinds)]
        assert alive == []
    finally:
        gc.enable()
