"""Closing: the Close frame, status codes, the closing handshake and the end of TCP
(RFC 6455 §5.5.1, §7.1-§7.4)."""

from __future__ import annotations

import pytest

from legato.exceptions import LocalProtocolError
from legato.protocol.close import is_wire_code
from legato.protocol.connection import Connection, Role, State
from legato.protocol.events import (
    CloseReceived,
    ConnectionFailed,
    ConnectionLost,
    TextMessage,
)
from wire import (
    BINARY,
    CLOSE,
    PING,
    TEXT,
    Peer,
    close_payload,
    expect_failure,
    parse_frames,
)

FORBIDDEN_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
ALLOWED_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                 3000, 3999, 4000, 4999]
REPORT_ONLY_CODES = [1005, 1006, 1015]


def send_after(role: Role, how: str) -> Peer:
    """A connection in the state reached by ``how``; its output is already drained."""
    peer = Peer(role)
    if how == "send_close":
        peer.conn.send_close(1000)
    elif how == "peer_close":
        peer.send(CLOSE, close_payload(1000))
    elif how == "failure":
        peer.send(0x3)
    elif how == "eof":
        peer.conn.receive_eof()
    elif how == "handshake_done":
        peer.conn.send_close(1000)
        peer.send(CLOSE, close_payload(1000))
    peer.conn.data_to_send()
    peer.conn.events_received()
    return peer


CLOSED_OR_CLOSING = ["send_close", "peer_close", "failure", "eof", "handshake_done"]


class TestRFC6455Section5_5_1_ClosePayload:
    # RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a
    # 2-byte unsigned integer (in network byte order) representing a status code ...
    # Following the 2-byte integer, the body MAY contain UTF-8-encoded data".

    def test_close_with_a_1_byte_payload_fails_with_1002(self, peer):
        expect_failure(peer, peer.send(CLOSE, b"\x03"), 1002)

    @pytest.mark.parametrize("code", FORBIDDEN_CODES)
    def test_close_with_a_code_not_allowed_on_the_wire_fails_with_1002(self, peer, code):
        # §7.4.1/§7.4.2: 0-999 unused, 1004 reserved, 1005/1006/1015 "MUST NOT be set as
        # a status code in a Close control frame", 1016-2999 unassigned, 5000+ invalid.
        expect_failure(peer, peer.send(CLOSE, close_payload(code)), 1002)

    @pytest.mark.parametrize("code", FORBIDDEN_CODES)
    def test_close_with_a_forbidden_code_and_a_reason_fails_with_1002(self, peer, code):
        expect_failure(peer, peer.send(CLOSE, close_payload(code, b"reason")), 1002)

    @pytest.mark.parametrize("code", ALLOWED_CODES)
    def test_close_with_an_allowed_code_is_accepted(self, peer, code):
        assert peer.send(CLOSE, close_payload(code)) == [CloseReceived(code, "")]
        assert peer.conn.close_received == (code, "")
        assert peer.conn.failure is None

    @pytest.mark.parametrize("reason", ["", "bye", "déjà vu ☃ 😀", "x" * 123])
    def test_close_reason_in_utf8_is_reported(self, peer, reason):
        events = peer.send(CLOSE, close_payload(1000, reason.encode()))
        assert events == [CloseReceived(1000, reason)]

    @pytest.mark.parametrize("reason", [b"\xff", b"\xed\xa0\x80", b"ok\xe2\x82", b"\xc0\xaf"])
    def test_close_reason_that_is_not_utf8_fails_with_1007(self, peer, reason):
        expect_failure(peer, peer.send(CLOSE, close_payload(1000, reason)), 1007)

    def test_empty_close_is_reported_as_1005(self, peer):
        # §7.1.5: a Close frame without a status code is reported as 1005.
        assert peer.send(CLOSE, b"") == [CloseReceived(1005, "")]
        assert peer.conn.close_code == 1005


