"""The opening handshake, both roles (RFC 6455 §4), driven without I/O."""

from __future__ import annotations

import base64

import pytest

from legato.exceptions import (
    HandshakeRejected,
    InvalidResponse,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
    OriginRejected,
)
from legato.protocol import Connection, Role
from legato.protocol.deflate import DeflateParams, PerMessageDeflate
from legato.protocol.handshake import (
    ClientHandshake,
    ServerHandshake,
    accept_key,
    is_upgrade_request,
)
from legato.protocol.headers import Headers
from legato.protocol.http import parse_request_head, parse_response_head

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def rejection(server: ServerHandshake, headers: Headers, *, method: str = "GET",
              version: str = "1.1", has_body: bool = False) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        server.check(method, version, headers, has_body=has_body)
    return info.value


def b64_of(size: int) -> str:
    return base64.b64encode(bytes(range(size))).decode("ascii")


class TestRFC6455Section1_3_TheAcceptKey:
    # RFC 6455 §1.3: key "dGhlIHNhbXBsZSBub25jZQ==" + GUID, SHA-1, base64 gives
    # "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
    def test_accept_key_of_the_rfc_example_nonce_is_the_rfc_value(self):
        assert accept_key(RFC_KEY) == RFC_ACCEPT

    def test_server_answers_the_rfc_example_key_with_the_rfc_accept_value(self, upgrade_headers):
        server = ServerHandshake()
        accepted = server.accept(server.check("GET", "1.1", upgrade_headers()))
        assert ("Sec-WebSocket-Accept", RFC_ACCEPT) in accepted.headers


