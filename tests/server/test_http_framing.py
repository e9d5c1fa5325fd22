"""Strict request framing and head syntax: anything two parsers could read differently
(request smuggling, RFC 9112 §11.2) is refused with 400 and a close, and nothing the
app does can put CR, LF or NUL into a response head (response splitting, §11.1).

Every bad request goes over a raw socket; each must get ``400 Bad Request`` with
``connection: close``, the server must close, and the bystander connections (idle
keep-alive, mid-request) must carry on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from conftest import echo_app, read_response
from raw_http import RawConnection, bystanders, expect_rejection, request, websocket_handshake

SETTINGS: dict[str, Any] = {"head_timeout": 2.0, "shutdown_timeout": 0.5}
BAD_REQUEST = b"HTTP/1.1 400 Bad Request"


def refused(server: Any, data: bytes) -> None:
    """``data`` on a fresh connection gets 400 and a close; the bystanders go on."""
    with bystanders(server):
        conn = RawConnection.open(server)
        conn.send(data)
        expect_rejection(conn, BAD_REQUEST)


def post(*fields: str, body: bytes = b"hello") -> bytes:
    """A POST with the given raw header lines and body, nothing added."""
    head = "POST /upload HTTP/1.1\r\nHost: test\r\n" + "".join(f + "\r\n" for f in fields)
    return (head + "\r\n").encode("latin-1") + body


def chunked(body: bytes) -> bytes:
    return post("Transfer-Encoding: chunked", body=body)


CONFLICTING_FRAMING = {
    # §6.1: "A server MAY reject a request that contains both Content-Length and
    # Transfer-Encoding ... Regardless, the server MUST close the connection".
    "content-length-and-chunked": post("Content-Length: 5", "Transfer-Encoding: chunked",
                                       body=b"0\r\n\r\n"),
    "chunked-and-content-length": post("Transfer-Encoding: chunked", "Content-Length: 5",
                                       body=b"0\r\n\r\n"),
    # §6.1: chunked MUST NOT be applied more than once.
    "chunked-twice-in-one-field": post("Transfer-Encoding: chunked, chunked",
                                       body=b"0\r\n\r\n"),
    "chunked-in-two-fields": post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                                  body=b"0\r\n\r\n"),
    # §6.3: a Transfer-Encoding whose final coding is not chunked cannot be framed.
    "xchunked": post("Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
    "chunked-vertical-tab": post("Transfer-Encoding: chunked\x0b", body=b"0\r\n\r\n"),
    "identity": post("Transfer-Encoding: identity", body=b""),
}

BAD_CONTENT_LENGTHS = {
    # §6.3 item 5 and RFC 9110 §8.6: Content-Length = 1*DIGIT; anything else is an
    # unrecoverable framing error.
    "negative": post("Content-Length: -1"),
    "fraction": post("Content-Length: 1.5"),
    "plus-sign": post("Content-Length: +5"),
    "hex": post("Content-Length: 0x5"),
    "list-of-equal-values": post("Content-Length: 5, 5"),
    "two-different-fields": post("Content-Length: 5", "Content-Length: 6"),
    "two-equal-fields": post("Content-Length: 5", "Content-Length: 5"),
    "empty": post("Content-Length:"),
}


class TestRFC9112Section6_MessageBodyLength:
    # RFC 9112 §6.3: "If a message is received with both a Transfer-Encoding and a
    # Content-Length header field, the Transfer-Encoding overrides the Content-Length.
    # Such a message might indicate an attempt to perform request smuggling (Section
    # 11.2)"; "If a Transfer-Encoding header field is present in a request and the
    # chunked transfer coding is not the final encoding, ... the server MUST respond with
    # the 400 (Bad Request) status code and then close the connection."

    @pytest.mark.parametrize("data", CONFLICTING_FRAMING.values(), ids=CONFLICTING_FRAMING.keys())
    def test_ambiguous_transfer_encoding_gets_400(self, serve, data):
        refused(serve(echo_app, **SETTINGS), data)

    @pytest.mark.parametrize("data", BAD_CONTENT_LENGTHS.values(), ids=BAD_CONTENT_LENGTHS.keys())
    def test_invalid_content_length_gets_400(self, serve, data):
        refused(serve(echo_app, **SETTINGS), data)

    @pytest.mark.parametrize("data", [
        post("Content-Length: 5"),
        post("Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
        post("Transfer-Encoding: Chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
        post("Transfer-Encoding:  chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
    ], ids=["content-length", "chunked", "coding-name-is-case-insensitive", "leading-ows"])
    def test_unambiguous_framing_is_served(self, serve, data):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(data)
        assert conn.response().body == b"POST /upload hello"


BAD_CHUNKS = {
    # §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; chunk-size = 1*HEXDIG.
    "size-not-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size-overflows-64-bits": b"10000000000000000000\r\nhello\r\n0\r\n\r\n",
    "data-not-followed-by-crlf": b"5\r\nhelloXX0\r\n\r\n",
    "size-ended-by-bare-lf": b"5\nhello\r\n0\r\n\r\n",
    "nul-in-extension": b"5;ext\x00\r\nhello\r\n0\r\n\r\n",
}


class TestRFC9112Section7_1_ChunkedCoding:
    # RFC 9112 §7.1: "The chunked transfer coding wraps content in order to transfer it as
    # a series of chunks, each with its own size indicator"; a chunk that does not match
    # the grammar leaves the rest of the stream unframed, so the connection must end.

    @pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
    def test_malformed_chunk_gets_400(self, serve, body):
        refused(serve(echo_app, **SETTINGS), chunked(body))

    def test_chunk_extensions_and_trailer_fields_are_accepted(self, serve):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(chunked(b'5;name=value;quoted="a b"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n'))
        assert conn.response().body == b"POST /upload hello"


class TestRFC9112Section2_2_LineEndings:
    # RFC 9112 §2.2: "A sender MUST NOT generate a bare CR ... A recipient of such a bare
    # CR MUST consider that element to be invalid"; recognizing a bare LF is only a MAY,
    # and this server chooses strictness.

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.1\rHost: test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: test\r\nX-A: 1\r\r\n\r\n",
        b"GET / HTTP/1.1\nHost: test\n\n",
        b"GET / HTTP/1.1\r\nHost: test\r\nX-A: 1\n\r\n",
        b"GET / HTTP/1.1\r\nHost: test\r\n\n",
    ], ids=["bare-cr-after-request-line", "bare-cr-after-field", "bare-lf-everywhere",
            "bare-lf-after-field", "bare-lf-ending-the-head"])
    def test_bare_cr_or_lf_in_the_head_gets_400(self, serve, data):
        refused(serve(echo_app, **SETTINGS), data)


class TestRFC9112Section5_FieldSyntax:
    # RFC 9112 §5.1: "A server MUST reject, with a response status code of 400 (Bad
    # Request), any received request message that contains whitespace between a header
    # field name and colon." §5.2: a server receiving obs-fold "MUST either reject the
    # message by sending a 400 (Bad Request) ... or replace each received obs-fold with
    # one or more SP octets"; this server rejects. RFC 9110 §5.5: "a recipient of CR, LF,
    # or NUL within a field value MUST either reject the message or replace each of
    # those characters with SP"; this server rejects.

    @pytest.mark.parametrize("field", [
        b"Host : test", b"Host\t: test",
    ], ids=["space", "tab"])
    def test_whitespace_between_field_name_and_colon_gets_400(self, serve, field):
        refused(serve(echo_app, **SETTINGS), b"GET / HTTP/1.1\r\n" + field + b"\r\n\r\n")

    @pytest.mark.parametrize("fold", [b" ", b"\t"], ids=["space", "tab"])
    def test_obs_fold_gets_400(self, serve, fold):
        data = b"GET / HTTP/1.1\r\nHost: test\r\nX-Folded: a\r\n" + fold + b"b\r\n\r\n"
        refused(serve(echo_app, **SETTINGS), data)

    def test_first_field_line_starting_with_whitespace_gets_400(self, serve):
        refused(serve(echo_app, **SETTINGS), b"GET / HTTP/1.1\r\n Host: test\r\n\r\n")

    @pytest.mark.parametrize("value", [b"a\rb", b"a\x00b", b"a\nb"],
                             ids=["cr", "nul", "lf"])
    def test_cr_lf_or_nul_in_a_field_value_gets_400(self, serve, value):
        refused(serve(echo_app, **SETTINGS),
                b"GET / HTTP/1.1\r\nHost: test\r\nX-Value: " + value + b"\r\n\r\n")

    @pytest.mark.parametrize("name", [b"X(y)", b"", b"X Y"], ids=["delimiter", "empty", "space"])
    def test_field_name_that_is_not_a_token_gets_400(self, serve, name):
        refused(serve(echo_app, **SETTINGS),
                b"GET / HTTP/1.1\r\nHost: test\r\n" + name + b": v\r\n\r\n")


class TestRFC9112Section3_2_Host:
    # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    # HTTP/1.1 request message that lacks a Host header field and to any request message
    # that contains more than one Host header field line or a Host header field with an
    # invalid field value."

    def test_two_host_fields_get_400(self, serve):
        refused(serve(echo_app, **SETTINGS),
                b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n")

    def test_http_1_1_request_without_host_gets_400(self, serve):
        refused(serve(echo_app, **SETTINGS), b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n")

    def test_websocket_handshake_without_host_gets_400(self, serve):
        data = websocket_handshake().replace(b"Host: test\r\n", b"")
        refused(serve(echo_app, **SETTINGS), data)

    @pytest.mark.parametrize("host", [b"a b", b"a/b", b"a@b@c"])
    def test_host_with_an_invalid_value_gets_400(self, serve, host):
        refused(serve(echo_app, **SETTINGS), b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")

    @pytest.mark.parametrize("data", [
        b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
    ], ids=["http-1.0-without-host", "empty-host", "ipv6-literal"])
    def test_valid_host_or_its_absence_in_http_1_0_is_served(self, serve, data):
        conn = RawConnection.open(serve(echo_app, **SETTINGS))
        conn.send(data)
        assert conn.response().status_line == b"HTTP/1.1 200 OK"


# ---------------------------------------------------------------- response splitting

INJECTIONS = {
    "crlf-in-value": (b"x-note", b"a\r\nset-cookie: evil=1"),
    "lf-in-value": (b"x-note", b"a\nset-cookie: evil=1"),
    "cr-in-value": (b"x-note", b"a\rset-cookie: evil=1"),
    "nul-in-value": (b"x-note", b"a\x00set-cookie: evil=1"),
    "crlf-in-name": (b"x-note\r\nset-cookie", b"evil=1"),
    "colon-in-name": (b"set-cookie: evil=1\r\nx-note", b"1"),
    "space-in-name": (b"set-cookie evil=1", b"1"),
}


def header_app(kind: str, header: tuple[bytes, bytes]) -> Any:
    """An app that puts ``header`` into its response: an HTTP response, a WebSocket
    accept, or a WebSocket denial response (ASGI websocket.http.response)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [header]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await receive()
        if kind == "websocket-accept":
            await send({"type": "websocket.accept", "headers": [header]})
            await receive()
        else:
            await send({"type": "websocket.http.response.start", "status": 403,
                        "headers": [header]})
            await send({"type": "websocket.http.response.body", "body": b"no"})

    return app


