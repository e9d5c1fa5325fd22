"""permessage-deflate (RFC 7692): negotiation in both roles and the per-message codec."""

from __future__ import annotations

import itertools
import json
import random
import zlib

import pytest

from legato.exceptions import CompressionError, MessageTooBig, NegotiationError
from legato.protocol.deflate import DeflateCodec, DeflateParams, PerMessageDeflate
from legato.protocol.handshake import ServerHandshake
from legato.protocol.headers import parse_extensions

try:  # an independent implementation for the interop tests (a dev dependency)
    from websockets import frames as ws_frames
    from websockets.extensions import permessage_deflate as ws_pmd
except ImportError:  # pragma: no cover
    ws_frames = ws_pmd = None

# Server-side configuration that adds nothing of its own, so responses show the offer.
PLAIN = PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=None)
LIMIT = 1 << 20


def negotiate(config: PerMessageDeflate, offer: str):
    return config.negotiate(parse_extensions([offer]))


def answer(config: PerMessageDeflate, response: str) -> DeflateParams:
    ((name, params),) = parse_extensions([response])
    assert name == "permessage-deflate"
    return config.accept_response(params)


def response_params(header: str) -> dict[str, str | None]:
    ((_, params),) = parse_extensions([header])
    return dict(params)


class TestRFC7692Section7_1_ServerNegotiation:
    # RFC 7692 §5.1 / §7.1: the server accepts at most one offer and answers with the
    # parameters it agreed to.

    def test_server_accepts_a_bare_offer_with_no_parameters(self):
        assert negotiate(PLAIN, "permessage-deflate") == ("permessage-deflate", DeflateParams())

    def test_server_declines_when_nothing_is_offered(self):
        assert PLAIN.negotiate([]) is None
        assert negotiate(PLAIN, "x-webkit-deflate-frame") is None

    def test_server_skips_other_extensions_to_find_permessage_deflate(self):
        header, _ = negotiate(PLAIN, "x-webkit-deflate-frame, permessage-deflate")
        assert header == "permessage-deflate"

    # §7.1.1.1: "A server accepts an extension negotiation offer that includes the
    # server_no_context_takeover extension parameter by including [it] in the response."
    def test_server_echoes_server_no_context_takeover_when_offered(self):
        header, params = negotiate(PLAIN, "permessage-deflate; server_no_context_takeover")
        assert "server_no_context_takeover" in response_params(header)
        assert params.server_no_context_takeover

    # §7.1.1.1: the server MAY include it even when it was not offered.
    def test_server_may_add_server_no_context_takeover_on_its_own(self):
        config = PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=15)
        header, params = negotiate(config, "permessage-deflate")
        assert header == "permessage-deflate; server_no_context_takeover"
        assert params.server_no_context_takeover

    # §7.1.1.2: the server may include client_no_context_takeover in any response.
    def test_server_honours_an_offered_client_no_context_takeover(self):
        header, params = negotiate(PLAIN, "permessage-deflate; client_no_context_takeover")
        assert params.client_no_context_takeover
        assert "client_no_context_takeover" in response_params(header)

    def test_server_may_ask_for_client_no_context_takeover_on_its_own(self):
        config = PerMessageDeflate(client_no_context_takeover=True, server_max_window_bits=15)
        header, params = negotiate(config, "permessage-deflate")
        assert header == "permessage-deflate; client_no_context_takeover"
        assert params.client_no_context_takeover

    # §7.1.2.1: "A server accepts an extension negotiation offer with this parameter by
    # including the server_max_window_bits extension parameter in the extension
    # negotiation response ... with the same or smaller value as the offer."
    @pytest.mark.parametrize("offered, configured", list(itertools.product(
        range(9, 16), [9, 12, 15])))
    def test_server_answers_server_max_window_bits_at_most_the_offer(self, offered, configured):
        config = PerMessageDeflate(server_max_window_bits=configured, client_max_window_bits=None)
        header, params = negotiate(config, f"permessage-deflate; server_max_window_bits={offered}")
        expected = min(offered, configured)
        assert params.server_max_window_bits == expected
        assert response_params(header)["server_max_window_bits"] == str(expected)

    def test_server_echoes_server_max_window_bits_15_when_the_offer_carries_it(self):
        # Leaving it out declines the limit: websockets' client fails such an answer.
        header, _ = negotiate(PLAIN, "permessage-deflate; server_max_window_bits=15")
        assert header == "permessage-deflate; server_max_window_bits=15"

    # §7.1.2.1: the server MAY include server_max_window_bits when it was not offered.
    def test_server_may_limit_its_own_window_when_the_offer_does_not(self):
        header, params = negotiate(PerMessageDeflate(client_max_window_bits=None),
                                   "permessage-deflate")
        assert header == "permessage-deflate; server_max_window_bits=12"
        assert params.server_max_window_bits == 12

    # zlib cannot deflate with an 8-bit raw window, so an offer that limits the server to
    # 8 bits is declined (§7.1.2.1 "A server declines ... if [it] doesn't support it").
    def test_server_declines_an_offer_of_server_max_window_bits_8(self):
        assert negotiate(PLAIN, "permessage-deflate; server_max_window_bits=8") is None

    def test_server_falls_back_to_the_next_offer_after_declining_8_bits(self):
        header, params = negotiate(
            PerMessageDeflate(),
            "permessage-deflate; server_max_window_bits=8, "
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits")
        assert params == DeflateParams(server_max_window_bits=10, client_max_window_bits=12)
        assert header == ("permessage-deflate; server_max_window_bits=10; "
                          "client_max_window_bits=12")

    def test_server_cannot_be_configured_with_an_8_bit_window(self):
        for bits in (7, 8, 16):
            with pytest.raises(ValueError):
                PerMessageDeflate(server_max_window_bits=bits)
        for bits in (7, 16):
            with pytest.raises(ValueError):
                PerMessageDeflate(client_max_window_bits=bits)
        PerMessageDeflate(client_max_window_bits=8)

    # §7.1.2.2: with a value, the client promises not to exceed it; without one, the
    # server may pick any limit. "If a received extension negotiation offer doesn't have
    # the client_max_window_bits extension parameter, the corresponding extension
    # negotiation response to the offer MUST NOT include [it]."
    def test_server_limits_the_client_window_when_offered_without_a_value(self):
        header, params = negotiate(PerMessageDeflate(client_max_window_bits=10),
                                   "permessage-deflate; client_max_window_bits")
        assert response_params(header)["client_max_window_bits"] == "10"
        assert params.client_max_window_bits == 10

    @pytest.mark.parametrize("offered, configured, expected", [
        (8, 12, 8), (10, 12, 10), (14, 12, 12), (15, None, 15), (9, None, 9),
    ])
    def test_server_answers_client_max_window_bits_at_most_the_offer(
            self, offered, configured, expected):
        config = PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=configured)
        header, params = negotiate(config, f"permessage-deflate; client_max_window_bits={offered}")
        assert params.client_max_window_bits == expected
        assert int(response_params(header).get("client_max_window_bits") or 15) == expected

    @pytest.mark.parametrize("configured", [9, 12, 15, None])
    def test_server_never_answers_client_max_window_bits_that_was_not_offered(self, configured):
        config = PerMessageDeflate(client_max_window_bits=configured)
        header, params = negotiate(config, "permessage-deflate; server_no_context_takeover")
        assert "client_max_window_bits" not in response_params(header)
        assert params.client_max_window_bits == 15

    def test_server_accepts_a_quoted_window_bits_value(self):
        # RFC 6455 §9.1: a quoted-string value is unquoted before use.
        _, params = negotiate(PLAIN, 'permessage-deflate; server_max_window_bits="10"')
        assert params.server_max_window_bits == 10

    # §7.1 / §7.1.2: an offer with an unknown parameter, a duplicate parameter or an
    # invalid value (a decimal 8-15 with no leading zeros) is declined, and the server
    # tries the next offer.
    BAD_OFFERS = [
        "server_max_window_bits=07", "server_max_window_bits=16", "server_max_window_bits=abc",
        "server_max_window_bits=0", "server_max_window_bits=7", "server_max_window_bits",
        'server_max_window_bits="016"', "client_max_window_bits=07", "client_max_window_bits=16",
        "client_max_window_bits=7", "client_max_window_bits=abc", "client_max_window_bits=-9",
        "server_no_context_takeover=1", 'client_no_context_takeover="true"',
        "unknown_parameter", "x=1",
        "server_no_context_takeover; server_no_context_takeover",
        "client_max_window_bits; client_max_window_bits=10",
        "server_max_window_bits=10; server_max_window_bits=10",
    ]

    @pytest.mark.parametrize("bad", BAD_OFFERS)
    def test_server_declines_an_invalid_offer(self, bad):
        assert negotiate(PerMessageDeflate(), f"permessage-deflate; {bad}") is None

    @pytest.mark.parametrize("bad", BAD_OFFERS)
    def test_server_tries_the_next_offer_after_an_invalid_one(self, bad):
        result = negotiate(PLAIN, f"permessage-deflate; {bad}, "
                                  "permessage-deflate; client_no_context_takeover")
        assert result == ("permessage-deflate; client_no_context_takeover",
                          DeflateParams(client_no_context_takeover=True))

    def test_server_handshake_answers_with_the_first_acceptable_offer(self, upgrade_headers):
        server = ServerHandshake(deflate=PLAIN)
        headers = upgrade_headers(extra=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; foo"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=11"),
        ])
        accepted = server.accept(server.check("GET", "1.1", headers))
        assert ("Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=11") in accepted.headers


