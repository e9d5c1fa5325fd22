"""The strict HTTP/1.1 message-head parser and serialiser (RFC 9112) in ``http.py``."""

from __future__ import annotations

import pytest

from legato.protocol.http import (
    MAX_HEADERS,
    MAX_LINE,
    HeadError,
    find_head_end,
    parse_request_head,
    parse_response_head,
    serialize_request,
    serialize_response,
)

UPGRADE_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"Sec-WebSocket-Protocol: superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def request_with(*lines: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def status_of(parse, head: bytes) -> int:
    with pytest.raises(HeadError) as info:
        parse(head)
    assert isinstance(info.value, ValueError)
    return info.value.status_code


class TestRFC9112Section2_1_FindingTheEndOfTheHead:
    # RFC 9112 §2.1: the head ends with an empty line (CRLF CRLF).
    def test_an_incomplete_head_is_not_found_yet(self):
        assert find_head_end(b"") is None
        assert find_head_end(UPGRADE_REQUEST[:-2]) is None
        assert find_head_end(UPGRADE_REQUEST[:-1]) is None

    def test_a_complete_head_ends_just_past_the_blank_line(self):
        assert find_head_end(UPGRADE_REQUEST) == len(UPGRADE_REQUEST)
        assert find_head_end(bytearray(UPGRADE_REQUEST + b"\x81\x05hello")) == len(
            UPGRADE_REQUEST)

    def test_a_head_without_an_end_past_the_size_limit_raises_431(self):
        with pytest.raises(HeadError) as info:
            find_head_end(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100, max_size=256)
        assert info.value.status_code == 431

    def test_a_complete_head_larger_than_the_limit_raises_431(self):
        head = request_with(b"X: " + b"y" * 300)
        with pytest.raises(HeadError) as info:
            find_head_end(head, max_size=256)
        assert info.value.status_code == 431

    def test_a_head_exactly_at_the_limit_is_accepted(self):
        assert find_head_end(UPGRADE_REQUEST, max_size=len(UPGRADE_REQUEST)) == len(
            UPGRADE_REQUEST)
        assert find_head_end(UPGRADE_REQUEST[:-1], max_size=len(UPGRADE_REQUEST) - 1) is None

    def test_the_default_limit_is_eight_lines_of_the_maximum_length(self):
        assert find_head_end(b"x" * (MAX_LINE * 8)) is None
        with pytest.raises(HeadError):
            find_head_end(b"x" * (MAX_LINE * 8 + 1))