class TestRFC6455Section5_5_1_ClosingHandshake:
    # RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously send
    # a Close frame, the endpoint MUST send a Close frame in response. (When sending a
    # Close frame in response, the endpoint typically echos the status code it
    # received.)"

    @pytest.mark.parametrize("code", ALLOWED_CODES)
    def test_received_close_is_echoed_with_the_same_code(self, peer, code):
        peer.send(CLOSE, close_payload(code, b"reason"))
        (echo,) = peer.sent()
        assert echo.opcode == CLOSE and echo.fin
        assert echo.close_code == code
        assert peer.conn.close_sent is not None and peer.conn.close_sent[0] == code
        assert peer.conn.state is State.CLOSED

    def test_empty_close_is_answered_with_an_empty_close(self, peer):
        peer.send(CLOSE, b"")
        (echo,) = peer.sent()
        assert echo.opcode == CLOSE and echo.payload == b""

    def test_our_close_goes_on_the_wire_with_its_code_and_reason(self, peer):
        peer.conn.send_close(4000, "going ☃")
        (frame,) = peer.sent()
        assert frame.close_code == 4000 and frame.close_reason == "going ☃".encode()
        assert peer.conn.state is State.CLOSING
        assert peer.conn.close_sent == (4000, "going ☃")

    def test_peer_close_after_ours_completes_the_handshake_without_another_frame(self, peer):
        peer.conn.send_close(1001)
        peer.sent()
        assert peer.send(CLOSE, close_payload(1001)) == [CloseReceived(1001, "")]
        assert peer.conn.state is State.CLOSED
        assert peer.sent() == []

    def test_failure_after_our_close_sends_no_second_close(self, peer):
        # §5.5.1: one Close frame per endpoint; failing (§7.1.7) then just drops TCP.
        peer.conn.send_close(1000)
        peer.sent()
        events = peer.send(0x3)
        assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1002
        assert peer.sent() == []
        assert peer.conn.state is State.CLOSED
        assert peer.conn.close_transport() is True

    def test_messages_arriving_after_we_sent_close_are_still_delivered(self, peer):
        # §7.1.2: after sending Close we wait for the peer's; its data may still arrive.
        peer.conn.send_close(1000)
        assert peer.send(TEXT, b"in flight") == [TextMessage("in flight")]
        assert peer.conn.state is State.CLOSING

    def test_everything_after_close_is_discarded(self, peer):
        # §5.5.1: "The application MUST NOT send any more data frames after sending a
        # Close frame"; whatever follows is not processed.
        stream = (peer.frame(CLOSE, close_payload(1000)) + peer.frame(TEXT, b"after")
                  + peer.frame(PING, b"after") + peer.frame(0x3, b"bad"))
        assert peer.feed(stream) == [CloseReceived(1000, "")]
        assert [f.opcode for f in peer.sent()] == [CLOSE]  # the echo, no Pong
        assert peer.feed(peer.frame(TEXT, b"later") + b"\xff\xff\xff") == []
        assert peer.conn.data_to_send() == b""
        assert peer.conn.failure is None

    def test_everything_after_close_is_discarded_when_fed_byte_by_byte(self, peer):
        stream = peer.frame(CLOSE, b"") + peer.frame(BINARY, b"after") + b"\x00" * 10
        assert peer.feed(stream, chunk_size=1) == [CloseReceived(1005, "")]

    def test_send_close_reason_of_123_bytes_is_accepted_and_124_raises_value_error(self, role):
        Connection(role).send_close(1000, "é" * 61 + "x")  # 123 bytes in UTF-8
        with pytest.raises(ValueError):
            Connection(role).send_close(1000, "é" * 62)  # 124 bytes

    @pytest.mark.parametrize("how", CLOSED_OR_CLOSING)
    @pytest.mark.parametrize("method, args", [
        ("send_text", ("x",)), ("send_bytes", (b"x",)), ("send_ping", (b"",)),
        ("send_pong", (b"",)),
    ])
    def test_sending_after_close_raises_local_protocol_error(self, role, how, method, args):
        peer = send_after(role, how)
        with pytest.raises(LocalProtocolError):
            getattr(peer.conn, method)(*args)
        assert peer.conn.data_to_send() == b""

    @pytest.mark.parametrize("how", CLOSED_OR_CLOSING)
    def test_send_close_twice_raises_local_protocol_error(self, role, how):
        peer = send_after(role, how)
        with pytest.raises(LocalProtocolError):
            peer.conn.send_close(1000)
        assert peer.conn.data_to_send() == b""

    def test_finishing_a_fragmented_message_after_close_raises(self, role):
        conn = Connection(role)
        conn.send_text("a", fin=False)
        conn.send_close(1000)
        with pytest.raises(LocalProtocolError):
            conn.send_continuation(b"b")


class TestRFC6455Section7_4_CodesNeverOnTheWire:
    # RFC 6455 §7.4.1: 1005, 1006 and 1015 are "designated for use in applications
    # expecting a status code to indicate" what happened and "MUST NOT be set as a
    # status code in a Close control frame by an endpoint".

    @pytest.mark.parametrize("code", [1006, 1015, 0, 999, 1004, 1016, 2999, 5000, 65535])
    def test_send_close_raises_value_error_for_a_code_not_allowed_on_the_wire(
            self, role, code):
        conn = Connection(role)
        with pytest.raises(ValueError):
            conn.send_close(code)
        assert conn.data_to_send() == b""
        assert conn.state is State.OPEN

    def test_send_close_1005_never_puts_1005_on_the_wire(self, role):
        # 1005 means "no status code": either refused or sent as an empty Close.
        conn = Connection(role)
        try:
            conn.send_close(1005)
        except ValueError:
            assert conn.data_to_send() == b""
            return
        (frame,) = parse_frames(conn.data_to_send())
        assert frame.opcode == CLOSE and frame.payload == b""

    @pytest.mark.parametrize("code", ALLOWED_CODES)
    def test_send_close_accepts_every_code_allowed_on_the_wire(self, role, code):
        conn = Connection(role)
        conn.send_close(code)
        (frame,) = parse_frames(conn.data_to_send())
        assert frame.close_code == code

    @pytest.mark.parametrize("payload", [b"", close_payload(1000)] + [
        close_payload(code) for code in REPORT_ONLY_CODES])
    def test_our_echo_never_carries_a_report_only_code(self, peer, payload):
        peer.send(CLOSE, payload)
        (frame,) = peer.sent()
        assert frame.close_code is None or is_wire_code(frame.close_code)

    @pytest.mark.parametrize("stream", [
        lambda p: p.frame(CLOSE, close_payload(1006)),
        lambda p: p.frame(TEXT, b"\xff"),
        lambda p: p.frame(0xF),
        lambda p: p.frame(CLOSE, b"\x03"),
    ])
    def test_our_failure_close_carries_a_wire_code(self, peer, stream):
        events = peer.feed(stream(peer))
        assert isinstance(events[-1], ConnectionFailed)
        (frame,) = peer.sent()
        assert frame.close_code not in REPORT_ONLY_CODES and is_wire_code(frame.close_code)


