"""Failing with the Close held (RFC 6455 §7.1.7, ``hold_fail_close``): the messages that
arrived before a bad frame are reported first and may still be answered; the Close with
the failure's code goes out only when the I/O layer says so.

The shapes are those of the Autobahn cases that rated legato NON-STRICT while its answer
to the valid message was lost (3.2, 3.3, 4.1.3, 4.1.4, 4.2.3, 4.2.4, 5.15): a valid
message, then a bad frame, then a Ping (which must go unanswered), all in one read. The
server role reads whole one-frame messages with the compiled reader when it is built
(``LEGATO_NO_EXTENSIONS=1`` runs these on the pure-Python reader).
"""

from __future__ import annotations

import pytest

from legato.exceptions import LocalProtocolError
from legato.protocol.connection import Role, State
from legato.protocol.events import ConnectionFailed, Event, TextMessage
from legato.protocol.frames import encode_server_frame
from wire import BINARY, CLOSE, CONT, PING, TEXT, Peer, close_payload, expect_failure

HELLO = b"Hello, world!"


def autobahn_shape(peer: Peer, case: str) -> tuple[bytes, list[str]]:
    """The bytes of one Autobahn case as one read, and the messages before its bad frame."""
    ping = peer.frame(PING)
    if case in ("3.2", "3.3"):
        # The text message again with RSV = 2 or 3 (Autobahn's 3-bit field: RSV2, or
        # RSV2 | RSV3), with no extension that defines them.
        bad = peer.frame(TEXT, HELLO, rsv2=True, rsv3=case == "3.3")
        return peer.frame(TEXT, HELLO) + bad + ping, [HELLO.decode()]
    reserved = {"4.1.3": (5, b""), "4.1.4": (6, b"hello"), "4.2.3": (13, b""),
                "4.2.4": (14, b"hello")}
    if case in reserved:  # a reserved data (0x3-0x7) or control (0xB-0xF) opcode
        opcode, payload = reserved[case]
        return peer.frame(TEXT, HELLO) + peer.frame(opcode, payload) + ping, [HELLO.decode()]
    assert case == "5.15"  # a fragmented message, then a continuation with nothing to continue
    return (peer.frame(TEXT, b"fragment1", fin=False) + peer.frame(CONT, b"fragment2")
            + peer.frame(CONT, b"fragment3", fin=False) + peer.frame(TEXT, b"fragment4")), \
        ["fragment1fragment2"]


CASES = ["3.2", "3.3", "4.1.3", "4.1.4", "4.2.3", "4.2.4", "5.15"]


def failing(role: Role = Role.SERVER) -> Peer:
    return Peer(role, hold_fail_close=True)


def texts(events: list[Event]) -> list[str]:
    return [event.data for event in events if isinstance(event, TextMessage)]


@pytest.mark.parametrize("case", CASES)
def test_RFC6455_s7_1_7_messages_before_a_bad_frame_are_reported_before_the_failure(
        role: Role, case: str) -> None:
    """Without holding too (the default): the messages come first, then the failure."""
    peer = Peer(role)
    data, before = autobahn_shape(peer, case)
    events = peer.feed(data)
    assert texts(events) == before
    expect_failure(peer, events, 1002)


@pytest.mark.parametrize("case", CASES)
def test_RFC6455_s7_1_7_replies_to_messages_before_a_bad_frame_are_sent_before_the_close(
        role: Role, case: str) -> None:
    peer = failing(role)
    data, before = autobahn_shape(peer, case)
    events = peer.feed(data)
    assert texts(events) == before
    assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1002
    assert peer.conn.state is State.FAILING
    assert peer.sent() == [], "no Close yet, and no Pong for the Ping after the bad frame"
    assert peer.conn.close_transport() is False
    for text in before:  # the app's echo
        peer.conn.send_text(text)
    peer.conn.send_fail_close()
    frames = peer.sent()
    assert [(f.opcode, f.payload) for f in frames[:-1]] == [(TEXT, t.encode()) for t in before]
    assert frames[-1].opcode == CLOSE and frames[-1].close_code == 1002
    assert peer.conn.state is State.CLOSED
    assert peer.conn.close_transport() is True  # §7.1.7: no closing handshake to wait for
    assert peer.conn.close_code == 1002


def test_RFC6455_s7_1_7_the_held_failure_ends_the_events_and_input_after_it_is_discarded(
        role: Role) -> None:
    peer = failing(role)
    events = peer.feed(peer.frame(TEXT, b"a") + peer.frame(0x3))
    assert [type(event) for event in events] == [TextMessage, ConnectionFailed]
    assert peer.feed(peer.frame(TEXT, b"b") + peer.frame(PING)) == []
    peer.conn.receive_eof()  # the peer hangs up while we hold the Close
    assert peer.conn.events_received() == [], "exactly one event ends the stream"
    assert peer.conn.state is State.CLOSED
    assert peer.conn.close_transport() is True
    assert peer.sent() == [], "the transport is gone: no Close to send"
    with pytest.raises(LocalProtocolError):
        peer.conn.send_fail_close()


def test_RFC6455_s7_1_7_while_failing_data_may_go_out_but_no_control_frame_or_other_close(
) -> None:
    peer = failing()
    peer.feed(peer.frame(TEXT, b"a") + peer.frame(TEXT, b"\xff"))  # invalid UTF-8: 1007
    assert peer.conn.state is State.FAILING
    peer.conn.send_bytes(b"answer")
    frame = encode_server_frame(0x81, b"prepared")
    assert peer.conn.send_prepared(frame) == peer.frame(BINARY, b"answer", masked=False) + frame
    with pytest.raises(LocalProtocolError):
        peer.conn.send_ping()
    with pytest.raises(LocalProtocolError, match="send_fail_close"):
        peer.conn.send_close(1000)
    peer.conn.send_fail_close()
    (close,) = peer.sent()
    assert close.close_code == 1007
    with pytest.raises(LocalProtocolError):
        peer.conn.send_text("too late")


def test_RFC6455_s7_1_7_a_failure_after_our_close_closes_at_once_even_when_holding() -> None:
    peer = failing()
    peer.conn.send_close(1000)
    peer.sent()
    events = peer.feed(peer.frame(0x3))
    assert isinstance(events[-1], ConnectionFailed)
    assert peer.conn.state is State.CLOSED and peer.conn.close_transport() is True
    assert peer.sent() == [], "one Close per connection: ours went out already"


def test_send_fail_close_without_a_failure_is_our_misuse() -> None:
    peer = failing()
    with pytest.raises(LocalProtocolError):
        peer.conn.send_fail_close()
    peer.send(CLOSE, close_payload(1000))
    with pytest.raises(LocalProtocolError):
        peer.conn.send_fail_close()


def test_RFC6455_s7_1_7_a_pong_owed_before_the_bad_frame_still_goes_out_before_the_close(
) -> None:
    peer = failing()
    peer.feed(peer.frame(PING, b"p") + peer.frame(TEXT, b"x", rsv2=True))
    peer.conn.send_fail_close()
    assert [(f.opcode, f.payload[:1]) for f in peer.sent()] == [(0xA, b"p"), (CLOSE, b"\x03")]