class TestRFC6455Section4_2_1_ServerReadsTheHandshake:
    # RFC 6455 §4.2.1: the server must check method, version, Host, Upgrade, Connection,
    # Sec-WebSocket-Key and Sec-WebSocket-Version; otherwise answer 400.

    def test_server_accepts_a_minimal_valid_request(self, upgrade_headers):
        request = ServerHandshake().check("GET", "1.1", upgrade_headers())
        assert request.key == RFC_KEY
        assert request.subprotocols == []
        assert request.extensions == []
        assert request.origin is None

    # §4.2.1 item 1: "An HTTP/1.1 or higher GET request".
    @pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "CONNECT", "get"])
    def test_server_answers_a_method_other_than_get_with_405_and_allow_get(
            self, upgrade_headers, method):
        # RFC 9110 §15.5.6: a 405 response MUST carry Allow; methods are case-sensitive.
        exc = rejection(ServerHandshake(), upgrade_headers(), method=method)
        assert isinstance(exc, InvalidUpgrade)
        assert exc.status_code == 405
        assert exc.headers == [("Allow", "GET")]

    @pytest.mark.parametrize("version", ["1.0", "0.9", "2.0", "2", "1.x", ""])
    def test_server_answers_http_versions_below_1_1_or_not_1_x_with_400(
            self, upgrade_headers, version):
        exc = rejection(ServerHandshake(), upgrade_headers(), version=version)
        assert isinstance(exc, InvalidUpgrade)
        assert exc.status_code == 400

    # §4.2.1 item 2: "A |Host| header field containing the server's authority."
    def test_server_answers_a_request_without_host_with_400(self, upgrade_headers):
        exc = rejection(ServerHandshake(), upgrade_headers(without=["Host"]))
        assert exc.status_code == 400

    def test_server_answers_a_request_with_two_host_headers_with_400(self, upgrade_headers):
        # RFC 9112 §3.2: a request with more than one Host field MUST get 400.
        headers = upgrade_headers(replace={"Host": ["a.example", "b.example"]})
        assert rejection(ServerHandshake(), headers).status_code == 400

    # §4.2.1 item 3: Upgrade "including the value 'websocket', ... ASCII case-insensitive".
    @pytest.mark.parametrize("value", ["websocket", "WebSocket", "WEBSOCKET",
                                       "h2c, websocket", "foo,  WebSocket ,bar"])
    def test_server_accepts_upgrade_websocket_in_any_case_and_within_a_list(
            self, upgrade_headers, value):
        ServerHandshake().check("GET", "1.1", upgrade_headers(replace={"Upgrade": value}))

    def test_server_accepts_websocket_on_a_second_upgrade_header_line(self, upgrade_headers):
        headers = upgrade_headers(replace={"Upgrade": ["h2c", "websocket"]})
        ServerHandshake().check("GET", "1.1", headers)

    @pytest.mark.parametrize("value", ["h2c", "websockets", "web socket", "", []])
    def test_server_answers_an_upgrade_without_the_websocket_token_with_400(
            self, upgrade_headers, value):
        exc = rejection(ServerHandshake(), upgrade_headers(replace={"Upgrade": value}))
        assert exc.status_code == 400

    # §4.2.1 item 4: Connection "that includes the token 'Upgrade'", case-insensitive.
    @pytest.mark.parametrize("value", ["Upgrade", "upgrade", "keep-alive, Upgrade",
                                       "Upgrade, keep-alive", "keep-alive,,UPGRADE"])
    def test_server_accepts_connection_upgrade_in_a_token_list(self, upgrade_headers, value):
        ServerHandshake().check("GET", "1.1", upgrade_headers(replace={"Connection": value}))

    def test_server_accepts_upgrade_on_a_second_connection_header_line(self, upgrade_headers):
        headers = upgrade_headers(replace={"Connection": ["keep-alive", "Upgrade"]})
        ServerHandshake().check("GET", "1.1", headers)

    @pytest.mark.parametrize("value", ["keep-alive", "close", "Upgraded", "Upgrade-Insecure",
                                       "keep alive, Upgrade", []])
    def test_server_answers_connection_without_the_upgrade_token_or_malformed_with_400(
            self, upgrade_headers, value):
        exc = rejection(ServerHandshake(), upgrade_headers(replace={"Connection": value}))
        assert exc.status_code == 400

    # §4.2.1 item 5: a Sec-WebSocket-Key that "when decoded, is 16 bytes in length".
    def test_server_accepts_any_key_that_decodes_to_16_bytes(self, upgrade_headers):
        key = b64_of(16)
        request = ServerHandshake().check(
            "GET", "1.1", upgrade_headers(replace={"Sec-WebSocket-Key": key}))
        assert request.key == key

    @pytest.mark.parametrize("key", [
        b64_of(15), b64_of(17), b64_of(0), b64_of(32),
        "not base64 at all!!!!!!!", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!",
        "dGhlIHNhbXBsZSBub25jZ\u00e9==",
    ], ids=["15-bytes", "17-bytes", "empty", "32-bytes", "non-base64", "unpadded",
            "bad-char", "non-ascii"])
    def test_server_answers_a_key_that_is_not_base64_of_16_bytes_with_400(
            self, upgrade_headers, key):
        exc = rejection(ServerHandshake(), upgrade_headers(replace={"Sec-WebSocket-Key": key}))
        assert isinstance(exc, InvalidUpgrade)
        assert exc.status_code == 400

    @pytest.mark.parametrize("keys", [[RFC_KEY, b64_of(16)], []], ids=["two", "none"])
    def test_server_answers_two_keys_or_none_with_400(self, upgrade_headers, keys):
        headers = upgrade_headers(replace={"Sec-WebSocket-Key": keys})
        assert rejection(ServerHandshake(), headers).status_code == 400

    # §4.2.1 item 6 and §4.4: version 13; any other gets 426 and the versions we speak.
    @pytest.mark.parametrize("version", ["8", "7", "14", "13, 8", "abc"])
    def test_server_answers_another_version_with_426_and_the_supported_version(
            self, upgrade_headers, version):
        exc = rejection(ServerHandshake(),
                        upgrade_headers(replace={"Sec-WebSocket-Version": version}))
        assert exc.status_code == 426
        assert exc.headers == [("Sec-WebSocket-Version", "13")]

    def test_server_answers_version_8_with_426_and_the_supported_version(self, upgrade_headers):
        exc = rejection(ServerHandshake(),
                        upgrade_headers(replace={"Sec-WebSocket-Version": "8"}))
        assert (exc.status_code, exc.headers) == (426, [("Sec-WebSocket-Version", "13")])

    @pytest.mark.parametrize("versions", [[], ["13", "13"]], ids=["none", "two-lines"])
    def test_server_refuses_a_missing_or_repeated_version(self, upgrade_headers, versions):
        headers = upgrade_headers(replace={"Sec-WebSocket-Version": versions})
        assert rejection(ServerHandshake(), headers).status_code in (400, 426)

    # RFC 9110 §7.8: the protocol switches after the request message ends, so a body
    # would be read as WebSocket frames; legato refuses upgrade requests with a body.
    @pytest.mark.parametrize("extra", [
        [("Content-Length", "5")], [("Content-Length", " 1 ")],
        [("Transfer-Encoding", "chunked")], [("Content-Length", "0"), ("Content-Length", "1")],
    ])
    def test_server_answers_a_request_that_declares_a_body_with_400(self, upgrade_headers, extra):
        exc = rejection(ServerHandshake(), upgrade_headers(extra=extra))
        assert isinstance(exc, InvalidUpgrade)
        assert exc.status_code == 400

    def test_server_answers_a_request_the_parser_saw_a_body_on_with_400(self, upgrade_headers):
        assert rejection(ServerHandshake(), upgrade_headers(), has_body=True).status_code == 400

    def test_server_accepts_content_length_zero(self, upgrade_headers):
        headers = upgrade_headers(extra=[("Content-Length", "0")])
        ServerHandshake().check("GET", "1.1", headers)

    # §4.2.1 item 8: Sec-WebSocket-Protocol "a list of values"; §4.1: tokens.
    def test_server_collects_offered_subprotocols_across_header_lines(self, upgrade_headers):
        headers = upgrade_headers(extra=[("Sec-WebSocket-Protocol", "chat, superchat"),
                                         ("Sec-WebSocket-Protocol", "v2.json")])
        request = ServerHandshake().check("GET", "1.1", headers)
        assert request.subprotocols == ["chat", "superchat", "v2.json"]

    def test_server_answers_a_malformed_subprotocol_list_with_400(self, upgrade_headers):
        headers = upgrade_headers(extra=[("Sec-WebSocket-Protocol", "chat superchat")])
        assert rejection(ServerHandshake(), headers).status_code == 400

    # §4.2.1 item 9 and RFC 7692 §5: an offer the server cannot parse is declined.
    def test_server_declines_a_malformed_extension_offer_without_failing(self, upgrade_headers):
        headers = upgrade_headers(extra=[("Sec-WebSocket-Extensions", "permessage-deflate;")])
        server = ServerHandshake()
        request = server.check("GET", "1.1", headers)
        assert request.extensions == []
        accepted = server.accept(request)
        assert accepted.deflate is None
        assert all(name != "Sec-WebSocket-Extensions" for name, _ in accepted.headers)

    def test_is_upgrade_request_spots_websocket_in_the_upgrade_list(self):
        assert is_upgrade_request(Headers([("Upgrade", "h2c, WebSocket")]))
        assert not is_upgrade_request(Headers([("Upgrade", "h2c")]))
        assert not is_upgrade_request(Headers())