class TestRFC6455Section7_1_1_ClosingTheTransport:
    # RFC 6455 §7.1.1: "The underlying TCP connection, in most normal cases, SHOULD be
    # closed first by the server ... the client SHOULD wait for the server to close the
    # connection"; §7.1.7: failing the connection closes it at once.

    def test_transport_stays_open_while_the_connection_is_open(self, peer):
        peer.send(TEXT, b"x")
        assert peer.conn.close_transport() is False

    def test_server_closes_the_transport_once_it_echoed_the_peer_close(self, server):
        server.send(CLOSE, close_payload(1000))
        assert server.conn.close_transport() is True

    def test_server_waits_for_the_echo_before_closing_the_transport(self, server):
        server.conn.send_close(1000)
        assert server.conn.close_transport() is False
        server.send(CLOSE, close_payload(1000))
        assert server.conn.close_transport() is True

    @pytest.mark.parametrize("how", ["peer_close", "handshake_done"])
    def test_client_waits_for_the_server_to_close_the_transport(self, how):
        client = send_after(Role.CLIENT, how)
        assert client.conn.state is State.CLOSED
        assert client.conn.close_transport() is False
        client.conn.receive_eof()
        assert client.conn.close_transport() is True
        assert client.conn.events_received() == []

    def test_both_roles_close_the_transport_at_once_after_a_failure(self, peer):
        expect_failure(peer, peer.send(0x3), 1002)  # checks close_transport() too

    def test_both_roles_close_the_transport_after_eof(self, peer):
        peer.conn.receive_eof()
        assert peer.conn.close_transport() is True


class TestRFC6455Section7_1_5_ConnectionLost:
    # RFC 6455 §7.1.5: "If _The WebSocket Connection is Closed_ and no Close control
    # frame was received by the endpoint (such as could occur if the underlying transport
    # connection is lost), _The WebSocket Connection Close Code_ is considered to be 1006."

    def test_eof_without_close_yields_connection_lost_and_1006(self, peer):
        peer.send(TEXT, b"hi")
        peer.conn.receive_eof()
        assert peer.conn.events_received() == [ConnectionLost(1006)]
        assert peer.conn.state is State.CLOSED
        assert peer.conn.close_code == 1006
        assert peer.conn.data_to_send() == b""  # no Close frame on a dead transport

    def test_eof_in_the_middle_of_a_frame_yields_connection_lost(self, peer):
        peer.feed(peer.frame(BINARY, b"x" * 1000)[:500])
        peer.conn.receive_eof()
        assert peer.conn.events_received() == [ConnectionLost(1006)]
        assert peer.conn.close_code == 1006

    def test_eof_after_we_sent_close_yields_connection_lost_and_1006(self, peer):
        peer.conn.send_close(1000)
        peer.conn.receive_eof()
        assert peer.conn.events_received() == [ConnectionLost(1006)]
        assert peer.conn.state is State.CLOSED
        assert peer.conn.close_code == 1006

    def test_close_code_after_the_closing_handshake_is_the_peer_code(self, peer):
        peer.send(CLOSE, close_payload(4001))
        peer.conn.receive_eof()
        assert peer.conn.events_received() == []
        assert peer.conn.close_code == 4001

    @pytest.mark.parametrize("how", ["peer_close", "failure", "handshake_done"])
    def test_eof_after_the_end_adds_no_second_terminal_event(self, role, how):
        # events.py: exactly one of CloseReceived, ConnectionFailed, ConnectionLost.
        peer = send_after(role, how)
        peer.conn.receive_eof()
        assert peer.conn.events_received() == []

    def test_input_after_eof_is_ignored(self, peer):
        peer.conn.receive_eof()
        peer.conn.events_received()
        assert peer.feed(peer.frame(TEXT, b"late") + peer.frame(CLOSE, b"")) == []
        assert peer.conn.data_to_send() == b""

    def test_repeated_eof_reports_the_loss_once(self, peer):
        peer.conn.receive_eof()
        peer.conn.receive_eof()
        assert peer.conn.events_received() == [ConnectionLost(1006)]
