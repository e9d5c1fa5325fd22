"""The built-in server's limits: sizes, deadlines and connection counts (docs/server.md).

Every bad-input case goes over a raw socket and must end the same way: the exact error
status with ``connection: close``, the server closing the connection, and the other
connections (one idle between keep-alive requests, one mid-request) undisturbed.
Small limits keep the tests fast; the sizes below are chosen relative to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import echo_app
from raw_http import (
    RawConnection,
    bystanders,
    expect_rejection,
    request,
    send_slowly,
    websocket_handshake,
)

LIMITS: dict[str, Any] = {
    "max_request_line": 256, "max_header_size": 256, "max_headers": 10,
    "max_head_size": 1024, "max_body_size": 1000,
    # Short enough that a server stuck on a case fails the test, not the suite.
    "head_timeout": 2.0, "shutdown_timeout": 0.5,
}


def send_at_once(conn: RawConnection, data: bytes) -> None:
    conn.send(data)


def send_byte_by_byte(conn: RawConnection, data: bytes) -> None:
    send_slowly(conn.sock, data)


DELIVERIES = [pytest.param(send_at_once, id="at-once"),
              pytest.param(send_byte_by_byte, id="byte-by-byte")]
Delivery = Callable[[RawConnection, bytes], None]


def rejected(server: Any, data: bytes, status_line: bytes,
             deliver: Delivery = send_at_once) -> None:
    """``data`` on a fresh connection gets ``status_line`` and a close; bystanders go on."""
    with bystanders(server):
        conn = RawConnection.open(server)
        deliver(conn, data)
        expect_rejection(conn, status_line)


def request_line_of(size: int) -> bytes:
    """A GET whose request line (method, target, version; no CRLF) is ``size`` bytes."""
    target = "/" + "a" * (size - len("GET / HTTP/1.1"))
    return request("GET", target)


class TestRequestLineLimit:
    # RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes
    # to parse MUST respond with a 414 (URI Too Long) status code."

    @pytest.mark.parametrize("deliver", DELIVERIES)
    def test_target_longer_than_max_request_line_gets_414(self, serve, deliver):
        server = serve(echo_app, **LIMITS)
        rejected(server, request("GET", "/" + "a" * 300), b"HTTP/1.1 414 URI Too Long", deliver)

    def test_request_line_exactly_at_the_limit_is_served(self, serve):
        server = serve(echo_app, **LIMITS)
        conn = RawConnection.open(server)
        conn.send(request_line_of(256))
        assert conn.response().status_line == b"HTTP/1.1 200 OK"

    def test_request_line_one_byte_over_the_limit_gets_414(self, serve):
        # max_request_line bounds the whole line (method, target, version), not the target.
        server = serve(echo_app, **LIMITS)
        rejected(server, request_line_of(257), b"HTTP/1.1 414 URI Too Long")

    def test_endless_request_target_is_cut_off_without_waiting_for_its_end(self, serve):
        server = serve(echo_app, **LIMITS)
        with bystanders(server):
            conn = RawConnection.open(server)
            # One byte over the limit and no end in sight: the answer cannot wait for one.
            send_slowly(conn.sock, b"GET /" + b"a" * 256)
            expect_rejection(conn, b"HTTP/1.1 414 URI Too Long")


HEADS_TOO_LARGE = {
    "one-field-over-max_header_size": request("GET", "/", [("X-Long", "a" * 300)]),
    "more-fields-than-max_headers": request("GET", "/", [(f"X-{i}", "v") for i in range(11)]),
    # Each field and the count are within their limits; together they are not.
    "head-over-max_head_size": request("GET", "/", [(f"X-{i}", "a" * 150) for i in range(8)]),
}


class TestHeaderLimits:
    # RFC 6585 §5: 431 Request Header Fields Too Large "indicates that the server is
    # unwilling to process the request because its header fields are too large".

    @pytest.mark.parametrize("deliver", DELIVERIES)
    @pytest.mark.parametrize("head", HEADS_TOO_LARGE.values(), ids=HEADS_TOO_LARGE.keys())
    def test_head_over_a_limit_gets_431(self, serve, head, deliver):
        server = serve(echo_app, **LIMITS)
        rejected(server, head, b"HTTP/1.1 431 Request Header Fields Too Large", deliver)

    def test_head_with_fields_at_every_limit_is_served(self, serve):
        server = serve(echo_app, **LIMITS)
        conn = RawConnection.open(server)
        fields = [(f"X-{i}", "a" * 60) for i in range(8)] + [("X-Max", "b" * 251)]
        conn.send(request("GET", "/", fields))  # 10 fields with Host; X-Max is 256 bytes
        assert conn.response().status_line == b"HTTP/1.1 200 OK"

    def test_unterminated_header_line_sent_byte_by_byte_is_cut_at_max_head_size(self, serve):
        server = serve(echo_app, **LIMITS)
        with bystanders(server):
            conn = RawConnection.open(server)
            head = b"GET / HTTP/1.1\r\nHost: test\r\nX: "
            send_slowly(conn.sock, head.ljust(LIMITS["max_head_size"] + 1, b"a"))
            expect_rejection(conn, b"HTTP/1.1 431 Request Header Fields Too Large")

    def test_unterminated_header_line_gets_431_once_it_passes_max_header_size(self, serve):
        # The field limit applies to a field still arriving, not only to a complete one:
        # stop sending well below max_head_size and expect the 431 anyway (not a 408).
        server = serve(echo_app, **{**LIMITS, "head_timeout": 0.6})
        with bystanders(server):
            conn = RawConnection.open(server)
            send_slowly(conn.sock, b"GET / HTTP/1.1\r\nHost: test\r\nX-Long: " + b"a" * 400)
            expect_rejection(conn, b"HTTP/1.1 431 Request Header Fields Too Large", timeout=1.5)


class TestBodyLimit:
    # RFC 9110 §15.5.14: 413 Content Too Large "indicates that the server is refusing to
    # process a request because the request content is larger than the server is willing
    # or able to process. The server MAY terminate the request".

    def test_declared_content_length_over_max_body_size_gets_413_before_the_body(self, serve):
        server = serve(echo_app, **LIMITS)
        head = request("POST", "/", [("Content-Length", "1001")])
        rejected(server, head, b"HTTP/1.1 413 Content Too Large")

    def test_chunked_body_growing_over_max_body_size_gets_413(self, serve):
        server = serve(echo_app, **LIMITS)
        chunks = b"64\r\n" + b"a" * 100 + b"\r\n"
        data = request("POST", "/", [("Transfer-Encoding", "chunked")]) + chunks * 11
        rejected(server, data, b"HTTP/1.1 413 Content Too Large")

    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_body_exactly_at_max_body_size_is_served(self, serve, chunked):
        server = serve(echo_app, **LIMITS)
        conn = RawConnection.open(server)
        if chunked:
            conn.send(request("POST", "/", [("Transfer-Encoding", "chunked")])
                      + (b"64\r\n" + b"a" * 100 + b"\r\n") * 10 + b"0\r\n\r\n")
        else:
            conn.send(request("POST", "/", body=b"a" * 1000))
        assert conn.response().body == b"POST / " + b"a" * 1000


class TestHeadTimeout:
    # ServerConfig.head_timeout: an absolute deadline for the whole head, so a client
    # trickling bytes (slowloris) cannot hold a connection open; answered with
    # RFC 9110 §15.5.9 408 Request Timeout.

    def test_partial_head_gets_408_after_head_timeout(self, serve):
        server = serve(echo_app, **{**LIMITS, "head_timeout": 0.3})
        with bystanders(server):
            conn = RawConnection.open(server)
            conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n")
            started = time.monotonic()
            expect_rejection(conn, b"HTTP/1.1 408 Request Timeout", timeout=1.5)
            assert 0.2 < time.monotonic() - started < 1.5

    def test_head_trickled_one_byte_at_a_time_still_gets_408_at_the_deadline(self, serve):
        server = serve(echo_app, **{**LIMITS, "head_timeout": 0.3})
        with bystanders(server):
            conn = RawConnection.open(server)
            started = time.monotonic()
            trickle = iter(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 200)
            while time.monotonic() - started < 2 and send_slowly(conn.sock, bytes([next(trickle)])):
                time.sleep(0.05)  # every byte resets an idle timer, never a deadline
            expect_rejection(conn, b"HTTP/1.1 408 Request Timeout")
            assert time.monotonic() - started < 1.5

    def test_connection_that_sends_nothing_is_closed_after_head_timeout(self, serve):
        server = serve(echo_app, **{**LIMITS, "head_timeout": 0.3})
        with bystanders(server):
            conn = RawConnection.open(server)
            started = time.monotonic()
            assert conn.closed_silently()
            assert 0.2 < time.monotonic() - started < 1.5

    def test_later_request_on_a_keep_alive_connection_has_its_own_head_deadline(self, serve):
        server = serve(echo_app, **{**LIMITS, "head_timeout": 0.3})
        conn = RawConnection.open(server)
        conn.send(request("GET", "/first"))
        assert conn.response().body == b"GET /first "
        conn.send(b"GET /second HTTP/1.1\r\n")
        expect_rejection(conn, b"HTTP/1.1 408 Request Timeout", timeout=1.5)

    def test_slow_app_is_not_cut_by_head_or_keepalive_timeout(self, serve):
        async def slow_app(scope, receive, send):
            if scope["type"] != "http":
                return
            await asyncio.sleep(0.6)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

        server = serve(slow_app, head_timeout=0.2, keepalive_timeout=0.2, lifespan="off")
        conn = RawConnection.open(server)
        conn.send(request())
        assert conn.response().body == b"done"


class TestKeepAliveTimeout:
    # RFC 9112 §9.5: "A client, server, or proxy MAY close the transport connection at any
    # time"; ServerConfig.keepalive_timeout bounds how long an idle one is kept.

    def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(self, serve):
        server = serve(echo_app, **{**LIMITS, "keepalive_timeout": 0.3})
        conn = RawConnection.open(server)
        conn.send(request())
        conn.response()
        started = time.monotonic()
        assert conn.closed_silently()
        assert 0.2 < time.monotonic() - started < 1.5

    def test_connection_used_more_often_than_the_timeout_stays_open(self, serve):
        server = serve(echo_app, **{**LIMITS, "keepalive_timeout": 0.3})
        conn = RawConnection.open(server)
        for n in range(4):
            conn.send(request("GET", f"/{n}"))
            assert conn.response().body == f"GET /{n} ".encode()
            time.sleep(0.2)


class TestMaxConnections:
    # RFC 9110 §15.6.4: 503 Service Unavailable "indicates that the server is currently
    # unable to handle the request due to a temporary overload"; §10.2.3: "the server MAY
    # send a Retry-After header field to suggest an appropriate amount of time for the
    # client to wait". The two bystanders fill max_connections=2.

    @pytest.mark.parametrize("head", [request("GET", "/"), websocket_handshake("/ws")],
                             ids=["http", "websocket-handshake"])
    def test_connection_over_the_limit_gets_503_with_retry_after(self, serve, head):
        server = serve(echo_app, **{**LIMITS, "max_connections": 2})
        with bystanders(server):
            conn = RawConnection.open(server)
            conn.send(head)
            response = expect_rejection(conn, b"HTTP/1.1 503 Service Unavailable")
            assert (response.header("retry-after") or b"").isdigit()

    def test_slot_freed_by_a_closed_connection_serves_the_next_one(self, serve):
        server = serve(echo_app, **{**LIMITS, "max_connections": 1})
        first = RawConnection.open(server)
        first.send(request())
        first.response()
        first.close()
        time.sleep(0.1)  # let the server see the close
        conn = RawConnection.open(server)
        conn.send(request("GET", "/next"))
        assert conn.response().body == b"GET /next "


class TestRejectedWebSocketUpgrade:
    # RFC 6455 §4.2.2: "If the server finds that the client's handshake is invalid, ... the
    # server MUST stop processing the client's handshake and return an HTTP response with
    # an appropriate error code (such as 400 Bad Request)"; §4.4: a version the server
    # does not speak gets 426 with the Sec-WebSocket-Version it does.
    # The stream after the upgrade request is not HTTP: a request pipelined after it
    # must never be answered.

    def test_unsupported_version_gets_426_naming_version_13(self, serve):
        server = serve(echo_app, **LIMITS)
        with bystanders(server):
            conn = RawConnection.open(server)
            conn.send(websocket_handshake(version="12") + request("GET", "/after"))
            response = expect_rejection(conn, b"HTTP/1.1 426 Upgrade Required")
            assert response.header("sec-websocket-version") == b"13"

    @pytest.mark.parametrize("key", ["short", "!!!!!!!!!!!!!!!!!!!!!!!!", ""])
    def test_invalid_key_gets_400(self, serve, key):
        server = serve(echo_app, **LIMITS)
        with bystanders(server):
            conn = RawConnection.open(server)
            conn.send(websocket_handshake(key=key) + request("GET", "/after"))
            expect_rejection(conn, b"HTTP/1.1 400 Bad Request")