class TestRFC6455Section10_2_OriginConsiderations:
    # RFC 6455 §10.2 / §4.2.2: a server that does not accept the Origin answers 403.
    def test_server_accepts_a_listed_origin_and_reports_it(self, upgrade_headers):
        server = ServerHandshake(allowed_origins={"https://app.example"})
        headers = upgrade_headers(extra=[("Origin", "https://app.example")])
        assert server.check("GET", "1.1", headers).origin == "https://app.example"

    @pytest.mark.parametrize("origin", ["https://evil.example", "https://app.example.evil",
                                        "null", "HTTPS://APP.EXAMPLE.COM"])
    def test_server_answers_an_unlisted_origin_with_403_origin_rejected(
            self, upgrade_headers, origin):
        server = ServerHandshake(allowed_origins={"https://app.example"})
        exc = rejection(server, upgrade_headers(extra=[("Origin", origin)]))
        assert isinstance(exc, OriginRejected)
        assert exc.status_code == 403

    def test_server_lets_a_request_without_origin_pass_the_allow_list(self, upgrade_headers):
        server = ServerHandshake(allowed_origins={"https://app.example"})
        assert server.check("GET", "1.1", upgrade_headers()).origin is None

    def test_origin_check_sees_the_origin_and_its_no_gives_403(self, upgrade_headers):
        seen = []

        def check(origin):
            seen.append(origin)
            return origin == "https://ok.example"

        server = ServerHandshake(origin_check=check)
        server.check("GET", "1.1", upgrade_headers(extra=[("Origin", "https://ok.example")]))
        exc = rejection(server, upgrade_headers(extra=[("Origin", "https://no.example")]))
        assert isinstance(exc, OriginRejected) and exc.status_code == 403
        assert seen == ["https://ok.example", "https://no.example"]

    def test_origin_check_gets_none_when_the_request_has_no_origin(self, upgrade_headers):
        server = ServerHandshake(origin_check=lambda origin: origin is not None)
        assert isinstance(rejection(server, upgrade_headers()), OriginRejected)

    def test_origin_check_and_allow_list_must_both_agree(self, upgrade_headers):
        server = ServerHandshake(allowed_origins={"https://a.example"},
                                 origin_check=lambda origin: False)
        exc = rejection(server, upgrade_headers(extra=[("Origin", "https://a.example")]))
        assert isinstance(exc, OriginRejected)

    def test_server_answers_two_origin_headers_with_400(self, upgrade_headers):
        headers = upgrade_headers(extra=[("Origin", "https://a.example"),
                                         ("Origin", "https://b.example")])
        exc = rejection(ServerHandshake(allowed_origins={"https://a.example"}), headers)
        assert exc.status_code == 400


