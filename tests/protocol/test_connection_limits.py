"""Size limits of the connection engine, and what they cost in memory.

RFC 6455 §10.4: "Implementations that have implementation- and/or platform-specific
limitations regarding the frame size or total message size after reassembly from
multiple frames MUST protect themselves against exceeding those limits", answering
with 1009 (§7.4.1). RFC 7692 §8.1 adds the same concern for inflated data.
"""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from legato.protocol.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role, State
from legato.protocol.deflate import DeflateCodec, DeflateParams
from legato.protocol.events import BytesMessage, Ping, TextMessage
from wire import BINARY, CONT, PING, TEXT, Peer, expect_failure

MiB = 1 << 20


def deflated(data: bytes) -> bytes:
    """``data`` as one permessage-deflate message body (RFC 7692 §7.2.1, tail removed)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def deflating_peer(role: Role, **kwargs: object) -> Peer:
    codec = DeflateCodec(DeflateParams(), is_client=role is Role.CLIENT)
    return Peer(role, deflate=codec, **kwargs)


def peak_memory(run) -> int:  # type: ignore[no-untyped-def]
    """Peak bytes allocated by Python while ``run()`` executes."""
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        run()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        if not already_tracing:
            tracemalloc.stop()


class TestRFC6455Section10_4_MessageSizeLimit:
    # RFC 6455 §10.4 (see module docstring): over the limit fails with 1009.

    def test_default_limit_is_1_mib_for_messages_and_bounds_frames_through_it(self, role):
        conn = Connection(role)
        assert DEFAULT_MAX_MESSAGE_SIZE == MiB
        assert conn.max_message_size == MiB
        # No separate frame limit by default: an uncompressed frame over 1 MiB already
        # breaks the message limit, and a compressed one may exceed it by deflate's growth.
        assert conn.max_frame_size > MiB

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_message_exactly_at_the_limit_is_accepted(self, role, opcode):
        peer = Peer(role, max_message_size=1000)
        events = peer.send(opcode, b"a" * 1000)
        assert len(events) == 1 and len(events[0].data) == 1000

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_message_one_byte_over_the_limit_fails_with_1009(self, role, opcode):
        peer = Peer(role, max_message_size=1000)
        expect_failure(peer, peer.send(opcode, b"a" * 1001), 1009)

    def test_text_limit_counts_utf8_bytes_not_characters(self, role):
        peer = Peer(role, max_message_size=7)
        expect_failure(peer, peer.send(TEXT, "😀😀".encode()), 1009)  # 2 chars, 8 bytes

    def test_too_big_frame_fails_from_its_header_alone_with_default_limits(self, peer):
        # "checked from the header, before any payload is buffered": no byte of the
        # payload is sent, yet the failure is immediate.
        expect_failure(peer, peer.feed(peer.header(BINARY, MiB + 1)), 1009)

    def test_frame_at_the_default_limit_waits_for_its_payload(self, peer):
        assert peer.feed(peer.header(BINARY, MiB)) == []
        assert peer.conn.state is State.OPEN

    @pytest.mark.parametrize("length", [1 << 32, (1 << 63) - 1])
    def test_huge_declared_length_fails_at_once_without_allocating(self, peer, length):
        memory = peak_memory(lambda: peer.conn.receive_data(peer.header(BINARY, length)))
        expect_failure(peer, peer.conn.events_received(), 1009)
        assert memory < 64 * 1024

    def test_declared_length_is_not_allocated_in_advance(self, peer):
        memory = peak_memory(lambda: peer.conn.receive_data(peer.header(BINARY, MiB)))
        assert peer.conn.events_received() == []
        assert memory < 64 * 1024

    def test_max_message_size_none_disables_the_limit(self, role):
        peer = Peer(role, max_message_size=None)
        payload = b"\x01" * (2 * MiB + 1)
        assert peer.send(BINARY, payload) == [BytesMessage(payload)]

    @pytest.mark.parametrize("chunk_size", [1, 100])
    def test_limit_applies_to_a_frame_arriving_in_pieces(self, role, chunk_size):
        peer = Peer(role, max_message_size=500)
        frame = peer.frame(BINARY, b"x" * 501)
        expect_failure(peer, peer.feed(frame, chunk_size), 1009)


class TestRFC6455Section10_4_FrameSizeLimit:
    # RFC 6455 §10.4: limits on "the frame size" as well as on the reassembled message.

    def test_frame_over_max_frame_size_fails_from_its_header_alone(self, role):
        peer = Peer(role, max_message_size=10_000, max_frame_size=100)
        expect_failure(peer, peer.feed(peer.header(BINARY, 101)), 1009)

    def test_frame_at_max_frame_size_is_accepted(self, role):
        peer = Peer(role, max_message_size=10_000, max_frame_size=100)
        assert peer.send(BINARY, b"y" * 100) == [BytesMessage(b"y" * 100)]

    def test_fragments_under_max_frame_size_may_add_up_to_max_message_size(self, role):
        peer = Peer(role, max_message_size=1000, max_frame_size=100)
        frames = [peer.frame(BINARY if i == 0 else CONT, b"z" * 100, fin=i == 9)
                  for i in range(10)]
        assert peer.feed(b"".join(frames)) == [BytesMessage(b"z" * 1000)]

    def test_continuation_over_max_frame_size_fails_from_its_header_alone(self, role):
        peer = Peer(role, max_message_size=10_000, max_frame_size=100)
        assert peer.send(TEXT, b"a", fin=False) == []
        expect_failure(peer, peer.feed(peer.header(CONT, 101)), 1009)


class TestRFC6455Section10_4_FragmentedMessageLimit:
    # RFC 6455 §10.4: "total message size after reassembly from multiple frames".

    @pytest.mark.parametrize("opcode", [TEXT, BINARY])
    def test_fragmented_message_over_the_limit_fails_with_1009(self, role, opcode):
        peer = Peer(role, max_message_size=1000)
        assert peer.send(opcode, b"a" * 600, fin=False) == []
        expect_failure(peer, peer.send(CONT, b"b" * 401), 1009)

    def test_fragmented_message_fails_at_the_header_of_the_fragment_crossing_the_limit(
            self, role):
        peer = Peer(role, max_message_size=1000)
        assert peer.send(BINARY, b"a" * 600, fin=False) == []
        assert peer.send(CONT, b"a" * 300, fin=False) == []
        expect_failure(peer, peer.feed(peer.header(CONT, 101, fin=False)), 1009)

    def test_fragmented_message_exactly_at_the_limit_is_accepted(self, role):
        peer = Peer(role, max_message_size=1000)
        assert peer.send(BINARY, b"a" * 600, fin=False) == []
        assert peer.send(CONT, b"b" * 400) == [BytesMessage(b"a" * 600 + b"b" * 400)]

    def test_many_small_fragments_over_the_limit_fail_with_1009(self, role):
        peer = Peer(role, max_message_size=1000)
        frames = [peer.frame(TEXT if i == 0 else CONT, b"c" * 10, fin=False)
                  for i in range(101)]
        expect_failure(peer, peer.feed(b"".join(frames)), 1009)

    def test_control_frames_between_fragments_do_not_count_towards_the_limit(self, role):
        peer = Peer(role, max_message_size=10)
        stream = (peer.frame(TEXT, b"12345", fin=False) + peer.frame(PING, b"p" * 125)
                  + peer.frame(CONT, b"67890"))
        assert peer.feed(stream) == [Ping(b"p" * 125), TextMessage("1234567890")]

    def test_limit_starts_afresh_with_each_message(self, role):
        peer = Peer(role, max_message_size=1000)
        for _ in range(5):
            assert peer.send(BINARY, b"a" * 600, fin=False) == []
            assert peer.send(CONT, b"b" * 400) == [BytesMessage(b"a" * 600 + b"b" * 400)]


class TestRFC6455Section10_4_MemoryOfADribbledFrame:
    # connection.py: "a frame dribbled one byte at a time costs memory close to its size"
    # (a reader that re-joins its buffer on every byte would cost far more time and
    # memory, and a slow sender is exactly what an attacker controls).

    FRAME_SIZE = 128 * 1024

    def test_frame_fed_one_byte_at_a_time_costs_memory_close_to_its_size(self, role):
        peer = Peer(role)
        payload = bytes(range(256)) * (self.FRAME_SIZE // 256)
        frame = peer.frame(BINARY, payload)
        chunks = [frame[i:i + 1] for i in range(len(frame))]

        def dribble() -> None:
            for chunk in chunks:
                peer.conn.receive_data(chunk)

        memory = peak_memory(dribble)
        assert peer.conn.events_received() == [BytesMessage(payload)]
        assert memory < 3 * self.FRAME_SIZE


class TestRFC7692Section8_1_DecompressedSizeLimit:
    # RFC 7692 §8.1 (security): a small compressed message can inflate to a huge one;
    # the inflated size is what max_message_size bounds.

    def test_compressed_message_within_the_limit_is_inflated(self, role):
        peer = deflating_peer(role, max_message_size=1000)
        events = peer.send(TEXT, deflated(b"a" * 1000), rsv1=True)
        assert events == [TextMessage("a" * 1000)]

    def test_compressed_message_inflating_past_the_limit_fails_with_1009(self, role):
        peer = deflating_peer(role, max_message_size=1000)
        expect_failure(peer, peer.send(BINARY, deflated(b"a" * 1001), rsv1=True), 1009)

    @pytest.mark.parametrize("chunk_size", [1, 7, 4096])
    def test_compressed_frame_arriving_in_pieces_fails_with_1009(self, role, chunk_size):
        peer = deflating_peer(role, max_message_size=1000)
        frame = peer.frame(BINARY, deflated(b"a" * 5000), rsv1=True)
        expect_failure(peer, peer.feed(frame, chunk_size), 1009)

    def test_fragmented_compressed_message_inflating_past_the_limit_fails_with_1009(self, role):
        peer = deflating_peer(role, max_message_size=1000)
        body = deflated(b"b" * 3000)
        half = len(body) // 2
        assert peer.send(BINARY, body[:half], rsv1=True, fin=False) == []
        expect_failure(peer, peer.send(CONT, body[half:]), 1009)

    @pytest.mark.parametrize("fragmented", [False, True])
    def test_max_message_size_none_disables_the_limit_for_compressed_messages(
            self, role, fragmented):
        peer = deflating_peer(role, max_message_size=None)
        body = deflated(b"c" * 5000)
        if fragmented:
            stream = (peer.frame(TEXT, body[:10], rsv1=True, fin=False)
                      + peer.frame(CONT, body[10:]))
        else:
            stream = peer.frame(TEXT, body, rsv1=True)
        assert peer.feed(stream) == [TextMessage("c" * 5000)]

    def test_fragmented_compressed_message_within_the_limit_is_inflated(self, role):
        peer = deflating_peer(role, max_message_size=3000)
        body = deflated(b"b" * 3000)
        half = len(body) // 2
        assert peer.send(BINARY, body[:half], rsv1=True, fin=False) == []
        assert peer.send(CONT, body[half:]) == [BytesMessage(b"b" * 3000)]


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """50 MB of zeros deflated to about 50 KB (the ~1000:1 ratio deflate tops out at)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    parts = [compressor.compress(zeros) for _ in range(50)]
    body = b"".join(parts) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(body) < 60_000
    return body[:-4]