class TestRFC9110Section5_5_NoControlCharactersInResponseFields:
    # RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
    # dangerous"; RFC 9112 §11.1 response splitting. Whatever the app passes, the client
    # sees a 500 or a closed connection, never a field the app did not mean to send.

    @pytest.mark.parametrize("kind", ["http", "websocket-accept", "websocket-denial"])
    @pytest.mark.parametrize("header", INJECTIONS.values(), ids=INJECTIONS.keys())
    def test_app_header_with_control_characters_never_splits_the_response(
            self, serve, kind, header):
        server = serve(header_app(kind, header), lifespan="off", **SETTINGS)
        conn = RawConnection.open(server)
        conn.send(request("GET", "/") if kind == "http" else websocket_handshake())
        data = conn.rest(1.0)
        assert data == b"" or data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), data
        assert b"evil" not in data


class TestAccessLog:
    # The access log must stay one line per request whatever the request target holds:
    # no control character reaches it unescaped (log forging, terminal escapes).

    @pytest.mark.parametrize("target", [
        "/a%0d%0a127.0.0.1:1%20-%20%22GET%20/forged%20HTTP/1.1%22%20200", "/a%1b[2J%1b]0;title%07",
        "/q?x=%0a%00",
    ], ids=["encoded-crlf", "encoded-escape-sequences", "encoded-in-query"])
    def test_access_log_line_has_no_control_characters(self, serve, caplog, target):
        caplog.set_level(logging.INFO, logger="legato.access")
        conn = RawConnection.open(serve(echo_app, access_log=True, **SETTINGS))
        conn.send(request("GET", target))
        assert conn.response().status_line == b"HTTP/1.1 200 OK"
        deadline = time.monotonic() + 1
        while not (lines := [r.getMessage() for r in caplog.records
                             if r.name == "legato.access"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(lines) == 1
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in lines[0]), lines[0]
        assert target.split("%")[0] in lines[0]


class TestRFC9110Section5_5_FieldValuesExcludeSurroundingWhitespace:
    # RFC 9110 §5.5: "a field value does not include leading or trailing whitespace":
    # `chunked ` is `chunked`, and the request is framed as chunked.
    # (llhttp refuses a trailing TAB there with 400; spaces are what clients send.)
    @pytest.mark.parametrize("value", ["chunked ", " chunked"])
    def test_chunked_with_surrounding_whitespace_is_served_as_chunked(self, serve, value):
        server = serve(echo_app)
        sock = server.connect()
        sock.sendall(f"POST /ows HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {value}\r\n"
                     "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n".encode())
        response = read_response(sock)
        sock.close()
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b"POST /ows abc")