class TestRFC6455Section4_2_2_ServerSendsTheHandshake:
    # RFC 6455 §4.2.2 step 5: 101, Upgrade: websocket, Connection: Upgrade,
    # Sec-WebSocket-Accept, optional Sec-WebSocket-Protocol and -Extensions.

    def test_accept_builds_a_101_with_upgrade_connection_and_accept(self, upgrade_headers):
        server = ServerHandshake(deflate=None)
        accepted = server.accept(server.check("GET", "1.1", upgrade_headers()))
        assert accepted.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                    ("Sec-WebSocket-Accept", RFC_ACCEPT)]
        head = parse_response_head(accepted.response())
        assert head.status_code == 101 and head.reason == "Switching Protocols"
        assert head.http_version == "1.1"
        assert head.headers["sec-websocket-accept"] == RFC_ACCEPT

    def test_accepted_connection_is_a_server_engine(self, upgrade_headers):
        server = ServerHandshake()
        accepted = server.accept(server.check("GET", "1.1", upgrade_headers()))
        connection = accepted.connection()
        assert isinstance(connection, Connection) and connection.role is Role.SERVER

    # §4.2.2 step 5.4 /subprotocol/: "one of the values ... the client's handshake".
    def test_server_selects_its_most_preferred_subprotocol_the_client_offered(
            self, upgrade_headers):
        server = ServerHandshake(subprotocols=["v3", "v2", "v1"])
        headers = upgrade_headers(extra=[("Sec-WebSocket-Protocol", "v1, v2")])
        request = server.check("GET", "1.1", headers)
        assert server.select_subprotocol(request) == "v2"
        accepted = server.accept(request, subprotocol="v2")
        assert ("Sec-WebSocket-Protocol", "v2") in accepted.headers
        assert accepted.subprotocol == "v2"

    def test_server_selects_no_subprotocol_when_none_is_in_common(self, upgrade_headers):
        server = ServerHandshake(subprotocols=["v3"])
        headers = upgrade_headers(extra=[("Sec-WebSocket-Protocol", "v1, v2")])
        assert server.select_subprotocol(server.check("GET", "1.1", headers)) is None

    def test_server_selects_no_subprotocol_when_the_client_offers_none(self, upgrade_headers):
        server = ServerHandshake(subprotocols=["v1"])
        request = server.check("GET", "1.1", upgrade_headers())
        assert server.select_subprotocol(request) is None
        accepted = server.accept(request)
        assert all(name != "Sec-WebSocket-Protocol" for name, _ in accepted.headers)

    def test_accept_refuses_a_subprotocol_the_client_did_not_offer(self, upgrade_headers):
        server = ServerHandshake(subprotocols=["v1", "v9"])
        headers = upgrade_headers(extra=[("Sec-WebSocket-Protocol", "v1")])
        request = server.check("GET", "1.1", headers)
        with pytest.raises(ValueError):
            server.accept(request, subprotocol="v9")

    def test_accept_negotiates_permessage_deflate_when_offered(self, upgrade_headers):
        server = ServerHandshake()
        headers = upgrade_headers(extra=[("Sec-WebSocket-Extensions",
                                          "permessage-deflate; client_max_window_bits")])
        accepted = server.accept(server.check("GET", "1.1", headers))
        assert ("Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
                ) in accepted.headers
        assert accepted.deflate == DeflateParams(server_max_window_bits=12,
                                                 client_max_window_bits=12)

    def test_accept_never_negotiates_deflate_when_the_server_disables_it(self, upgrade_headers):
        server = ServerHandshake(deflate=None)
        headers = upgrade_headers(extra=[("Sec-WebSocket-Extensions", "permessage-deflate")])
        accepted = server.accept(server.check("GET", "1.1", headers))
        assert accepted.deflate is None
        assert all(name != "Sec-WebSocket-Extensions" for name, _ in accepted.headers)

    def test_accept_ignores_extensions_it_does_not_know(self, upgrade_headers):
        server = ServerHandshake()
        headers = upgrade_headers(extra=[("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")])
        accepted = server.accept(server.check("GET", "1.1", headers))
        assert accepted.deflate is None

    def test_accept_appends_extra_response_headers(self, upgrade_headers):
        server = ServerHandshake()
        accepted = server.accept(server.check("GET", "1.1", upgrade_headers()),
                                 headers=[("Set-Cookie", "a=1"), ("X-Served-By", "legato")])
        assert accepted.headers[-2:] == [("Set-Cookie", "a=1"), ("X-Served-By", "legato")]

    @pytest.mark.parametrize("name", ["Sec-WebSocket-Accept", "sec-websocket-protocol",
                                      "SEC-WEBSOCKET-EXTENSIONS", "Sec-WebSocket-Version"])
    def test_extra_headers_cannot_override_sec_websocket_headers(self, upgrade_headers, name):
        server = ServerHandshake()
        request = server.check("GET", "1.1", upgrade_headers())
        with pytest.raises(ValueError):
            server.accept(request, headers=[(name, "forged")])

    def test_extra_header_values_cannot_inject_header_lines(self, upgrade_headers):
        server = ServerHandshake()
        accepted = server.accept(server.check("GET", "1.1", upgrade_headers()),
                                 headers=[("X-A", "1\r\nSec-WebSocket-Accept: forged")])
        with pytest.raises(ValueError):
            accepted.response()