class TestRFC7692Section7_1_ClientNegotiation:
    # RFC 7692 §5 / §7.1: the client offers, then checks the server's answer and fails
    # the connection when it is not an acceptable answer to that offer.

    @pytest.mark.parametrize("config, offer", [
        (PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12; "
                              "client_max_window_bits=12"),
        (PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=None),
         "permessage-deflate; client_max_window_bits"),
        (PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=15),
         "permessage-deflate; client_max_window_bits"),
        (PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True,
                           server_max_window_bits=9, client_max_window_bits=8),
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=8"),
    ])
    def test_client_offer_lists_the_configured_parameters(self, config, offer):
        assert config.offer() == offer
        assert PLAIN.negotiate(parse_extensions([offer])) is not None

    def test_client_accepts_the_answer_to_its_default_offer(self):
        params = answer(PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12")
        assert params == DeflateParams(server_max_window_bits=12, client_max_window_bits=12)

    @pytest.mark.parametrize("bits", [8, 9, 10, 12])
    def test_client_accepts_a_server_window_at_or_below_its_offer(self, bits):
        params = answer(PerMessageDeflate(),
                        f"permessage-deflate; server_max_window_bits={bits}")
        assert params.server_max_window_bits == bits

    def test_client_rejects_a_server_window_above_its_offer(self):
        with pytest.raises(NegotiationError):
            answer(PerMessageDeflate(), "permessage-deflate; server_max_window_bits=13")

    def test_client_rejects_an_answer_that_ignores_its_server_window_limit(self):
        # §7.1.2.1: the server accepts the parameter by including it.
        with pytest.raises(NegotiationError):
            answer(PerMessageDeflate(), "permessage-deflate")

    def test_client_accepts_a_server_window_it_did_not_limit(self):
        # §7.1.2.1: the server MAY include server_max_window_bits when it was not offered.
        config = PerMessageDeflate(server_max_window_bits=15)
        assert answer(config, "permessage-deflate; server_max_window_bits=10"
                      ).server_max_window_bits == 10

    @pytest.mark.parametrize("bits", [8, 10, 12])
    def test_client_accepts_a_client_window_at_or_below_its_offer(self, bits):
        params = answer(PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12; "
                                             f"client_max_window_bits={bits}")
        assert params.client_max_window_bits == bits

    def test_client_rejects_a_client_window_above_its_offer(self):
        with pytest.raises(NegotiationError):
            answer(PerMessageDeflate(), "permessage-deflate; server_max_window_bits=12; "
                                        "client_max_window_bits=13")

    def test_client_that_offered_no_client_window_value_takes_any_valid_one(self):
        config = PerMessageDeflate(server_max_window_bits=15, client_max_window_bits=None)
        assert answer(config, "permessage-deflate; client_max_window_bits=15"
                      ).client_max_window_bits == 15
        assert answer(config, "permessage-deflate").client_max_window_bits == 15

    def test_client_rejects_client_max_window_bits_without_a_value(self):
        # §7.1.2.2: in a response the parameter must carry a value.
        with pytest.raises(NegotiationError):
            answer(PLAIN, "permessage-deflate; client_max_window_bits")

    # §7.1.1.1: the server may add server_no_context_takeover even when not offered.
    def test_client_accepts_server_no_context_takeover_it_did_not_ask_for(self):
        assert answer(PLAIN, "permessage-deflate; server_no_context_takeover"
                      ).server_no_context_takeover

    def test_client_rejects_an_answer_dropping_the_server_no_context_takeover_it_asked_for(self):
        config = PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=15)
        with pytest.raises(NegotiationError):
            answer(config, "permessage-deflate")

    # §7.1.1.2: client_no_context_takeover in the answer binds the client.
    def test_client_honours_client_no_context_takeover_from_the_answer_or_its_config(self):
        assert answer(PLAIN, "permessage-deflate; client_no_context_takeover"
                      ).client_no_context_takeover
        config = PerMessageDeflate(client_no_context_takeover=True, server_max_window_bits=15)
        assert answer(config, "permessage-deflate").client_no_context_takeover

    @pytest.mark.parametrize("bad", [
        "unknown_parameter", "x=1", "server_max_window_bits=07", "server_max_window_bits=16",
        "server_max_window_bits=abc", "server_max_window_bits",
        "server_no_context_takeover=1", "client_no_context_takeover=x",
        "server_no_context_takeover; server_no_context_takeover",
        "server_max_window_bits=10; server_max_window_bits=10", "client_max_window_bits=07",
    ])
    def test_client_rejects_parameters_never_offered_or_invalid(self, bad):
        with pytest.raises(NegotiationError):
            answer(PLAIN, f"permessage-deflate; {bad}")


