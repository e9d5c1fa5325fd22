"""HTTP/1.1 features of the built-in server: persistent connections, pipelining, chunked
bodies both ways, HEAD, 100-continue, flow control, the ASGI error contract and lifespan.

Raw sockets pin the exact bytes; httpx (an independent client) checks the same server
from the outside.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from conftest import echo_app, read_body, run_server
from raw_http import RawConnection, expect_rejection, request

KiB, MiB = 1 << 10, 1 << 20
SETTINGS: dict[str, Any] = {"lifespan": "off", "shutdown_timeout": 0.5}


async def respond(send: Any, body: bytes, status: int = 200,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def wait_for(event: threading.Event) -> None:
    """Let the test thread decide when an app goes on."""
    while not event.is_set():
        await asyncio.sleep(0.005)


class TestRFC9112Section9_PersistentConnections:
    # RFC 9112 §9.3: "HTTP/1.1 defaults to the use of "persistent connections", allowing
    # multiple requests and responses to be carried over a single connection."
    # §9.6: "A server that receives a "close" connection option MUST initiate closure of
    # the connection after it sends the final response ... The server MUST NOT process
    # any further requests received on that connection."

    def test_several_requests_are_served_on_one_connection(self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        for n in range(5):
            conn.send(request("POST", f"/{n}", body=b"x" * n))
            response = conn.response()
            assert response.body == f"POST /{n} ".encode() + b"x" * n
            assert response.header("connection") is None

    def test_connection_close_from_the_client_ends_the_connection_after_its_response(
            self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(request("GET", "/last", [("Connection", "close")]) + request("GET", "/never"))
        response = conn.response()
        assert response.body == b"GET /last "
        assert response.header("connection") == b"close"
        assert conn.rest() == b""

    def test_connection_close_from_the_app_ends_the_connection_after_its_response(self, serve):
        async def app(scope, receive, send):
            await respond(send, b"bye", headers=[(b"Connection", b"close")])

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request() + request("GET", "/never"))
        response = conn.response()
        assert (response.body, response.values("connection")) == (b"bye", [b"close"])
        assert conn.rest() == b""

    def test_http_1_0_request_is_answered_and_the_connection_closed(self, serve):
        # RFC 9112 §9.3: without "keep-alive", an HTTP/1.0 connection does not persist.
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(b"POST /old HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
        response = conn.response()
        assert response.status_line == b"HTTP/1.1 200 OK"
        assert (response.body, response.header("connection")) == (b"POST /old hi", b"close")
        assert conn.rest() == b""


def staggered_app() -> Any:
    """Request /n sleeps longer the earlier it is, so answers in finishing order would
    come out reversed."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        n = int(scope["path"].strip("/"))
        await asyncio.sleep((5 - n) * 0.04)
        await respond(send, f"{n}:".encode() + body)

    return app


class TestRFC9112Section9_3_2_Pipelining:
    # RFC 9112 §9.3.2: "A server MAY process a sequence of pipelined requests in parallel
    # if they all have safe methods, but it MUST send the corresponding responses in the
    # same order that the requests were received."

    def test_five_pipelined_requests_are_answered_in_order(self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(b"".join(request("GET", f"/{n}") for n in range(5)))
        assert [conn.response().body for _ in range(5)] == [f"GET /{n} ".encode()
                                                           for n in range(5)]

    def test_responses_keep_request_order_when_earlier_requests_take_longer(self, serve):
        conn = RawConnection.open(serve(staggered_app(), **SETTINGS))
        conn.send(b"".join(request("GET", f"/{n}") for n in range(5)))
        assert [conn.response().body for _ in range(5)] == [b"0:", b"1:", b"2:", b"3:", b"4:"]

    def test_pipelined_bodies_stay_with_their_requests(self, serve):
        conn = RawConnection.open(serve(staggered_app(), **SETTINGS))
        conn.send(request("POST", "/0", body=b"zero")
                  + request("POST", "/1", [("Transfer-Encoding", "chunked")])
                  + b"3\r\none\r\n0\r\n\r\n"
                  + request("POST", "/2", body=b"two"))
        assert [conn.response().body for _ in range(3)] == [b"0:zero", b"1:one", b"2:two"]

    def test_more_requests_than_max_pipelined_are_all_answered_in_order(self, serve):
        conn = RawConnection.open(serve(echo_app, max_pipelined=4, **SETTINGS))
        conn.send(b"".join(request("GET", f"/{n}") for n in range(40)))
        assert [conn.response().body for _ in range(40)] == [f"GET /{n} ".encode()
                                                            for n in range(40)]


class TestRFC9112Section7_1_ChunkedBodies:
    # RFC 9112 §7.1: "The chunked transfer coding wraps content in order to transfer it as
    # a series of chunks"; §7.1.3: the recipient removes the coding and reassembles.

    def test_chunked_request_body_is_reassembled_across_sends(self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(request("POST", "/up", [("Transfer-Encoding", "chunked")]))
        for piece in (b"5;ext=1\r\nhel", b"lo\r\n", b"6\r\n world\r", b"\n0\r\n", b"\r\n"):
            time.sleep(0.02)
            conn.send(piece)
        assert conn.response().body == b"POST /up hello world"

    def test_streamed_response_without_length_is_sent_chunked(self, serve):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one", b"two", b""):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"three"})

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request() + request())
        for _ in range(2):  # the connection goes on after a chunked response
            response = conn.response()
            assert response.header("transfer-encoding") == b"chunked"
            assert response.header("content-length") is None
            assert response.chunks == [b"one", b"two", b"three"]  # an empty piece is no chunk

    def test_each_piece_of_a_streamed_response_goes_out_when_the_app_sends_it(self, serve):
        release = threading.Event()

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await wait_for(release)
            await send({"type": "http.response.body", "body": b"second"})

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request())
        conn.wait_for(b"first")
        release.set()
        assert conn.response().body == b"firstsecond"

    def test_streamed_response_with_a_content_length_is_not_chunked(self, serve):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"6")]})
            await send({"type": "http.response.body", "body": b"abc", "more_body": True})
            await send({"type": "http.response.body", "body": b"def"})

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request())
        response = conn.response()
        assert (response.header("transfer-encoding"), response.body) == (None, b"abcdef")