class TestRFC6455Section4_2_2_ServerRefusesTheHandshake:
    # RFC 6455 §4.2.2: "return an appropriate HTTP error code" and, on a version
    # mismatch, the Sec-WebSocket-Version the server understands (§4.4).
    def test_reject_builds_a_closing_plain_text_response(self):
        raw = ServerHandshake.reject(403, b"forbidden")
        assert raw == (b"HTTP/1.1 403 Forbidden\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: 9\r\n"
                       b"Connection: close\r\n\r\nforbidden")

    def test_reject_without_a_body_declares_content_length_zero(self):
        head = parse_response_head(ServerHandshake.reject(400))
        assert head.status_code == 400
        assert head.headers["Content-Length"] == "0"
        assert head.headers["Connection"] == "close"

    def test_reject_carries_the_headers_of_a_426_rejection(self, upgrade_headers):
        exc = rejection(ServerHandshake(),
                        upgrade_headers(replace={"Sec-WebSocket-Version": "8"}))
        raw = ServerHandshake.reject(exc.status_code, headers=exc.headers)
        head = parse_response_head(raw)
        assert head.status_code == 426 and head.reason == "Upgrade Required"
        assert head.headers.get_all("Sec-WebSocket-Version") == ["13"]

    def test_reject_carries_allow_on_a_405(self, upgrade_headers):
        exc = rejection(ServerHandshake(), upgrade_headers(), method="POST")
        head = parse_response_head(ServerHandshake.reject(exc.status_code, headers=exc.headers))
        assert (head.status_code, head.headers["Allow"]) == (405, "GET")

    def test_reject_refuses_a_header_value_with_a_line_break(self):
        with pytest.raises(ValueError):
            ServerHandshake.reject(400, headers=[("X-Reason", "a\r\nSet-Cookie: x=1")])


