"""The base framing protocol of the connection engine (RFC 6455 §5.1-§5.3).

Payload lengths, FIN and RSV bits, opcodes and masking, read and written, in both
roles. Fragmentation and control frames are in test_connection_messages.py.
"""

from __future__ import annotations

import random

import pytest

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
    MASK,
    PING,
    PONG,
    TEXT,
    Peer,
    close_payload,
    expect_failure,
    parse_frames,
)

RESERVED_DATA_OPCODES = [0x3, 0x4, 0x5, 0x6, 0x7]
RESERVED_CONTROL_OPCODES = [0xB, 0xC, 0xD, 0xE, 0xF]
LENGTH_BOUNDARIES = [0, 1, 125, 126, 127, 65535, 65536, 70000]


def codec_for(role: Role) -> DeflateCodec:
    return DeflateCodec(DeflateParams(), is_client=role is Role.CLIENT)


class TestRFC6455Section5_2_PayloadLength:
    # RFC 6455 §5.2: "Payload length: 7 bits, 7+16 bits, or 7+64 bits ... If 0-125, that
    # is the payload length. If 126, the following 2 bytes ... If 127, the following 8
    # bytes ... (the most significant bit MUST be 0)."

    @pytest.mark.parametrize("length", LENGTH_BOUNDARIES)
    def test_payload_of_every_length_encoding_is_received_intact(self, peer, length):
        payload = random.Random(length).randbytes(length)
        assert peer.send(BINARY, payload) == [BytesMessage(payload)]
        assert peer.conn.state is State.OPEN

    @pytest.mark.parametrize("length", [125, 126, 65535, 65536])
    def test_header_split_at_every_byte_is_reassembled(self, peer, length):
        payload = b"x" * length
        frame = peer.frame(TEXT, payload)
        header_size = len(frame) - length
        for i in range(header_size):
            assert peer.feed(frame[i:i + 1]) == []
        assert peer.feed(frame[header_size:]) == [TextMessage(payload.decode())]

    @pytest.mark.parametrize("length, header_size", [
        (0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10),
    ])
    def test_sent_frames_use_the_shortest_length_encoding(self, role, length, header_size):
        # §5.2: "the minimal number of bytes MUST be used to encode the length".
        conn = Connection(role)
        conn.send_bytes(b"\x01" * length)
        (frame,) = parse_frames(conn.data_to_send())
        masking_key = 4 if role is Role.CLIENT else 0
        assert frame.header_size == header_size + masking_key
        assert frame.payload == b"\x01" * length

    @pytest.mark.parametrize("max_message_size", [None, 1 << 20])
    def test_fails_64_bit_length_with_most_significant_bit_set_with_1002(
            self, role, max_message_size):
        peer = Peer(role, max_message_size=max_message_size)
        header = peer.header(BINARY, (1 << 63) | 5)
        events = peer.feed(header + b"\x00" * 5)
        expect_failure(peer, events, 1002)

    def test_fails_64_bit_length_with_most_significant_bit_set_from_the_header_alone(
            self, peer):
        header = peer.header(TEXT, 1 << 63)
        expect_failure(peer, peer.feed(header), 1002)

    def test_largest_legal_64_bit_length_is_refused_as_too_big_not_as_malformed(self, peer):
        # 2**63 - 1 is a legal length; only the configured limit (§10.4) refuses it.
        header = peer.header(BINARY, (1 << 63) - 1)
        expect_failure(peer, peer.feed(header), 1009)


class TestRFC6455Section5_2_FinBit:
    # RFC 6455 §5.2: "FIN: 1 bit. Indicates that this is the final fragment in a message."

    def test_frame_with_fin_set_is_a_whole_message(self, peer):
        assert peer.send(TEXT, b"whole") == [TextMessage("whole")]

    def test_frame_with_fin_clear_delivers_nothing_until_the_final_fragment(self, peer):
        assert peer.send(BINARY, b"first", fin=False) == []
        assert peer.send(CONT, b"-last") == [BytesMessage(b"first-last")]

    def test_sent_message_has_fin_set(self, role):
        conn = Connection(role)
        conn.send_text("hello")
        (frame,) = parse_frames(conn.data_to_send())
        assert frame.fin and frame.opcode == TEXT and frame.payload == b"hello"


