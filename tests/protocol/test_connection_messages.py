"""Messages, fragmentation, control frames and UTF-8 (RFC 6455 §5.4-§5.6, §8.1).

Every rule is checked with valid and invalid input, in both roles; the UTF-8 tests also
pin *when* a bad byte fails the connection: on the fragment or TCP chunk holding it.
"""

from __future__ import annotations

import random

import pytest

from legato.exceptions import LocalProtocolError
from legato.protocol.connection import Connection, Role, State
from legato.protocol.deflate import DeflateCodec, DeflateParams
from legato.protocol.events import (
    BytesMessage,
    CloseReceived,
    ConnectionFailed,
    Ping,
    Pong,
    TextMessage,
)
from wire import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    Peer,
    close_payload,
    expect_failure,
    parse_frames,
)


def fragments(peer: Peer, opcode: int, parts: list[bytes]) -> list[bytes]:
    """The frames of one message split into ``parts`` (first opcode, then CONT)."""
    last = len(parts) - 1
    return [peer.frame(opcode if i == 0 else CONT, part, fin=i == last)
            for i, part in enumerate(parts)]


class TestRFC6455Section5_4_Fragmentation:
    # RFC 6455 §5.4: "A fragmented message consists of a single frame with the FIN bit
    # clear and an opcode other than 0, followed by zero or more frames with the FIN bit
    # clear and the opcode set to 0, and terminated by a single frame with the FIN bit
    # set and an opcode of 0."

    @pytest.mark.parametrize("count", [2, 3, 10])
    def test_text_fragments_are_reassembled_into_one_message(self, peer, count):
        parts = [f"part{i};".encode() for i in range(count)]
        events = peer.feed_chunks(fragments(peer, TEXT, parts))
        assert events == [TextMessage(b"".join(parts).decode())]

    @pytest.mark.parametrize("count", [2, 3, 10])
    def test_binary_fragments_are_reassembled_into_one_message(self, peer, count):
        parts = [bytes([i]) * (i * 50) for i in range(count)]
        events = peer.feed_chunks(fragments(peer, BINARY, parts))
        assert events == [BytesMessage(b"".join(parts))]

    def test_no_event_is_reported_before_the_final_fragment(self, peer):
        frames = fragments(peer, TEXT, [b"a", b"b", b"c"])
        assert peer.feed(frames[0]) == []
        assert peer.feed(frames[1]) == []
        assert peer.feed(frames[2]) == [TextMessage("abc")]

    @pytest.mark.parametrize("parts", [
        [b"", b"abc"], [b"abc", b""], [b"a", b"", b"c"], [b"", b""], [b"", b"", b""],
    ])
    def test_empty_fragments_are_allowed(self, peer, parts):
        events = peer.feed_chunks(fragments(peer, TEXT, parts))
        assert events == [TextMessage(b"".join(parts).decode())]

    def test_messages_after_a_fragmented_one_are_independent(self, peer):
        frames = fragments(peer, BINARY, [b"one-", b"two"]) + [peer.frame(TEXT, b"three")]
        assert peer.feed(b"".join(frames)) == [BytesMessage(b"one-two"), TextMessage("three")]

    @pytest.mark.parametrize("control, payload, event", [
        (PING, b"are you there", Ping(b"are you there")),
        (PONG, b"heartbeat", Pong(b"heartbeat")),
    ])
    def test_control_frames_between_fragments_are_accepted(self, peer, control, payload, event):
        # §5.4: "Control frames MAY be injected in the middle of a fragmented message."
        first, middle, last = fragments(peer, TEXT, [b"frag", b"men", b"ted"])
        stream = [first, peer.frame(control, payload), middle,
                  peer.frame(control, payload), last]
        assert peer.feed_chunks(stream) == [event, event, TextMessage("fragmented")]

    def test_ping_between_fragments_is_answered_before_the_message_ends(self, peer):
        first, last = fragments(peer, BINARY, [b"a", b"b"])
        assert peer.feed(first + peer.frame(PING, b"now")) == [Ping(b"now")]
        (pong,) = peer.sent()
        assert pong.opcode == PONG and pong.payload == b"now"
        assert peer.feed(last) == [BytesMessage(b"ab")]

    def test_close_between_fragments_ends_the_connection_without_the_message(self, peer):
        first, last = fragments(peer, TEXT, [b"a", b"b"])
        events = peer.feed_chunks([first, peer.frame(CLOSE, close_payload(1000)), last])
        assert events == [CloseReceived(1000, "")]

    def test_continuation_without_a_message_fails_with_1002(self, peer):
        # §5.4: fragments follow a first frame with a non-zero opcode.
        expect_failure(peer, peer.send(CONT, b"orphan"), 1002)

    def test_continuation_after_a_finished_message_fails_with_1002(self, peer):
        assert peer.send(TEXT, b"done") == [TextMessage("done")]
        expect_failure(peer, peer.send(CONT, b"more", fin=False), 1002)

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    @pytest.mark.parametrize("fin", [True, False])
    def test_new_data_frame_inside_a_fragmented_message_fails_with_1002(
            self, peer, opcode, fin):
        # §5.4: "the fragments of one message MUST NOT be interleaved between the
        # fragments of another message unless an extension has been negotiated".
        assert peer.send(TEXT, b"first", fin=False) == []
        expect_failure(peer, peer.send(opcode, b"second", fin=fin), 1002)

    def test_new_data_frame_after_an_empty_first_fragment_fails_with_1002(self, peer):
        assert peer.send(BINARY, b"", fin=False) == []
        expect_failure(peer, peer.send(BINARY, b"x"), 1002)

    def test_sent_fragments_carry_fin_only_on_the_last_and_opcode_only_on_the_first(
            self, role):
        conn = Connection(role)
        conn.send_text("a", fin=False)
        conn.send_ping(b"between")  # §5.4: control frames may be injected by us too
        conn.send_continuation(b"b", fin=False)
        conn.send_continuation(b"c", fin=True)
        frames = parse_frames(conn.data_to_send())
        assert [(f.opcode, f.fin, f.payload) for f in frames] == [
            (TEXT, False, b"a"), (PING, True, b"between"),
            (CONT, False, b"b"), (CONT, True, b"c")]

    def test_sending_a_continuation_without_a_message_raises(self, role):
        with pytest.raises(LocalProtocolError):
            Connection(role).send_continuation(b"x")

    @pytest.mark.parametrize("method, data", [("send_text", "x"), ("send_bytes", b"x")])
    def test_starting_a_message_inside_a_fragmented_one_raises(self, role, method, data):
        conn = Connection(role)
        conn.send_bytes(b"a", fin=False)
        with pytest.raises(LocalProtocolError):
            getattr(conn, method)(data)