class TestRFC6455Section4_1_ClientSendsTheHandshake:
    # RFC 6455 §4.1: GET, HTTP/1.1, Host, Upgrade: websocket, Connection: Upgrade, a fresh
    # random 16-byte base64 key, Sec-WebSocket-Version: 13, optional Origin/Protocol/Ext.

    def test_client_request_has_every_required_field(self):
        client = ClientHandshake("server.example.com:8080", "/chat?room=1")
        head = parse_request_head(client.request())
        assert (head.method, head.target, head.http_version) == ("GET", "/chat?room=1", "1.1")
        assert head.headers.get_all("Host") == ["server.example.com:8080"]
        assert head.headers["Upgrade"].lower() == "websocket"
        assert "upgrade" in head.headers["Connection"].lower()
        assert head.headers["Sec-WebSocket-Version"] == "13"
        assert len(base64.b64decode(head.headers["Sec-WebSocket-Key"], validate=True)) == 16
        assert head.headers["Sec-WebSocket-Key"] == client.key

    def test_client_picks_a_fresh_key_for_every_handshake(self):
        keys = {ClientHandshake("h").key for _ in range(20)}
        assert len(keys) == 20

    def test_client_request_lists_subprotocols_origin_extensions_and_extra_headers(self):
        client = ClientHandshake("h", subprotocols=["chat", "superchat"],
                                 origin="https://app.example",
                                 headers=[("Authorization", "Bearer t")])
        headers = parse_request_head(client.request()).headers
        assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
        assert headers["Origin"] == "https://app.example"
        assert headers["Authorization"] == "Bearer t"
        assert headers["Sec-WebSocket-Extensions"] == PerMessageDeflate().offer()

    def test_client_request_without_deflate_or_options_omits_those_fields(self):
        headers = parse_request_head(ClientHandshake("h", deflate=None).request()).headers
        for name in ("Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin"):
            assert name not in headers

    def test_client_request_passes_the_server_checks(self):
        client = ClientHandshake("h", subprotocols=["chat"], origin="https://a.example")
        head = parse_request_head(client.request())
        server = ServerHandshake(subprotocols=["chat"], allowed_origins={"https://a.example"})
        request = server.check(head.method, head.http_version, head.headers)
        assert request.key == client.key and request.subprotocols == ["chat"]

    def test_client_refuses_a_target_with_a_space_or_line_break(self):
        for target in ("/a b", "/a\r\nX: 1", ""):
            with pytest.raises(ValueError):
                ClientHandshake("h", target).request()