class TestRFC9112Section3_RequestLine:
    # RFC 9112 §3: request-line = method SP request-target SP HTTP-version
    def test_a_websocket_upgrade_request_parses(self):
        head = parse_request_head(UPGRADE_REQUEST)
        assert (head.method, head.target, head.http_version) == ("GET", "/chat?room=1", "1.1")
        assert head.headers["host"] == "server.example.com"
        assert head.headers.get_all("Sec-WebSocket-Protocol") == ["chat", "superchat"]
        assert head.headers.raw_items()[0] == ("Host", "server.example.com")

    def test_a_head_without_the_final_blank_line_also_parses(self):
        assert parse_request_head(UPGRADE_REQUEST[:-4]).headers["Sec-WebSocket-Version"] == "13"

    def test_a_request_with_no_header_fields_parses(self):
        head = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
        assert head.http_version == "1.0" and len(head.headers) == 0

    @pytest.mark.parametrize("line", [
        b"GET  / HTTP/1.1", b"GET / HTTP/1.1 ", b" GET / HTTP/1.1", b"GET /",
        b"GET / HTTP/11", b"GET / http/1.1", b"GET / HTTP/1.1.1", b"G(T / HTTP/1.1",
        b"GET / HTTP/1.x", b"", b"GET\t/\tHTTP/1.1",
    ])
    def test_a_malformed_request_line_raises_400(self, line):
        assert status_of(parse_request_head, line + b"\r\nHost: a\r\n\r\n") == 400

    # RFC 9112 §3.2 / RFC 3986 §3.3: a request-target is made of visible ASCII (pchar,
    # "/", "?", pct-encoded); a control byte or NUL makes the request-line invalid, and
    # §3 says a recipient of an invalid request-line SHOULD respond with 400.
    @pytest.mark.parametrize("target", [b"/a\x00b", b"/\x01", b"/a\x7fb", b"/a\x0bb",
                                        b"/a\x0cb", b"/\x1b[31m"])
    def test_a_request_target_with_a_control_byte_raises_400(self, target):
        assert status_of(parse_request_head, b"GET " + target + b" HTTP/1.1\r\n\r\n") == 400

    # RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes
    # to parse MUST respond with a 414 (URI Too Long) status code."
    def test_a_request_line_longer_than_the_limit_raises_414(self):
        target = b"/" + b"a" * MAX_LINE
        assert status_of(parse_request_head, b"GET " + target + b" HTTP/1.1\r\n\r\n") == 414

    def test_a_request_line_at_the_limit_parses(self):
        line = b"GET /" + b"a" * (MAX_LINE - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        assert len(line) == MAX_LINE
        assert parse_request_head(line + b"\r\n\r\n").method == "GET"


class TestRFC9112Section4_StatusLine:
    # RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    def test_a_101_switching_protocols_parses(self):
        head = parse_response_head(SWITCHING)
        assert (head.status_code, head.reason, head.http_version) == (
            101, "Switching Protocols", "1.1")
        assert head.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    @pytest.mark.parametrize("line, reason", [
        (b"HTTP/1.1 404 ", ""), (b"HTTP/1.1 404", ""), (b"HTTP/1.1 404 Not\tFound ", "Not\tFound "),
    ])
    def test_the_reason_phrase_may_be_empty_or_missing(self, line, reason):
        head = parse_response_head(line + b"\r\n\r\n")
        assert (head.status_code, head.reason) == (404, reason)

    @pytest.mark.parametrize("line", [
        b"HTTP/1.1 1010 X", b"HTTP/1.1 10 X", b"HTTP/1.1  101 X", b"HTTP/1.1 abc X",
        b"HTTP/11 101 X", b"HTTPS/1.1 101 X", b"101 Switching Protocols", b"",
        b"HTTP/1.1 101 bad\x00reason",
    ])
    def test_a_malformed_status_line_raises(self, line):
        assert status_of(parse_response_head, line + b"\r\n\r\n") == 400


class TestRFC9112Section2_2_MessageParsing:
    # RFC 9112 §2.2: "A sender MUST NOT generate a bare CR (a CR character not
    # immediately followed by LF) within any protocol elements other than the content.
    # A recipient of such a bare CR MUST consider that element to be invalid or replace
    # each bare CR with SP." legato rejects; likewise a bare LF line terminator.
    @pytest.mark.parametrize("head", [
        b"GET / HTTP/1.1\rHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\r \r\n\r\n",
    ])
    def test_a_bare_cr_is_rejected(self, head):
        assert status_of(parse_request_head, head) == 400

    @pytest.mark.parametrize("head", [
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\n\r\n",
    ])
    def test_a_bare_lf_is_rejected(self, head):
        assert status_of(parse_request_head, head) == 400

    def test_a_bare_lf_in_a_response_is_rejected(self):
        head = b"HTTP/1.1 101 OK\nUpgrade: websocket\r\n\r\n"
        assert status_of(parse_response_head, head) == 400


class TestRFC9112Section5_FieldSyntax:
    # RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
    def test_whitespace_around_the_value_is_not_part_of_it(self):
        head = parse_request_head(request_with(b"X-A:   spaced out \t", b"X-B:tight"))
        assert head.headers["X-A"] == "spaced out" and head.headers["X-B"] == "tight"

    def test_an_empty_value_is_allowed(self):
        assert parse_request_head(request_with(b"X-Empty:", b"X-Blank:   "
                                               )).headers.get_all("x-empty") == [""]

    def test_values_keep_tabs_colons_and_obs_text(self):
        head = parse_request_head(request_with(b"X: a\tb: c", b"Y: caf\xe9"))
        assert head.headers["X"] == "a\tb: c"
        assert head.headers["Y"] == "caf\u00e9"

    # RFC 9112 §5.1: "No whitespace is allowed between the field name and colon. ... A
    # server MUST reject, with a response status code of 400 (Bad Request), any received
    # request message that contains whitespace between a header field name and colon."
    @pytest.mark.parametrize("line", [b"Host : a", b"Host\t: a", b"Ho st: a"])
    def test_whitespace_in_or_after_the_field_name_raises_400(self, line):
        assert status_of(parse_request_head, request_with(line)) == 400

    @pytest.mark.parametrize("line", [b"Host", b": a", b"X(y): a", b"caf\xe9: a", b"X\x00: a"])
    def test_a_line_without_a_colon_or_with_a_bad_name_raises_400(self, line):
        assert status_of(parse_request_head, request_with(line)) == 400

    # RFC 9112 §5.2: "A server that receives an obs-fold in a request message ... MUST
    # either reject the message by sending a 400 (Bad Request) ... or replace ...".
    @pytest.mark.parametrize("lines", [
        (b"X: a", b" b"), (b"X: a", b"\tb"), (b" Host: a",),
    ])
    def test_obs_fold_and_leading_whitespace_raise_400(self, lines):
        assert status_of(parse_request_head, request_with(*lines)) == 400

    def test_obs_fold_in_a_response_is_rejected(self):
        head = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n  , h2c\r\n\r\n"
        assert status_of(parse_response_head, head) == 400

    # RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
    # dangerous"; a recipient MUST reject or replace them. Other controls are rejected too.
    @pytest.mark.parametrize("value", [b"a\x00b", b"\x00", b"a\x01", b"a\x1fb", b"a\x7f",
                                       b"a\x0bb", b"a\x0cb"])
    def test_nul_and_other_controls_in_a_value_raise_400(self, value):
        assert status_of(parse_request_head, request_with(b"X: " + value)) == 400

    @pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\r\n b"])
    def test_cr_or_lf_inside_a_value_raises_400(self, value):
        assert status_of(parse_request_head, request_with(b"X: " + value)) == 400


class TestRFC9112Section5_Limits:
    # RFC 6585 §5: 431 Request Header Fields Too Large, for too many or too long fields.
    def test_the_maximum_number_of_header_fields_parses(self):
        lines = [b"X-%d: v" % i for i in range(MAX_HEADERS)]
        assert len(parse_request_head(request_with(*lines)).headers) == MAX_HEADERS

    def test_one_header_field_too_many_raises_431(self):
        lines = [b"X-%d: v" % i for i in range(MAX_HEADERS + 1)]
        assert status_of(parse_request_head, request_with(*lines)) == 431

    def test_too_many_repeated_fields_also_raise_431(self):
        lines = [b"X: v"] * (MAX_HEADERS + 1)
        assert status_of(parse_request_head, request_with(*lines)) == 431

    def test_a_header_field_line_longer_than_the_limit_raises_431(self):
        line = b"X: " + b"v" * (MAX_LINE - 2)
        assert len(line) == MAX_LINE + 1
        assert status_of(parse_request_head, request_with(line)) == 431
        assert parse_request_head(request_with(line[:-1])).headers["X"] == "v" * (MAX_LINE - 3)

    def test_the_limits_apply_to_responses_too(self):
        lines = b"".join(b"X: v\r\n" for _ in range(MAX_HEADERS + 1))
        assert status_of(parse_response_head, b"HTTP/1.1 101 OK\r\n" + lines + b"\r\n") == 431


class TestRFC9112Section4_SerializingAResponse:
    # RFC 9112 §4 and §5; RFC 9110 §5.5: never emit CR, LF or NUL in a field value.
    def test_a_101_response_serializes_with_its_reason_phrase(self):
        raw = serialize_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")])
        assert raw == SWITCHING

    def test_a_body_follows_the_blank_line(self):
        raw = serialize_response(400, [("Content-Length", "3")], b"bad")
        assert raw == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"

    def test_an_unknown_status_still_has_a_reason_phrase(self):
        assert serialize_response(599, []).startswith(b"HTTP/1.1 599 ")

    def test_a_serialized_response_parses_back(self):
        headers = [("X-A", "1"), ("x-a", "2 3"), ("Y", "caf\u00e9")]
        head = parse_response_head(serialize_response(426, headers))
        assert (head.status_code, head.reason) == (426, "Upgrade Required")
        assert head.headers.raw_items() == headers

    @pytest.mark.parametrize("value", ["a\rb", "a\nb", "a\r\nSet-Cookie: x=1", "a\x00b",
                                       "\n", "\r"])
    def test_serialize_response_refuses_cr_lf_or_nul_in_a_value(self, value):
        with pytest.raises(ValueError):
            serialize_response(200, [("X", value)])

    @pytest.mark.parametrize("name", ["", "X Y", "X:", "X\r\nY", "caf\u00e9"])
    def test_serialize_response_refuses_a_name_that_is_not_a_token(self, name):
        with pytest.raises(ValueError):
            serialize_response(200, [(name, "v")])


class TestRFC9112Section3_SerializingARequest:
    def test_a_request_serializes_and_parses_back(self):
        raw = serialize_request("GET", "/chat?x=1", [("Host", "h"), ("Upgrade", "websocket")])
        assert raw == b"GET /chat?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"
        head = parse_request_head(raw)
        assert (head.method, head.target, head.headers["upgrade"]) == ("GET", "/chat?x=1",
                                                                        "websocket")

    @pytest.mark.parametrize("target", ["", "/a b", "/a\r\nX: 1", "/a\nb", "/\x00"])
    def test_serialize_request_refuses_an_unsafe_target(self, target):
        with pytest.raises(ValueError):
            serialize_request("GET", target, [])

    @pytest.mark.parametrize("name, value", [("X", "a\r\nY: b"), ("X", "\x00"), ("X Y", "v")])
    def test_serialize_request_refuses_unsafe_fields(self, name, value):
        with pytest.raises(ValueError):
            serialize_request("GET", "/", [(name, value)])