class TestRFC9110Section9_3_2_Head:
    # RFC 9110 §9.3.2: "The HEAD method is identical to GET except that the server MUST NOT
    # send content in the response"; the server SHOULD send the header fields a GET
    # would have. The GET pipelined after each HEAD proves no body bytes were sent.

    @pytest.mark.parametrize("length, pieces, framing", [
        (b"11", [b"hello world"], (b"content-length", b"11")),
        (None, [b"hello world"], (b"content-length", b"11")),
        (None, [b"hello ", b"world"], (b"transfer-encoding", b"chunked")),
    ], ids=["length-set-by-the-app", "length-computed", "streamed"])
    def test_head_gets_the_headers_of_a_get_and_no_body(self, serve, length, pieces, framing):
        async def app(scope, receive, send):
            headers = [(b"content-length", length)] if length else []
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for piece in pieces[:-1]:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": pieces[-1]})

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request("HEAD") + request("GET"))
        head = conn.response(head_only=True)
        assert head.status_line == b"HTTP/1.1 200 OK"
        assert head.header(framing[0].decode()) == framing[1]
        assert conn.response().body == b"hello world"


class TestRFC9110Section10_1_1_ExpectContinue:
    # RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.1
    # request ... MAY omit sending a 100 (Continue) response if it has already received
    # some or all of the content ... or if the message has no content"; a server that
    # answers with a final status without reading the content SHOULD say whether it
    # closes the connection.

    def test_100_continue_is_sent_when_the_app_reads_the_body(self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(request("POST", "/up", [("Expect", "100-continue"), ("Content-Length", "5")]))
        interim = conn.response()
        assert (interim.status_line, interim.headers) == (b"HTTP/1.1 100 Continue", [])
        conn.send(b"hello")
        assert conn.response().body == b"POST /up hello"
        conn.send(request("GET", "/next"))  # the connection goes on
        assert conn.response().body == b"GET /next "

    def test_no_100_continue_when_the_app_answers_without_reading(self, serve):
        async def app(scope, receive, send):
            await respond(send, b"denied", status=403)

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request("POST", "/up", [("Expect", "100-continue"), ("Content-Length", "5")]))
        response = conn.response()
        assert response.status_line == b"HTTP/1.1 403 Forbidden"
        # The body never came, so the stream cannot go on: the server must say it closes.
        assert response.header("connection") == b"close"
        assert conn.rest() == b""