def response_headers(client: ClientHandshake, *, without=(), extra=(), accept=None) -> Headers:
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept or accept_key(client.key))]
    return Headers([(n, v) for n, v in base if n not in without] + list(extra))


class TestRFC6455Section4_1_ClientReadsTheResponse:
    # RFC 6455 §4.1, "the client MUST validate the server's response as follows".

    def test_client_accepts_a_valid_101_and_gets_a_client_engine(self):
        client = ClientHandshake("h", deflate=None)
        result = client.check_response(101, response_headers(client))
        assert (result.subprotocol, result.deflate) == (None, None)
        assert result.connection.role is Role.CLIENT

    # Item 1: "If the status code received from the server is not 101, ... handle the
    # response per HTTP procedures" and the WebSocket connection fails.
    @pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500])
    def test_client_raises_invalid_status_carrying_a_non_101_status(self, status):
        client = ClientHandshake("h")
        headers = Headers([("Content-Type", "text/plain"), ("Content-Length", "4")])
        with pytest.raises(InvalidStatus) as info:
            client.check_response(status, headers, b"nope")
        assert info.value.status_code == status
        assert info.value.headers == [("Content-Type", "text/plain"), ("Content-Length", "4")]
        assert info.value.body == b"nope"

    # Item 2: Upgrade must be an ASCII case-insensitive match for "websocket".
    def test_client_fails_a_response_without_upgrade(self):
        client = ClientHandshake("h")
        with pytest.raises(InvalidResponse) as info:
            client.check_response(101, response_headers(client, without=["Upgrade"]))
        assert not isinstance(info.value, (InvalidStatus, NegotiationError))

    def test_client_fails_a_response_upgrading_to_another_protocol(self):
        client = ClientHandshake("h")
        headers = response_headers(client, without=["Upgrade"], extra=[("Upgrade", "h2c")])
        with pytest.raises(InvalidResponse):
            client.check_response(101, headers)

    def test_client_accepts_upgrade_and_connection_in_any_case(self):
        client = ClientHandshake("h", deflate=None)
        headers = Headers([("upgrade", "WebSocket"), ("connection", "upgrade"),
                           ("sec-websocket-accept", accept_key(client.key))])
        client.check_response(101, headers)

    # Item 3: Connection must include "Upgrade".
    def test_client_fails_a_response_without_connection_upgrade(self):
        client = ClientHandshake("h")
        with pytest.raises(InvalidResponse):
            client.check_response(101, response_headers(client, without=["Connection"]))
        headers = response_headers(client, without=["Connection"],
                                   extra=[("Connection", "keep-alive")])
        with pytest.raises(InvalidResponse):
            client.check_response(101, headers)

    # Item 4: Sec-WebSocket-Accept must be base64(SHA-1(key + GUID)).
    def test_client_fails_a_response_with_the_wrong_accept_key(self):
        client = ClientHandshake("h")
        with pytest.raises(InvalidResponse):
            client.check_response(101, response_headers(client, accept=RFC_ACCEPT))

    def test_client_fails_a_response_without_an_accept_key(self):
        client = ClientHandshake("h")
        with pytest.raises(InvalidResponse):
            client.check_response(101, response_headers(client, without=["Sec-WebSocket-Accept"]))

    def test_client_fails_a_response_with_two_accept_keys(self):
        client = ClientHandshake("h")
        headers = response_headers(client, extra=[("Sec-WebSocket-Accept", accept_key(client.key))])
        with pytest.raises(InvalidResponse):
            client.check_response(101, headers)

    # Item 6: a subprotocol "not present in the client's handshake" fails the connection.
    def test_client_accepts_the_subprotocol_it_offered(self):
        client = ClientHandshake("h", subprotocols=["chat", "superchat"])
        headers = response_headers(client, extra=[("Sec-WebSocket-Protocol", "superchat")])
        assert client.check_response(101, headers).subprotocol == "superchat"

    @pytest.mark.parametrize("offered, answered", [
        (["chat"], ["other"]), ([], ["chat"]), (["chat", "v2"], ["chat", "v2"]),
        (["chat", "v2"], ["chat, v2"]),
    ])
    def test_client_fails_a_subprotocol_it_did_not_offer_with_negotiation_error(
            self, offered, answered):
        client = ClientHandshake("h", subprotocols=offered)
        headers = response_headers(client, extra=[("Sec-WebSocket-Protocol", v) for v in answered])
        with pytest.raises(NegotiationError):
            client.check_response(101, headers)

    # Item 5: an extension "not present in the client's handshake" fails the connection.
    def test_client_accepts_permessage_deflate_it_offered(self):
        client = ClientHandshake("h")
        headers = response_headers(client, extra=[(
            "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=12")])
        result = client.check_response(101, headers)
        assert result.deflate == DeflateParams(server_max_window_bits=12,
                                               client_max_window_bits=12)

    @pytest.mark.parametrize("deflate, answer", [
        (PerMessageDeflate(), "x-webkit-deflate-frame"),
        (None, "permessage-deflate"),
        (PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12, "
                              "permessage-deflate; server_max_window_bits=12"),
        (PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12, x-foo"),
    ], ids=["unknown", "deflate-not-offered", "deflate-twice", "deflate-plus-unknown"])
    def test_client_fails_an_extension_it_did_not_offer_with_negotiation_error(
            self, deflate, answer):
        client = ClientHandshake("h", deflate=deflate)
        headers = response_headers(client, extra=[("Sec-WebSocket-Extensions", answer)])
        with pytest.raises(NegotiationError):
            client.check_response(101, headers)

    @pytest.mark.parametrize("answer", ["permessage-deflate;", "permessage-deflate x",
                                        'permessage-deflate; server_max_window_bits="1 2"',
                                        "; server_max_window_bits=12"])
    def test_client_fails_a_malformed_extension_header_with_negotiation_error(self, answer):
        client = ClientHandshake("h")
        headers = response_headers(client, extra=[("Sec-WebSocket-Extensions", answer)])
        with pytest.raises(NegotiationError):
            client.check_response(101, headers)

    def test_client_fails_invalid_deflate_parameters_with_negotiation_error(self):
        client = ClientHandshake("h")
        headers = response_headers(client, extra=[(
            "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=13")])
        with pytest.raises(NegotiationError):
            client.check_response(101, headers)


class TestRFC6455Section4_BothRolesTogether:
    # RFC 6455 §4.1 + §4.2: what one side sends, the other accepts.
    @pytest.mark.parametrize("server_deflate", [PerMessageDeflate(), None,
                                                PerMessageDeflate(server_max_window_bits=15,
                                                                  client_max_window_bits=None)])
    @pytest.mark.parametrize("client_deflate", [PerMessageDeflate(), None,
                                                PerMessageDeflate(server_max_window_bits=15,
                                                                  client_max_window_bits=15)])
    def test_a_legato_client_and_server_agree(self, server_deflate, client_deflate):
        client = ClientHandshake("h", subprotocols=["v1", "v2"], deflate=client_deflate)
        req = parse_request_head(client.request())
        server = ServerHandshake(subprotocols=["v2"], deflate=server_deflate)
        request = server.check(req.method, req.http_version, req.headers)
        accepted = server.accept(request, subprotocol=server.select_subprotocol(request))
        resp = parse_response_head(accepted.response())
        result = client.check_response(resp.status_code, resp.headers)
        assert result.subprotocol == "v2"
        assert result.deflate == accepted.deflate
        assert (result.deflate is None) == (server_deflate is None or client_deflate is None)