class TestRFC6455Section5_2_ReservedBits:
    # RFC 6455 §5.2: "RSV1, RSV2, RSV3: MUST be 0 unless an extension is negotiated that
    # defines meanings for non-zero values. If a nonzero value is received and none of
    # the negotiated extensions defines the meaning of such a nonzero value, the
    # receiving endpoint MUST _Fail the WebSocket Connection_."

    @pytest.mark.parametrize("bits", [
        {"rsv1": True}, {"rsv2": True}, {"rsv3": True},
        {"rsv1": True, "rsv2": True, "rsv3": True},
    ], ids=["rsv1", "rsv2", "rsv3", "all"])
    @pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE])
    def test_fails_reserved_bits_without_an_extension_with_1002(self, peer, opcode, bits):
        expect_failure(peer, peer.send(opcode, b"", **bits), 1002)

    def test_fails_reserved_bit_on_a_continuation_without_an_extension_with_1002(self, peer):
        assert peer.send(TEXT, b"a", fin=False) == []
        expect_failure(peer, peer.send(CONT, b"b", rsv3=True), 1002)

    @pytest.mark.parametrize("bits", [{"rsv2": True}, {"rsv3": True}], ids=["rsv2", "rsv3"])
    def test_fails_rsv2_and_rsv3_even_with_permessage_deflate_with_1002(self, role, bits):
        # RFC 7692 defines RSV1 only.
        peer = Peer(role, deflate=codec_for(role))
        expect_failure(peer, peer.send(TEXT, b"", **bits), 1002)

    @pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
    def test_fails_rsv1_on_a_control_frame_even_with_permessage_deflate_with_1002(
            self, role, opcode):
        # RFC 7692 §6: the "Per-Message Compressed" bit is for data messages only.
        peer = Peer(role, deflate=codec_for(role))
        expect_failure(peer, peer.send(opcode, b"", rsv1=True), 1002)

    def test_fails_rsv1_on_a_continuation_even_with_permessage_deflate_with_1002(self, role):
        # RFC 7692 §6.1: RSV1 is set on the first frame of a message only.
        peer = Peer(role, deflate=codec_for(role))
        assert peer.send(BINARY, b"a", fin=False) == []
        expect_failure(peer, peer.send(CONT, b"b", rsv1=True), 1002)

    def test_sent_frames_never_set_reserved_bits_without_an_extension(self, role):
        conn = Connection(role)
        conn.send_text("a", fin=False)
        conn.send_continuation(b"b")
        conn.send_bytes(b"c")
        conn.send_ping(b"d")
        conn.send_pong(b"e")
        conn.send_close(1000)
        frames = parse_frames(conn.data_to_send())
        assert len(frames) == 6
        assert not any(f.rsv1 or f.rsv2 or f.rsv3 for f in frames)