def codec_pair(params: DeflateParams, config: PerMessageDeflate | None = None):
    return (DeflateCodec(params, is_client=True, config=config),
            DeflateCodec(params, is_client=False, config=config))


def send(sender: DeflateCodec, receiver: DeflateCodec, message: bytes) -> bytes:
    return receiver.decompress_message(sender.compress(message, fin=True), LIMIT)


CHAT = json.dumps({"type": "message", "room": "general", "user": "alice",
                   "text": "hello everyone, how is the weather today?"}).encode()


def noise(size: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(size))


PARAM_COMBOS = [
    DeflateParams(server_no_context_takeover=snct, client_no_context_takeover=cnct,
                  server_max_window_bits=sbits, client_max_window_bits=cbits)
    for snct, cnct in itertools.product([False, True], repeat=2)
    for sbits, cbits in [(15, 15), (9, 9), (12, 8), (10, 14)]
]


class TestRFC7692Section7_2_CompressionRuntime:
    # RFC 7692 §7.2.1: compress, remove the trailing 00 00 ff ff; §7.2.2: append it and
    # inflate.

    @pytest.mark.parametrize("params", PARAM_COMBOS)
    def test_messages_round_trip_both_ways_with_every_option(self, params):
        client, server = codec_pair(params)
        messages = [CHAT, b"", b"x", CHAT, noise(3000), CHAT * 20, noise(3000)]
        for message in messages:
            assert send(client, server, message) == message
            assert send(server, client, message) == message

    @pytest.mark.parametrize("params", PARAM_COMBOS[::3])
    def test_a_message_split_across_frames_round_trips(self, params):
        client, server = codec_pair(params)
        for _ in range(3):
            parts = [client.compress(CHAT[:10], fin=False), client.compress(CHAT[10:50], False),
                     client.compress(CHAT[50:], fin=True)]
            inflated = b"".join(server.decompress(part, LIMIT) for part in parts)
            assert inflated + server.end_message(LIMIT) == CHAT

    def test_the_sender_strips_the_empty_block_tail(self):
        client, _ = codec_pair(DeflateParams())
        assert not client.compress(CHAT, fin=True).endswith(b"\x00\x00\xff\xff")

    # §8.1.1: with context takeover a repeated message costs a back-reference.
    def test_context_takeover_shrinks_a_repeated_message(self):
        client, server = codec_pair(DeflateParams())
        first = client.compress(CHAT, fin=True)
        second = client.compress(CHAT, fin=True)
        assert len(second) < len(first) // 3
        assert server.decompress_message(first, LIMIT) == CHAT
        assert server.decompress_message(second, LIMIT) == CHAT

    # §7.1.1.1 / §7.1.1.2: without takeover every message starts from an empty window.
    @pytest.mark.parametrize("no_takeover, sender_is_client", [
        ("server_no_context_takeover", False), ("client_no_context_takeover", True)])
    def test_no_context_takeover_does_not_shrink_a_repeated_message(
            self, no_takeover, sender_is_client):
        client, server = codec_pair(DeflateParams(**{no_takeover: True}))
        sender = client if sender_is_client else server
        first = sender.compress(CHAT, fin=True)
        second = sender.compress(CHAT, fin=True)
        assert second == first
        # Each message inflates on its own, with no history.
        fresh = zlib.decompressobj(-15)
        assert fresh.decompress(second + b"\x00\x00\xff\xff") == CHAT

    def test_no_context_takeover_applies_only_to_the_side_it_names(self):
        client, server = codec_pair(DeflateParams(server_no_context_takeover=True))
        assert len(client.compress(CHAT, True)) > len(client.compress(CHAT, True)) * 3

    # §7.1.2: each side compresses within the window it agreed to, so a peer whose
    # inflater holds only that window can decode a stream referring to older messages.
    @pytest.mark.parametrize("bits", [8, 9, 10, 12])
    def test_client_compresses_within_the_negotiated_client_window(self, bits):
        client, _ = codec_pair(DeflateParams(client_max_window_bits=bits))
        # A repeat of a block just larger than the window: a sender using a larger window
        # refers back past it and the peer fails with "invalid distance too far back".
        block = noise((1 << bits) + 64, seed=bits)
        peer = zlib.decompressobj(-bits)
        for message in (block, block, block[:100] * 2):
            assert peer.decompress(client.compress(message, True) + b"\x00\x00\xff\xff") == message

    @pytest.mark.parametrize("bits", [9, 11])
    def test_server_compresses_within_the_negotiated_server_window(self, bits):
        _, server = codec_pair(DeflateParams(server_max_window_bits=bits))
        block = noise((1 << bits) + 64, seed=bits)
        peer = zlib.decompressobj(-bits)
        for message in (block, block):
            assert peer.decompress(server.compress(message, True) + b"\x00\x00\xff\xff") == message

    # §7.2.3.1-§7.2.3.5: the RFC's own example payloads for "Hello".
    def test_receiver_inflates_the_rfc_example_of_one_compressed_message(self):
        _, server = codec_pair(DeflateParams())
        assert server.decompress_message(bytes.fromhex("f248cdc9c90700"), LIMIT) == b"Hello"

    def test_receiver_inflates_the_rfc_example_split_across_two_frames(self):
        _, server = codec_pair(DeflateParams())
        out = server.decompress(bytes.fromhex("f248cd"), LIMIT)
        out += server.decompress(bytes.fromhex("c9c90700"), LIMIT)
        assert out + server.end_message(LIMIT) == b"Hello"

    def test_receiver_inflates_the_rfc_example_of_a_shared_window(self):
        _, server = codec_pair(DeflateParams())
        assert server.decompress_message(bytes.fromhex("f248cdc9c90700"), LIMIT) == b"Hello"
        assert server.decompress_message(bytes.fromhex("f200110000"), LIMIT) == b"Hello"

    def test_receiver_inflates_the_rfc_example_of_a_stored_block(self):
        _, server = codec_pair(DeflateParams())
        payload = bytes.fromhex("000500faff48656c6c6f00")
        assert server.decompress_message(payload, LIMIT) == b"Hello"

    def test_receiver_inflates_the_rfc_example_of_two_blocks_in_one_message(self):
        _, server = codec_pair(DeflateParams())
        payload = bytes.fromhex("f24805000000ffffcac9c90700")
        assert server.decompress_message(payload, LIMIT) == b"Hello"

    # §7.2.3.4: "a DEFLATE block with BFINAL set to 1" ends the stream; the receiver must
    # still decode it, and the next message starts a new stream.
    def test_receiver_inflates_the_rfc_example_with_bfinal_set(self):
        _, server = codec_pair(DeflateParams())
        assert server.decompress_message(bytes.fromhex("f348cdc9c9070000"), LIMIT) == b"Hello"
        assert server.decompress_message(bytes.fromhex("f348cdc9c9070000"), LIMIT) == b"Hello"

    def test_receiver_handles_bfinal_terminated_messages_then_sync_flushed_ones(self):
        _, server = codec_pair(DeflateParams())
        for message in (CHAT, b"second " + CHAT, CHAT):
            deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            finished = deflater.compress(message) + deflater.flush(zlib.Z_FINISH)
            assert server.decompress_message(finished, LIMIT) == message
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        flushed = deflater.compress(CHAT) + deflater.flush(zlib.Z_SYNC_FLUSH)
        assert server.decompress_message(flushed[:-4], LIMIT) == CHAT

    def test_receiver_handles_a_bfinal_message_that_arrives_in_frames(self):
        _, server = codec_pair(DeflateParams())
        deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        finished = deflater.compress(CHAT) + deflater.flush(zlib.Z_FINISH)
        out = server.decompress(finished[:5], LIMIT) + server.decompress(finished[5:], LIMIT)
        assert out + server.end_message(LIMIT) == CHAT
        assert send(DeflateCodec(DeflateParams(), is_client=True), server, CHAT) == CHAT

    # RFC 6455 §10.4 / RFC 7692 §8: bound what inflating may allocate; 1009 when exceeded.
    def test_decompressing_past_the_limit_raises_message_too_big(self):
        client, server = codec_pair(DeflateParams())
        bomb = client.compress(b"\x00" * 2_000_000, fin=True)
        assert len(bomb) < 5_000
        with pytest.raises(MessageTooBig) as info:
            server.decompress_message(bomb, 64 * 1024)
        assert info.value.close_code == 1009

    def test_a_message_exactly_at_the_limit_is_accepted(self):
        client, server = codec_pair(DeflateParams())
        assert server.decompress_message(client.compress(b"a" * 1000, True), 1000) == b"a" * 1000
        with pytest.raises(MessageTooBig):
            server.decompress_message(client.compress(b"a" * 1000, True), 999)

    def test_the_limit_applies_to_each_fragment_while_inflating(self):
        client, server = codec_pair(DeflateParams())
        part = client.compress(b"\x00" * 100_000, fin=False)
        with pytest.raises(MessageTooBig):
            server.decompress(part, 10_000)

    # RFC 7692 §8 / legato: data that does not inflate fails with 1007.
    @pytest.mark.parametrize("garbage", [b"\xff" * 16, b"\x07\x00", bytes(range(256)),
                                         b"\x00\x05\x00\x00\x00Hello"])
    def test_garbage_raises_compression_error_with_1007(self, garbage):
        _, server = codec_pair(DeflateParams())
        with pytest.raises(CompressionError) as info:
            server.decompress_message(garbage, LIMIT)
        assert info.value.close_code == 1007

    def test_min_size_from_the_configuration_reaches_the_codec(self):
        codec = DeflateCodec(DeflateParams(), is_client=False,
                             config=PerMessageDeflate(min_size=128))
        assert codec.min_size == 128


