"""One client API for three ways of running an App: the in-process TestClient, and
real sockets to the App served by legato's built-in server or by uvicorn.

Over sockets, the clients are libraries nobody here wrote (httpx for HTTP, the
`websockets` library's sync client for WebSockets, SPEC T2). `LiveClient` mirrors the
TestClient API (`get/post/...`, `websocket_connect(...)` with `send_text`,
`receive_json`...), so a test written once runs the same way in all three modes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
from ports import free_port
import websockets.sync.client as ws_sync
from websockets.exceptions import ConnectionClosed, InvalidStatus

from legato import WebSocketDenied, WebSocketDisconnect, jsoncodec
from legato.server import Server, ServerConfig

MODES = ["testclient", "legato", "uvicorn"]


@contextmanager
def serve_legato(app: Any) -> Iterator[int]:
    server = Server(app, ServerConfig(port=0))  # the server takes the App's settings
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        started.set()
        await serving

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield server.port
    finally:
        loop.call_soon_threadsafe(server.request_exit)
        thread.join(20)
        loop.close()


@contextmanager
def serve_uvicorn(app: Any) -> Iterator[int]:
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                            log_level="warning", ws="websockets")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(20)


class LiveWebSocket:
    """TestClient-style WebSocket session over a real socket (websockets' client)."""

    def __init__(self, conn: Any, timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.accepted_subprotocol = conn.subprotocol
        self.extra_headers = conn.response.headers

    def _recv(self) -> str | bytes:
        try:
            return self.conn.recv(timeout=self.timeout)  # type: ignore[no-any-return]
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise WebSocketDisconnect(rcvd.code if rcvd else 1006,
                                      rcvd.reason if rcvd else "") from None

    def send_text(self, data: str) -> None:
        self.conn.send(data)

    def send_bytes(self, data: bytes) -> None:
        self.conn.send(data)

    def send_json(self, data: Any, mode: str = "text") -> None:
        encoded = jsoncodec.dumps(data)
        self.conn.send(encoded.decode() if mode == "text" else encoded)

    def receive_text(self) -> str:
        message = self._recv()
        if not isinstance(message, str):
            raise TypeError("expected a text message, got a binary one")
        return message

    def receive_bytes(self) -> bytes:
        message = self._recv()
        if not isinstance(message, bytes):
            raise TypeError("expected a binary message, got a text one")
        return message

    def receive_json(self, mode: str = "text") -> Any:
        return jsoncodec.loads(self._recv())

    def receive(self) -> dict[str, Any]:
        try:
            message = self._recv()
        except WebSocketDisconnect as exc:
            return {"type": "websocket.close", "code": exc.code, "reason": exc.reason}
        key = "text" if isinstance(message, str) else "bytes"
        return {"type": "websocket.send", key: message}

    def close(self, code: int = 1000, reason: str = "") -> None:
        """1005 sends a Close frame without a status code (as the TestClient does)."""
        if code == 1005:
            self.conn.close(None)  # websockets' spelling of a Close without a code
        else:
            self.conn.close(code, reason)


class LiveClient:
    """The TestClient API over real sockets to a served App."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, url, **kw)

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.get(url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.post(url, **kw)

    def head(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.head(url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.put(url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.http.delete(url, **kw)

    @contextmanager
    def websocket_connect(self, url: str, subprotocols: list[str] | None = None,
                          headers: dict[str, str] | None = None) -> Iterator[LiveWebSocket]:
        headers = dict(headers or {})
        cookies = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        if cookies:
            headers["cookie"] = cookies
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(ws_sync.connect(
                    f"ws://127.0.0.1:{self.port}{url}",
                    subprotocols=subprotocols,  # type: ignore[arg-type]
                    additional_headers=headers, open_timeout=self.timeout, close_timeout=2))
            except InvalidStatus as exc:
                response = exc.response
                raise WebSocketDenied(response.status_code, response.body or b"",
                                      list(response.headers.raw_items())) from None
            yield LiveWebSocket(conn, self.timeout)

    def close(self) -> None:
        self.http.close()


@contextmanager
def client_for(mode: str, app: Any) -> Iterator[Any]:
    """A client of ``app`` in ``mode`` (see MODES); lifespan runs in every mode."""
    if mode == "testclient":
        from legato import TestClient

        with TestClient(app) as client:
            yield client
        return
    serve = serve_legato if mode == "legato" else serve_uvicorn
    with serve(app) as port:
        client = LiveClient(port)
        try:
            yield client
        finally:
            client.close()