class TestRFC6455Section5_2_Opcodes:
    # RFC 6455 §5.2: "%x3-7 are reserved for further non-control frames ... %xB-F are
    # reserved for further control frames"; §5.2: "If an unknown opcode is received, the
    # receiving endpoint MUST _Fail the WebSocket Connection_."

    @pytest.mark.parametrize("opcode", RESERVED_DATA_OPCODES)
    def test_fails_reserved_data_opcode_with_1002(self, peer, opcode):
        expect_failure(peer, peer.send(opcode, b"data"), 1002)

    @pytest.mark.parametrize("opcode", RESERVED_CONTROL_OPCODES)
    def test_fails_reserved_control_opcode_with_1002(self, peer, opcode):
        expect_failure(peer, peer.send(opcode, b"data"), 1002)

    @pytest.mark.parametrize("opcode", RESERVED_DATA_OPCODES + RESERVED_CONTROL_OPCODES)
    def test_fails_reserved_opcode_without_fin_with_1002(self, peer, opcode):
        expect_failure(peer, peer.send(opcode, b"", fin=False), 1002)

    @pytest.mark.parametrize("opcode", RESERVED_DATA_OPCODES + RESERVED_CONTROL_OPCODES)
    def test_fails_reserved_opcode_between_fragments_with_1002(self, peer, opcode):
        assert peer.send(TEXT, b"a", fin=False) == []
        expect_failure(peer, peer.send(opcode, b""), 1002)

    @pytest.mark.parametrize("opcode", RESERVED_DATA_OPCODES + RESERVED_CONTROL_OPCODES)
    def test_fails_reserved_opcode_from_the_header_alone(self, peer, opcode):
        # The payload is never waited for: the header already breaks the rules.
        frame = peer.frame(opcode, b"\x00" * 100)
        expect_failure(peer, peer.feed(frame[:-100]), 1002)

    @pytest.mark.parametrize("opcode, event", [
        (TEXT, TextMessage("ok")),
        (BINARY, BytesMessage(b"ok")),
        (PING, Ping(b"ok")),
        (PONG, Pong(b"ok")),
        (CLOSE, CloseReceived(1000, "ok")),
    ])
    def test_defined_opcode_is_accepted(self, peer, opcode, event):
        payload = close_payload(1000, b"ok") if opcode == CLOSE else b"ok"
        assert peer.send(opcode, payload) == [event]


class TestRFC6455Section5_1_Masking:
    # RFC 6455 §5.1: "a client MUST mask all frames that it sends to the server ... The
    # server MUST close the connection upon receiving a frame that is not masked ... A
    # server MUST NOT mask any frames that it sends to the client. A client MUST close a
    # connection if it detects a masked frame." Both fail with 1002 (§7.4.1).

    @pytest.mark.parametrize("opcode, payload", [
        (TEXT, b"hi"), (BINARY, b"hi"), (PING, b""), (PONG, b""),
        (CLOSE, close_payload(1000)),
    ])
    def test_server_fails_unmasked_client_frame_with_1002(self, server, opcode, payload):
        expect_failure(server, server.send(opcode, payload, masked=False), 1002)

    def test_server_fails_unmasked_continuation_with_1002(self, server):
        assert server.send(TEXT, b"a", fin=False) == []
        expect_failure(server, server.send(CONT, b"b", masked=False), 1002)

    def test_server_fails_unmasked_frame_before_reading_its_payload(self, server):
        frame = server.frame(BINARY, b"\x00" * 1000, masked=False)
        expect_failure(server, server.feed(frame[:4]), 1002)

    @pytest.mark.parametrize("opcode, payload", [
        (TEXT, b"hi"), (BINARY, b"hi"), (PING, b""), (PONG, b""),
        (CLOSE, close_payload(1000)),
    ])
    def test_client_fails_masked_server_frame_with_1002(self, client, opcode, payload):
        expect_failure(client, client.send(opcode, payload, masked=True), 1002)

    def test_client_fails_masked_frame_even_with_an_all_zero_key_with_1002(self, client):
        # A zero key leaves the payload unchanged, but the MASK bit is still set.
        frame = client.frame(TEXT, b"hi", masked=True, mask=b"\x00\x00\x00\x00")
        expect_failure(client, client.feed(frame), 1002)

    @pytest.mark.parametrize("mask", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                      b"\x01\x02\x03\x04", MASK])
    def test_server_unmasks_client_frames_with_any_key(self, server, mask):
        payload = bytes(range(256)) * 3
        frame = server.frame(BINARY, payload, mask=mask)
        assert server.feed(frame) == [BytesMessage(payload)]

    @pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 1000])
    def test_server_unmasks_a_frame_arriving_in_chunks_not_aligned_to_the_key(
            self, server, chunk_size):
        payload = bytes(range(256)) * 10
        frame = server.frame(BINARY, payload)
        assert server.feed(frame, chunk_size) == [BytesMessage(payload)]

    def test_client_output_is_masked_with_fresh_keys(self):
        # §5.3: "The masking key MUST be ... derived from a strong source of entropy,
        # and the masking key for a given frame MUST NOT make it simple ... to predict
        # the masking key for a subsequent frame."
        conn = Connection(Role.CLIENT)
        for _ in range(64):
            conn.send_text("same text")
        frames = parse_frames(conn.data_to_send())
        assert all(f.mask is not None and f.payload == b"same text" for f in frames)
        keys = [f.mask for f in frames]
        assert keys[0] != keys[1]
        assert len(set(keys)) > 60  # 64 random 32-bit keys essentially never collide

    def test_client_masks_every_frame_it_sends(self):
        conn = Connection(Role.CLIENT)
        conn.send_text("t", fin=False)
        conn.send_continuation(b"c")
        conn.send_bytes(b"b")
        conn.send_ping(b"p")
        conn.send_pong(b"q")
        conn.send_close(1000, "bye")
        frames = parse_frames(conn.data_to_send())
        assert [f.opcode for f in frames] == [TEXT, CONT, BINARY, PING, PONG, CLOSE]
        assert all(f.mask is not None for f in frames)
        assert [f.payload for f in frames][:5] == [b"t", b"c", b"b", b"p", b"q"]

    def test_client_masks_the_pong_it_answers_with_and_the_close_it_echoes(self, client):
        client.send(PING, b"ping")
        client.send(CLOSE, close_payload(1001))
        frames = client.sent()  # Peer.sent() asserts every client frame is masked
        assert [f.opcode for f in frames] == [PONG, CLOSE]

    def test_client_masks_the_close_frame_of_a_failure(self, client):
        frames = expect_failure(client, client.send(0x3), 1002)
        assert frames[-1].mask is not None

    def test_server_never_masks(self, server):
        conn = server.conn
        conn.send_text("t")
        conn.send_bytes(b"b" * 70000)
        conn.send_ping(b"p")
        server.send(PING, b"x")
        conn.send_close(1000)
        frames = server.sent()
        assert len(frames) == 5
        assert all(f.mask is None for f in frames)