@pytest.mark.skipif(ws_pmd is None, reason="needs the websockets library")
class TestRFC7692Interop_WithTheWebsocketsLibrary:
    # An independent implementation on the other side of each negotiation and message.

    @pytest.mark.parametrize("kwargs", [
        {}, {"server_max_window_bits": 10}, {"server_max_window_bits": 15},
        {"client_max_window_bits": 11}, {"client_max_window_bits": None},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
    ])
    @pytest.mark.parametrize("config", [PerMessageDeflate(), PLAIN], ids=["default", "plain"])
    def test_websockets_client_accepts_legato_server_answers(self, kwargs, config):
        factory = ws_pmd.ClientPerMessageDeflateFactory(**kwargs)
        offer = [("permessage-deflate", factory.get_request_params())]
        header, params = config.negotiate(offer)
        ((_, response),) = parse_extensions([header])
        extension = factory.process_response_params(response, [])
        server_codec = DeflateCodec(params, is_client=False)
        frame = ws_frames.Frame(ws_frames.Opcode.TEXT, CHAT)
        for _ in range(2):
            wire = extension.encode(frame)
            assert server_codec.decompress_message(wire.data, LIMIT) == CHAT
            payload = server_codec.compress(CHAT, fin=True)
            compressed = ws_frames.Frame(ws_frames.Opcode.TEXT, payload, rsv1=True)
            assert extension.decode(compressed).data == CHAT

    @pytest.mark.parametrize("config", [
        PerMessageDeflate(), PLAIN,
        PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True,
                          server_max_window_bits=9, client_max_window_bits=9),
    ])
    def test_legato_client_accepts_websockets_server_answers(self, config):
        factory = ws_pmd.ServerPerMessageDeflateFactory()
        ((_, offer),) = parse_extensions([config.offer()])
        response, extension = factory.process_request_params(offer, [])
        params = config.accept_response(response)
        client_codec = DeflateCodec(params, is_client=True, config=config)
        frame = ws_frames.Frame(ws_frames.Opcode.BINARY, CHAT)
        for _ in range(2):
            assert client_codec.decompress_message(extension.encode(frame).data, LIMIT) == CHAT
            payload = client_codec.compress(CHAT, fin=True)
            compressed = ws_frames.Frame(ws_frames.Opcode.BINARY, payload, rsv1=True)
            assert extension.decode(compressed).data == CHAT