class TestFlowControl:
    # Backpressure both ways (ServerConfig.write_high_water): a fast client cannot make
    # the server buffer an upload the app is not reading, and a slow client cannot make
    # it buffer a download the app keeps producing.

    def test_upload_to_an_app_that_stops_reading_is_not_buffered_without_bound(self, serve):
        total, release, messages = 64 * MiB, threading.Event(), []

        async def app(scope, receive, send):
            more = True
            while more:
                message = await receive()
                messages.append(len(message["body"]))
                more = message["more_body"]
                await wait_for(release)
            await respond(send, str(sum(messages)).encode())

        conn = RawConnection.open(serve(app, max_body_size=None, **SETTINGS))
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        sent = [0]

        def upload() -> None:
            conn.send(request("POST", "/", [("Content-Length", str(total))]))
            chunk = b"x" * (256 * KiB)
            for _ in range(total // len(chunk)):
                conn.send(chunk)
                sent[0] += len(chunk)

        uploader = threading.Thread(target=upload, daemon=True)
        uploader.start()
        time.sleep(0.5)
        assert sent[0] < total // 2  # the server stopped reading: the client is blocked
        release.set()
        uploader.join(10)
        assert conn.response(10).body == str(total).encode()
        assert len(messages) > 2 and messages[1] <= 1 * MiB  # what waited in the server

    def test_download_to_a_client_that_does_not_read_makes_send_wait(self, serve):
        total, piece, sent = 32 * MiB, b"y" * (64 * KiB), [0]

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(total // len(piece)):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent[0] += len(piece)
            await send({"type": "http.response.body", "body": b""})

        server = serve(app, **SETTINGS)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
        sock.connect(("127.0.0.1", server.port))
        conn = RawConnection(sock)
        conn.send(request())
        time.sleep(0.5)
        assert sent[0] < total // 2  # send() is waiting on the transport's high-water mark
        assert len(conn.response(10).body) == total


class TestApplicationErrors:
    # The ASGI contract (asgi.readthedocs.io, HTTP): the server answers 500 when the app
    # fails before starting the response; once it has started, the only honest signal is
    # closing the connection without completing the response.

    def test_exception_before_the_response_gets_500(self, serve):
        async def app(scope, receive, send):
            raise RuntimeError("boom")

        server = serve(app, **SETTINGS)
        conn = RawConnection.open(server)
        conn.send(request() + request("GET", "/never"))
        response = expect_rejection(conn, b"HTTP/1.1 500 Internal Server Error")
        assert b"boom" not in response.body  # internal text never reaches the peer

    def test_app_returning_without_a_response_gets_500(self, serve):
        async def app(scope, receive, send):
            await receive()

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request())
        expect_rejection(conn, b"HTTP/1.1 500 Internal Server Error")

    def test_exception_after_part_of_the_body_closes_without_completing_it(self, serve):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("boom")

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request() + request("GET", "/never"))
        data = conn.rest()
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"partial" in data
        assert not data.endswith(b"0\r\n\r\n") and data.count(b"HTTP/1.1") == 1

    @pytest.mark.parametrize("fail", [True, False], ids=["raises", "returns"])
    def test_app_leaving_after_the_start_never_completes_a_200(self, serve, fail):
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            if fail:
                raise RuntimeError("boom")

        conn = RawConnection.open(serve(app, **SETTINGS))
        conn.send(request())
        data = conn.rest()
        assert data == b"" or data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), data

    def test_server_keeps_serving_after_an_app_failure(self, serve):
        async def app(scope, receive, send):
            if scope["path"] == "/fail":
                raise RuntimeError("boom")
            await respond(send, b"fine")

        server = serve(app, **SETTINGS)
        failing = RawConnection.open(server)
        failing.send(request("GET", "/fail"))
        expect_rejection(failing, b"HTTP/1.1 500 Internal Server Error")
        conn = RawConnection.open(server)
        conn.send(request("GET", "/ok"))
        assert conn.response().body == b"fine"


def lifespan_app(events: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        state = scope["state"]
        body = f"{state.get('greeting')} {sorted(state)}".encode()
        state["scribble"] = True  # must not leak into the next request's copy
        await respond(send, body)

    return app


class TestLifespan:
    # ASGI lifespan spec: startup completes before the first request, shutdown runs after
    # the last; "state" set during startup is copied into every request's scope.

    def test_startup_runs_before_serving_and_shutdown_after(self, loop_kind):
        events: list[str] = []
        with run_server(lifespan_app(events), loop_kind, shutdown_timeout=0.5) as server:
            assert events == ["lifespan.startup"]
            conn = RawConnection.open(server)
            conn.send(request())
            conn.response()
            conn.close()
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    def test_startup_state_reaches_each_request_as_its_own_copy(self, serve):
        server = serve(lifespan_app([]), shutdown_timeout=0.5)
        conn = RawConnection.open(server)
        conn.send(request() + request())
        assert [conn.response().body for _ in range(2)] == [b"hello ['greeting']"] * 2


def httpx_app() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] != "/download":
            await echo_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for n in range(100):
            await send({"type": "http.response.body", "body": bytes([n]) * 1000,
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


class TestIndependentClient:
    # httpx (nobody here wrote it) must see a well-behaved HTTP/1.1 server.

    @pytest.fixture
    def client(self, serve):
        with httpx.Client(base_url=serve(httpx_app(), **SETTINGS).url, timeout=5) as client:
            yield client

    def test_httpx_get(self, client):
        response = client.get("/hello", params={"q": "1"})
        assert (response.status_code, response.text) == (200, "GET /hello ")
        assert response.http_version == "HTTP/1.1"

    def test_httpx_post_with_a_body(self, client):
        assert client.post("/form", content=b"a=1&b=2").text == "POST /form a=1&b=2"

    def test_httpx_streaming_upload_is_chunked_and_reassembled(self, client):
        pieces = (bytes([n]) * 1000 for n in range(50))
        response = client.post("/up", content=pieces)
        assert response.content == b"POST /up " + b"".join(bytes([n]) * 1000 for n in range(50))

    def test_httpx_streaming_download(self, client):
        with client.stream("GET", "/download") as response:
            assert response.headers["transfer-encoding"] == "chunked"
            body = b"".join(response.iter_bytes())
        assert body == b"".join(bytes([n]) * 1000 for n in range(100))

    def test_httpx_reuses_the_connection_for_many_requests(self, client):
        for n in range(20):
            assert client.get(f"/{n}").text == f"GET /{n} "