class TestRFC7692Section8_1_DecompressionBomb:
    # RFC 7692 §8.1: inflating must be bounded while it happens, not checked afterwards.

    @pytest.mark.parametrize("chunk_size", [None, 1000])
    def test_1000_to_1_bomb_fails_with_1009_and_costs_about_the_limit(
            self, role, bomb, chunk_size):
        peer = deflating_peer(role)  # default 1 MiB limit
        frame = peer.frame(BINARY, bomb, rsv1=True)
        events = []
        memory = peak_memory(lambda: events.extend(peer.feed(frame, chunk_size)))
        expect_failure(peer, events, 1009)
        # 50 MB inflated would be 50x the limit; a small multiple means it was bounded.
        assert memory < 3 * MiB

    def test_bomb_split_into_fragments_fails_with_1009_and_costs_about_the_limit(
            self, role, bomb):
        peer = deflating_peer(role)
        size = len(bomb) // 4
        parts = [bomb[i:i + size] for i in range(0, len(bomb), size)]
        frames = b"".join(
            peer.frame(BINARY if i == 0 else CONT, part, rsv1=i == 0, fin=i == len(parts) - 1)
            for i, part in enumerate(parts))
        memory = peak_memory(lambda: peer.conn.receive_data(frames))
        expect_failure(peer, peer.conn.events_received(), 1009)
        assert memory < 3 * MiB