class TestRFC6455Section7_1_7_PeerInputNeverRaises:
    # RFC 6455 §7.1.7: on bad input an endpoint "MUST _Fail the WebSocket Connection_":
    # send a Close frame with the right code and stop reading, never crash.

    GARBAGE = {
        "all-ones": b"\xff" * 64,
        "http-request": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "tls-client-hello": bytes.fromhex("160301020001000001fc0303") + b"\x00" * 40,
        "nul-bytes": b"\x00" * 64,
        "random": random.Random(6455).randbytes(4096),
        "huge-length": b"\x82\xff" + b"\xff" * 8 + MASK,
    }

    @pytest.mark.parametrize("name", sorted(GARBAGE))
    @pytest.mark.parametrize("chunk_size", [None, 1, 7])
    def test_garbage_fails_the_connection_once_without_raising(self, peer, name, chunk_size):
        events = peer.feed(self.GARBAGE[name], chunk_size)
        failures = [e for e in events if isinstance(e, ConnectionFailed)]
        assert len(failures) == 1 and failures[0].code in (1002, 1007, 1009)
        assert events[-1] is failures[0]
        expect_failure(peer, events, failures[0].code)

    def test_input_after_a_failure_is_ignored(self, peer):
        events = peer.send(0x7)
        expect_failure(peer, events, 1002)
        for junk in self.GARBAGE.values():
            assert peer.feed(junk) == []
        assert peer.feed(peer.frame(TEXT, b"late")) == []
        assert peer.conn.data_to_send() == b""

    def test_failure_reason_never_echoes_peer_bytes(self, peer):
        marker = b"<peer-controlled-text>"
        events = peer.feed(peer.frame(TEXT, marker + b"\xff"))
        frames = expect_failure(peer, events, 1007)
        assert marker.decode() not in events[-1].reason
        assert marker not in frames[-1].payload