class TestRFC6455Section5_5_ControlFrames:
    # RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less
    # and MUST NOT be fragmented."

    @pytest.mark.parametrize("opcode, payload, event", [
        (PING, b"p" * 125, Ping(b"p" * 125)),
        (PONG, b"q" * 125, Pong(b"q" * 125)),
        (CLOSE, close_payload(1000, b"r" * 123), CloseReceived(1000, "r" * 123)),
    ])
    def test_control_frame_of_125_bytes_is_accepted(self, peer, opcode, payload, event):
        assert peer.send(opcode, payload) == [event]

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    @pytest.mark.parametrize("length", [126, 65535, 65536])
    def test_control_frame_over_125_bytes_fails_with_1002(self, peer, opcode, length):
        payload = close_payload(1000, b"r" * (length - 2))
        expect_failure(peer, peer.send(opcode, payload), 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_control_frame_over_125_bytes_fails_from_its_header_alone(self, peer, opcode):
        frame = peer.frame(opcode, close_payload(1000, b"r" * 1000))
        expect_failure(peer, peer.feed(frame[:8]), 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_fragmented_control_frame_fails_with_1002(self, peer, opcode):
        payload = close_payload(1000) if opcode == CLOSE else b"half"
        expect_failure(peer, peer.send(opcode, payload, fin=False), 1002)

    def test_fragmented_control_frame_inside_a_fragmented_message_fails_with_1002(self, peer):
        assert peer.send(BINARY, b"a", fin=False) == []
        expect_failure(peer, peer.send(PING, b"", fin=False), 1002)

    @pytest.mark.parametrize("method", ["send_ping", "send_pong"])
    def test_sending_a_control_payload_over_125_bytes_raises_value_error(self, role, method):
        conn = Connection(role)
        getattr(conn, method)(b"x" * 125)
        with pytest.raises(ValueError):
            getattr(conn, method)(b"x" * 126)


class TestRFC6455Section5_5_2_Ping:
    # RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame
    # in response"; §5.5.3: "A Pong frame sent in response to a Ping frame must have
    # identical 'Application data' as found in the message body of the Ping frame."

    @pytest.mark.parametrize("payload", [b"", b"x", b"\xff\x00\xfe not utf-8", b"z" * 125])
    def test_ping_is_answered_with_a_pong_carrying_the_same_payload(self, peer, payload):
        assert peer.send(PING, payload) == [Ping(payload)]
        (pong,) = peer.sent()
        assert (pong.opcode, pong.fin, pong.payload) == (PONG, True, payload)
        assert peer.conn.state is State.OPEN

    def test_latest_ping_is_answered_when_several_arrive_at_once(self, peer):
        # §5.5.3: an endpoint may answer only the most recent of several Pings.
        events = peer.feed(peer.frame(PING, b"1") + peer.frame(PING, b"2"))
        assert events == [Ping(b"1"), Ping(b"2")]
        pongs = peer.sent()
        assert pongs and all(f.opcode == PONG for f in pongs)
        assert pongs[-1].payload == b"2"

    def test_ping_after_we_sent_close_is_still_answered(self, peer):
        # §5.5.2: the only exception is "unless it already received a Close frame";
        # having *sent* one is not (and a Pong is not a data frame, §5.5.1).
        peer.conn.send_close(1000)
        peer.sent()
        assert peer.send(PING, b"still there?") == [Ping(b"still there?")]
        pongs = [f for f in peer.sent() if f.opcode == PONG]
        assert [f.payload for f in pongs] == [b"still there?"]

    def test_ping_after_the_peer_close_is_not_answered(self, peer):
        stream = peer.frame(CLOSE, close_payload(1000)) + peer.frame(PING, b"late")
        assert peer.feed(stream) == [CloseReceived(1000, "")]
        assert [f.opcode for f in peer.sent()] == [CLOSE]

    def test_ping_arriving_byte_by_byte_is_answered_once_whole(self, peer):
        frame = peer.frame(PING, b"slow")
        assert peer.feed(frame[:-1], 1) == []
        assert peer.conn.data_to_send() == b""
        assert peer.feed(frame[-1:]) == [Ping(b"slow")]
        assert [f.payload for f in peer.sent()] == [b"slow"]


class TestRFC6455Section5_5_3_Pong:
    # RFC 6455 §5.5.3: "A Pong frame MAY be sent unsolicited. This serves as a
    # unidirectional heartbeat. A response to an unsolicited Pong frame is not expected."

    def test_unsolicited_pong_is_reported_and_ignored(self, peer):
        assert peer.send(PONG, b"heartbeat") == [Pong(b"heartbeat")]
        assert peer.conn.data_to_send() == b""
        assert peer.conn.state is State.OPEN
        assert peer.conn.failure is None

    def test_pong_answering_our_ping_is_reported(self, peer):
        peer.conn.send_ping(b"probe")
        (ping,) = peer.sent()
        assert ping.opcode == PING and ping.payload == b"probe"
        assert peer.send(PONG, b"probe") == [Pong(b"probe")]

    def test_pong_with_a_payload_we_never_pinged_is_not_an_error(self, peer):
        peer.conn.send_ping(b"probe")
        assert peer.send(PONG, b"something else") == [Pong(b"something else")]
        assert peer.conn.state is State.OPEN

    def test_unsolicited_pong_can_be_sent(self, role):
        conn = Connection(role)
        conn.send_pong(b"beat")
        (pong,) = parse_frames(conn.data_to_send())
        assert (pong.opcode, pong.payload) == (PONG, b"beat")


class TestRFC6455Section5_6_DataFrames:
    # RFC 6455 §5.6: text is "interpreted as UTF-8", binary "is up to the application".

    @pytest.mark.parametrize("opcode, event", [
        (TEXT, TextMessage("")), (BINARY, BytesMessage(b"")),
    ])
    def test_empty_message_is_delivered(self, peer, opcode, event):
        assert peer.send(opcode, b"") == [event]

    def test_binary_message_is_not_checked_as_utf8(self, peer):
        assert peer.send(BINARY, b"\xff\xed\xa0\x80") == [BytesMessage(b"\xff\xed\xa0\x80")]

    def test_messages_round_trip_between_a_client_and_a_server(self):
        client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
        client.send_text("héllo ☃ 😀")
        client.send_bytes(bytes(range(256)) * 300)
        server.receive_data(client.data_to_send())
        assert server.events_received() == [
            TextMessage("héllo ☃ 😀"), BytesMessage(bytes(range(256)) * 300)]
        server.send_text("ok")
        client.receive_data(server.data_to_send())
        assert client.events_received() == [TextMessage("ok")]


class TestRFC7692Section7_2_EmptyCompressedMessages:
    # RFC 7692 §7.2.3.6: an empty message may be compressed to a single 0x00 byte (an
    # empty non-final stored block once the receiver appends 00 00 FF FF, §7.2.2).

    @pytest.mark.parametrize("body", [b"\x00", b"\x02\x00"], ids=["stored", "fixed"])
    @pytest.mark.parametrize("opcode, event", [
        (TEXT, TextMessage("")), (BINARY, BytesMessage(b"")),
    ])
    def test_empty_compressed_message_is_delivered_and_the_next_one_intact(
            self, role, body, opcode, event):
        peer = Peer(role, deflate=DeflateCodec(DeflateParams(),
                                               is_client=role is Role.CLIENT))
        stream = peer.frame(opcode, body, rsv1=True) + peer.frame(BINARY, b"\x00", rsv1=True)
        assert peer.feed(stream) == [event, BytesMessage(b"")]

    def test_compressed_frames_with_no_payload_never_yield_a_message_never_sent(self, role):
        # An empty payload plus 00 00 FF FF is not a whole DEFLATE block (it is the LEN
        # and NLEN of a stored block without its header), so §7.2.2 cannot complete:
        # failing with 1007 is right; inflating the next frames as that block's content
        # delivers bytes the peer never sent.
        peer = Peer(role, deflate=DeflateCodec(DeflateParams(),
                                               is_client=role is Role.CLIENT))
        stream = (peer.frame(TEXT, b"", rsv1=True) + peer.frame(BINARY, b"", rsv1=True)
                  + peer.frame(BINARY, b"\x00", rsv1=True))
        events = peer.feed(stream)
        if isinstance(events[-1], ConnectionFailed):
            assert events[-1].code == 1007
            events = events[:-1]
        assert events == [TextMessage(""), BytesMessage(b""), BytesMessage(b"")][:len(events)]


INVALID_UTF8 = {
    "lone-continuation": b"\x80",
    "invalid-byte-ff": b"\xff",
    "invalid-lead-f5": b"\xf5\x80\x80\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3-byte": b"\xe0\x80\xaf",
    "overlong-4-byte": b"\xf0\x80\x80\xaf",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "truncated-then-ascii": b"\xe2\x82a",
    "autobahn-6.3.1": b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
}

VALID_UTF8_EDGES = ["\x00", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000",
                    "\ufeff", "\uffff", "\U00010000", "\U0010ffff"]


class TestRFC6455Section8_1_Utf8:
    # RFC 6455 §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds
    # that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST
    # _Fail the WebSocket Connection_" (with 1007, §7.4.1).

    @pytest.mark.parametrize("name", sorted(INVALID_UTF8))
    def test_invalid_utf8_text_fails_with_1007(self, peer, name):
        payload = b"ok " + INVALID_UTF8[name] + b" end"
        expect_failure(peer, peer.send(TEXT, payload), 1007)

    @pytest.mark.parametrize("name", sorted(INVALID_UTF8))
    def test_invalid_utf8_in_a_fragmented_text_fails_with_1007(self, peer, name):
        parts = [b"ok ", INVALID_UTF8[name], b" end"]
        expect_failure(peer, peer.feed_chunks(fragments(peer, TEXT, parts)), 1007)

    @pytest.mark.parametrize("char", VALID_UTF8_EDGES, ids=lambda c: f"U+{ord(c):04X}")
    def test_valid_utf8_boundary_code_points_are_accepted(self, peer, char):
        assert peer.send(TEXT, f"<{char}>".encode()) == [TextMessage(f"<{char}>")]

    @pytest.mark.parametrize("name", sorted(INVALID_UTF8))
    def test_invalid_sequence_fails_on_the_fragment_holding_it(self, peer, name):
        # Fail fast: the rest of the message is never waited for.
        first, bad, rest = fragments(peer, TEXT, [b"fine", INVALID_UTF8[name] + b"!", b"x"])
        assert peer.feed(first) == []
        expect_failure(peer, peer.feed(bad), 1007)
        assert peer.feed(rest) == []

    @pytest.mark.parametrize("split", [
        [b"\xed", b"\xa0\x80"],
        [b"a\xed", b"\xa0", b"\x80"],
        [b"\xed\xa0", b"\x80"],
        [b"\xed", b"\xa0", b"\x80"],
    ], ids=["ed|a080", "a-ed|a0|80", "eda0|80", "ed|a0|80"])
    def test_surrogate_split_across_fragments_fails_when_its_second_byte_arrives(
            self, peer, split):
        # U+D800 is encoded ED A0 80: ED is a fine start, ED A0 can never be completed.
        frames = fragments(peer, TEXT, split + [b"tail"])
        fail_at = next(i for i, part in enumerate(split) if b"\xa0" in part)
        for frame in frames[:fail_at]:
            assert peer.feed(frame) == []
        expect_failure(peer, peer.feed(frames[fail_at]), 1007)
        assert peer.feed(b"".join(frames[fail_at + 1:])) == []

    @pytest.mark.parametrize("bad, fail_at", [
        (b"\xff", 0), (b"\x80", 0), (b"\xc0\xaf", 0),
        (b"\xed\xa0\x80", 1), (b"\xf4\x90\x80\x80", 1), (b"\xf0\x9f\x98\x41", 3),
    ], ids=["ff", "80", "c0af", "eda080", "f4908080", "f09f9841"])
    @pytest.mark.parametrize("opcode", [TEXT, CONT])
    def test_invalid_sequence_fails_on_the_tcp_chunk_holding_it(
            self, peer, opcode, bad, fail_at):
        # One frame's payload arriving in TCP chunks is checked chunk by chunk: the byte
        # at ``fail_at`` is the first after which ``bad`` cannot be completed.
        if opcode == CONT:
            assert peer.send(TEXT, b"start ", fin=False) == []
        payload = b"a" * 100 + bad + b"b" * 100
        frame = peer.frame(opcode, payload)
        bad_start = len(frame) - len(payload) + 100
        assert peer.feed(frame[:bad_start]) == []
        assert peer.feed(frame[bad_start:bad_start + fail_at], chunk_size=1) == []
        expect_failure(peer, peer.feed(frame[bad_start + fail_at:][:1]), 1007)
        assert peer.feed(frame[bad_start + fail_at + 1:]) == []

    @pytest.mark.parametrize("chunk_size", [1, 2, 3])
    def test_surrogate_in_a_frame_dribbled_byte_by_byte_fails_on_its_second_byte(
            self, peer, chunk_size):
        payload = b"abc\xed\xa0\x80" + b"z" * 50
        frame = peer.frame(TEXT, payload)
        second_byte = len(frame) - len(payload) + payload.index(b"\xa0")
        assert peer.feed(frame[:second_byte], chunk_size) == []
        expect_failure(peer, peer.feed(frame[second_byte:second_byte + 1]), 1007)

    @pytest.mark.parametrize("text", ["😀", "€", "é"], ids=["4-byte", "3-byte", "2-byte"])
    def test_valid_sequence_split_across_fragments_at_every_position_passes(self, role, text):
        encoded = b"<" + text.encode() + b">"
        for cut in range(1, len(encoded)):
            peer = Peer(role)
            frames = fragments(peer, TEXT, [encoded[:cut], encoded[cut:]])
            assert peer.feed(frames[0]) == []
            assert peer.feed(frames[1]) == [TextMessage(encoded.decode())]

    def test_4_byte_sequence_split_into_one_byte_fragments_passes(self, peer):
        parts = [bytes([b]) for b in "😀".encode()]
        assert peer.feed_chunks(fragments(peer, TEXT, parts)) == [TextMessage("😀")]

    def test_valid_sequences_in_a_frame_fed_byte_by_byte_pass(self, peer):
        text = "aé€😀" * 20
        assert peer.feed(peer.frame(TEXT, text.encode()), 1) == [TextMessage(text)]

    @pytest.mark.parametrize("tail", [b"\xf0", b"\xf0\x9f", b"\xf0\x9f\x98", b"\xe2\x82",
                                      b"\xc3", b"\xed"])
    def test_text_message_ending_inside_a_sequence_fails_with_1007(self, peer, tail):
        expect_failure(peer, peer.send(TEXT, b"ok" + tail), 1007)

    @pytest.mark.parametrize("tail", [b"\xf0\x9f\x98", b"\xc3"])
    def test_fragmented_text_ending_inside_a_sequence_fails_with_1007(self, peer, tail):
        first, last = fragments(peer, TEXT, [b"ok" + tail, b""])
        assert peer.feed(first) == []
        expect_failure(peer, peer.feed(last), 1007)


def conversation(peer: Peer) -> bytes:
    """A stream exercising every path of the reader, ending with a Close."""
    rng = random.Random(7)
    frames = [
        peer.frame(TEXT, "héllo 😀".encode()),
        peer.frame(BINARY, b""),
        peer.frame(TEXT, b""),
        peer.frame(BINARY, rng.randbytes(300)),          # 16-bit length
        peer.frame(BINARY, rng.randbytes(70000)),        # 64-bit length
        *fragments(peer, TEXT, ["😀".encode()[:1], "😀".encode()[1:], b"!"]),
        peer.frame(PING, b"ping"),
        peer.frame(BINARY, b"a", fin=False),
        peer.frame(PONG, b"pong"),
        peer.frame(CONT, b"", fin=False),
        peer.frame(PING, b""),
        peer.frame(CONT, b"b"),
        peer.frame(CLOSE, close_payload(1001, "bye ☃".encode())),
    ]
    return b"".join(frames)


FAILING_STREAMS = {
    "bad-utf8": lambda p: p.frame(TEXT, b"ok") + p.frame(TEXT, b"a\xed\xa0\x80b"),
    "reserved-opcode": lambda p: p.frame(PING, b"x") + p.frame(0xB, b""),
    "orphan-continuation": lambda p: p.frame(BINARY, b"a") + p.frame(CONT, b"b"),
    "bad-close-code": lambda p: p.frame(CLOSE, close_payload(1005)),
    "wrong-masking": lambda p: p.frame(TEXT, b"x", masked=not p.must_mask),
}


class TestRFC6455Section5_2_StreamSplitting:
    # RFC 6455 §5.2 frames a byte stream; TCP may split it anywhere (and §5.4: an
    # intermediary may re-fragment), so the events must not depend on the chunking.

    def test_byte_at_a_time_feeding_gives_identical_events(self, role):
        whole, dribbled = Peer(role), Peer(role)
        expected = whole.feed(conversation(whole))
        assert expected[-1] == CloseReceived(1001, "bye ☃")
        assert len(expected) == 11
        assert dribbled.feed(conversation(dribbled), chunk_size=1) == expected
        sent = [(f.opcode, f.payload) for f in whole.sent()]
        assert [(f.opcode, f.payload) for f in dribbled.sent()] == sent

    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    def test_input_may_be_any_bytes_like_object(self, role, kind):
        whole, other = Peer(role), Peer(role)
        expected = whole.feed(conversation(whole))
        stream = conversation(other)
        chunks = [kind(stream[i:i + 997]) for i in range(0, len(stream), 997)]
        assert other.feed_chunks(chunks) == expected

    @pytest.mark.parametrize("seed", range(5))
    def test_random_chunking_gives_identical_events(self, role, seed):
        whole, chunked = Peer(role), Peer(role)
        expected = whole.feed(conversation(whole))
        stream = conversation(chunked)
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(stream)), 200))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)], strict=True)]
        assert chunked.feed_chunks(chunks) == expected

    @pytest.mark.parametrize("name", sorted(FAILING_STREAMS))
    def test_byte_at_a_time_feeding_fails_the_same_way(self, role, name):
        whole, dribbled = Peer(role), Peer(role)
        expected = whole.feed(FAILING_STREAMS[name](whole))
        assert isinstance(expected[-1], ConnectionFailed)
        assert dribbled.feed(FAILING_STREAMS[name](dribbled), chunk_size=1) == expected
