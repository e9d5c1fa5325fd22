"""Property tests for the sans-I/O core: every input meets a written contract (STYLE §12).

Contracts:

* Round trip (RFC 6455 §5, RFC 7692 §7.2): whatever one engine sends, with any
  fragmentation, masking key and compression setting, the other engine reports exactly
  the messages sent, however TCP splits the bytes.
* One frame (RFC 6455 §5.2-§5.5, §7.4.1, RFC 7692 §6): a frame built with
  ``encode_frame`` from any opcode, FIN, RSV bits, mask and payload yields the event
  the RFCs call for, or ``ConnectionFailed`` with the documented close code.
* Any bytes (exceptions module docstring, events module docstring): the engine never
  raises, reports only documented events, fails only with 1002/1007/1009, ends every
  stream with exactly one terminal event and never puts 1005/1006/1015 on the wire.
* Held failure (RFC 6455 §7.1.7, ``hold_fail_close``): the same events and, once
  ``send_fail_close()`` has run, the same frames as failing at once.
* Handshake: ``ServerHandshake.check`` accepts or raises ``HandshakeRejected``;
  ``parse_request_head`` parses or raises ``HeadError``.
"""

from __future__ import annotations

import itertools
import random
import time
import zlib
from dataclasses import dataclass
from unittest import mock

from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as record
from hypothesis import strategies as st

import legato.protocol.connection as connection_module
from legato.exceptions import HandshakeRejected
from legato.protocol import (
    BytesMessage,
    CloseReceived,
    Connection,
    ConnectionFailed,
    ConnectionLost,
    DeflateCodec,
    DeflateParams,
    Headers,
    PerMessageDeflate,
    Ping,
    Pong,
    Role,
    ServerHandshake,
    State,
    TextMessage,
    encode_frame,
)
from legato.protocol.http import HeadError, find_head_end, parse_request_head, parse_response_head
from wire import parse_frames

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: For the cheapest, broadest properties: more examples, still well under a second.
BROAD = settings(PROPERTY, max_examples=600)
TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2
TERMINAL = (CloseReceived, ConnectionFailed, ConnectionLost)


# --------------------------------------------------------------------------- helpers

def split(data: bytes, raw_cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``raw_cuts`` (taken modulo its length): empty pieces allowed."""
    cuts = sorted(c % (len(data) + 1) for c in raw_cuts)
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def feed(conn: Connection, data: bytes, raw_cuts: list[int]) -> None:
    for piece in split(data, raw_cuts):
        conn.receive_data(piece)


def read_frames(data: bytes, masked: bool) -> list[tuple[int, bytes, bytes]]:
    """A minimal RFC 6455 §5.2 reader for our own output: (first byte, key, payload)."""
    frames, pos = [], 0
    while pos < len(data):
        first, second = data[pos], data[pos + 1]
        assert bool(second & 0x80) == masked, "client frames masked, server frames not (§5.1)"
        length, pos = second & 0x7F, pos + 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
        key = data[pos:pos + 4] if masked else b""
        pos += len(key)
        payload = data[pos:pos + length]
        if masked:
            payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
        frames.append((first, key, payload))
        pos += length
    assert pos == len(data)
    return frames


def is_utf8_prefix(data: bytes) -> bool:
    """True when some ≤ 3 more bytes make ``data`` valid UTF-8 (RFC 6455 §8.1 fail-fast)."""
    candidates = [b""] + [bytes([first]) + b"\x80" * extra
                          for first in (0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF) for extra in range(3)]
    for completion in candidates:
        try:
            (data + completion).decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def deflate_raw(data: bytes) -> bytes:
    """What a permessage-deflate sender puts in a frame (RFC 7692 §7.2.1)."""
    out = zlib.compressobj(wbits=-15)
    compressed = out.compress(data) + out.flush(zlib.Z_SYNC_FLUSH)
    return compressed[:-4]


# --------------------------------------------------------------------------- strategies

cuts = st.lists(st.integers(0, 2**24), max_size=12)

deflate_params = st.builds(DeflateParams, st.booleans(), st.booleans(),
                           st.integers(9, 15), st.integers(9, 15))
deflate_configs = st.builds(PerMessageDeflate, compress_level=st.integers(0, 9),
                            mem_level=st.integers(1, 9), min_size=st.sampled_from([0, 0, 8, 200]))
deflate_setups = st.none() | st.tuples(deflate_params, deflate_configs)

big_bytes = st.builds(lambda n, seed: random.Random(seed).randbytes(n),
                      st.integers(126, 70_000), st.integers(0, 2**32))
payload_bytes = st.binary(max_size=300) | big_bytes
payload_text = st.text(max_size=100) | st.builds(
    lambda unit, n: unit * n, st.text(min_size=1, max_size=8), st.integers(16, 9000))


@dataclass
class Outgoing:
    """A ping, or a message: a first fragment then continuations (none: unfragmented)."""

    kind: str  # "text", "binary" or "ping"
    first: str | bytes
    rest: list[bytes]
    ping_between: bytes | None = None  # a Ping sent after the first fragment (§5.4)

    @property
    def data(self) -> bytes:
        first = self.first.encode() if isinstance(self.first, str) else self.first
        return first + b"".join(self.rest)


@st.composite
def outgoing(draw: st.DrawFn) -> Outgoing:
    kind = draw(st.sampled_from(["text", "binary", "ping"]))
    if kind == "ping":
        return Outgoing("ping", draw(st.binary(max_size=125)), [])
    whole = draw(payload_text if kind == "text" else payload_bytes)
    if not draw(st.booleans()):
        return Outgoing(kind, whole, [])
    # send_text() takes str, so a text message's first fragment ends on a character;
    # the continuations are bytes cut anywhere, even inside a character (§5.6).
    at = draw(st.integers(0, len(whole)))
    rest = whole[at:].encode() if kind == "text" else whole[at:]
    ping = draw(st.none() | st.binary(max_size=125))
    return Outgoing(kind, whole[:at], split(rest, draw(cuts)), ping)


def send(conn: Connection, item: Outgoing) -> list[object]:
    """Send ``item``; return the events the peer must report for it, in order."""
    if item.kind == "ping":
        conn.send_ping(item.first)  # type: ignore[arg-type]
        return [Ping(item.first)]  # type: ignore[arg-type]
    start = conn.send_text if item.kind == "text" else conn.send_bytes
    start(item.first, fin=not item.rest)  # type: ignore[operator]
    expected: list[object] = []
    for index, part in enumerate(item.rest):
        if index == 0 and item.ping_between is not None:
            conn.send_ping(item.ping_between)
            expected.append(Ping(item.ping_between))
        conn.send_continuation(part, fin=index == len(item.rest) - 1)
    data = item.data
    expected.append(TextMessage(data.decode()) if item.kind == "text" else BytesMessage(data))
    return expected


def make_pair(setup: tuple[DeflateParams, PerMessageDeflate] | None
              ) -> tuple[Connection, Connection]:
    if setup is None:
        return Connection(Role.CLIENT), Connection(Role.SERVER)
    params, config = setup
    return (Connection(Role.CLIENT, deflate=DeflateCodec(params, is_client=True, config=config)),
            Connection(Role.SERVER, deflate=DeflateCodec(params, is_client=False, config=config)))


# --------------------------------------------------------------------------- round trip

close_codes = st.sampled_from([1000, 1001, 1003, 1008, 1011, 1014, 3000, 4999, 1005])


@PROPERTY
@given(setup=deflate_setups, items=st.lists(outgoing(), min_size=1, max_size=5),
       client_sends=st.booleans(), masks=st.lists(st.binary(min_size=4, max_size=4),
                                                  min_size=1, max_size=4),
       tcp_cuts=cuts, back_cuts=cuts,
       close=st.none() | st.tuples(close_codes, st.text(max_size=30)))
def test_what_one_side_sends_the_other_receives_exactly(
        setup, items, client_sends, masks, tcp_cuts, back_cuts, close):
    client, server = make_pair(setup)
    sender, receiver = (client, server) if client_sends else (server, client)
    keys = itertools.cycle(masks)
    with mock.patch.object(connection_module, "new_mask", lambda: next(keys)):
        expected = [event for item in items for event in send(sender, item)]
        if close is not None:
            code, reason = close
            reason = "" if code == 1005 else reason.encode()[:123].decode("utf-8", "ignore")
            sender.send_close(code, reason)
            expected.append(CloseReceived(code, reason))
        wire = sender.data_to_send()
        record(f"wire size {'< 64 KiB' if len(wire) < 65536 else '>= 64 KiB'}")
        feed(receiver, wire, tcp_cuts)
        assert receiver.events_received() == expected
        assert receiver.failure is None
        feed(sender, receiver.data_to_send(), back_cuts)  # pongs (§5.5.2), close echo
    pongs = [Pong(e.payload) for e in expected if isinstance(e, Ping)]
    echo = [CloseReceived(close[0], "")] if close is not None else []
    assert sender.events_received() == pongs + echo
    # §5.3: every client frame carries the next masking key; server frames none (§5.1)
    frames = read_frames(wire, masked=client_sends)
    if client_sends:
        assert [key for _, key, _ in frames] == list(itertools.islice(
            itertools.cycle(masks), len(frames)))


@PROPERTY
@given(params=deflate_params, payload=payload_bytes, fragmented=st.booleans())
def test_compressed_messages_arrive_when_the_size_limit_is_off(params, payload, fragmented):
    # Connection docstring: max_message_size=None means "no limit", not "fail".
    config = PerMessageDeflate()
    client = Connection(Role.CLIENT, max_message_size=None,
                        deflate=DeflateCodec(params, is_client=True, config=config))
    server = Connection(Role.SERVER, max_message_size=None,
                        deflate=DeflateCodec(params, is_client=False, config=config))
    for sender, receiver in ((client, server), (server, client)):
        if fragmented:
            sender.send_bytes(payload[:7], fin=False)
            sender.send_continuation(payload[7:])
        else:
            sender.send_bytes(payload)
        receiver.receive_data(sender.data_to_send())
        assert receiver.events_received() == [BytesMessage(payload)]


# --------------------------------------------------------------------------- one frame

@dataclass
class Fail:
    code: int


def close_outcome(payload: bytes) -> object:
    """RFC 6455 §5.5.1, §7.4: what a Close payload means."""
    if not payload:
        return CloseReceived(1005, "")
    if len(payload) == 1:
        return Fail(1002)
    code = int.from_bytes(payload[:2], "big")
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return Fail(1002)
    try:
        return CloseReceived(code, payload[2:].decode("utf-8"))
    except UnicodeDecodeError:
        return Fail(1007)


def data_outcome(opcode: int, fin: bool, compressed: bool, payload: bytes,
                 limit: int) -> list[object]:
    """RFC 6455 §5.6 and RFC 7692 §7.2.2 outcomes of a first data frame (None: no event).

    Connection docstring: ``max_message_size`` bounds the message after decompression;
    compressed frames may exceed it on the wire by deflate's growth, but not without end.
    """
    if not compressed:
        if len(payload) > limit:
            return [Fail(1009)]
        return [plain_outcome(opcode, fin, payload)]
    if len(payload) > 2 * limit + 64:
        return [Fail(1009)]
    inflater = zlib.decompressobj(-15)
    try:
        inflated = inflater.decompress(payload + (TAIL if fin else b""), limit + 1)
    except zlib.error:
        outcome: object = Fail(1007)
    else:
        outcome = Fail(1009) if len(inflated) > limit else plain_outcome(opcode, fin, inflated)
    return [outcome, Fail(1009)] if len(payload) > limit else [outcome]


def plain_outcome(opcode: int, fin: bool, payload: bytes) -> object:
    if opcode == 2:
        return BytesMessage(payload) if fin else None
    if fin:
        try:
            return TextMessage(payload.decode("utf-8"))
        except UnicodeDecodeError:
            return Fail(1007)
    return None if is_utf8_prefix(payload) else Fail(1007)


def frame_outcomes(role: Role, deflate: bool, limit: int, spec: FrameSpec) -> list[object]:
    """What RFC 6455/7692 allow a fresh connection to make of one frame."""
    opcode, payload = spec.opcode, spec.payload
    if spec.rsv2 or spec.rsv3:
        return [Fail(1002)]  # §5.2: no extension negotiated RSV2/RSV3
    if (spec.mask is None) == (role is Role.SERVER):
        return [Fail(1002)]  # §5.1: clients mask, servers do not
    if opcode >= 8:
        if opcode > 10 or not spec.fin or len(payload) > 125 or spec.rsv1:
            return [Fail(1002)]  # §5.2 reserved opcodes, §5.5 control frames, RFC 7692 §6
        if opcode == 8:
            return [close_outcome(payload)]
        return [Ping(payload) if opcode == 9 else Pong(payload)]
    if opcode not in (1, 2) or (spec.rsv1 and not deflate):
        return [Fail(1002)]  # §5.4 nothing to continue; reserved opcode; RSV1 unnegotiated
    return data_outcome(opcode, spec.fin, spec.rsv1, payload, limit)


# Hypothesis leans towards the first element of sampled_from (it shrinks that way), so
# the rule-abiding choice comes first and the rule-breaking one is one in eight.
rarely = st.sampled_from([False] * 7 + [True])
opcodes = rarely.flatmap(
    lambda odd: st.integers(0, 15) if odd else st.sampled_from([1, 2, 9, 10, 8, 1, 2, 0]))
close_codes_on_wire = st.sampled_from([1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000,
                                       4999]) | st.integers(0, 65535)
control_payloads = rarely.flatmap(lambda odd: st.one_of(
    st.binary(min_size=126, max_size=130), st.binary(min_size=1, max_size=1)) if odd else
    st.binary(max_size=125) | st.builds(lambda code, reason: code.to_bytes(2, "big") + reason,
                                        close_codes_on_wire,
                                        st.text(max_size=20).map(str.encode)
                                        | st.binary(max_size=4)))
data_payloads = st.one_of(
    st.binary(max_size=140),
    st.text(max_size=60).map(str.encode),
    st.text(min_size=1, max_size=20).map(lambda t: t.encode()[:-1]),  # cut in a character
    (st.binary(max_size=200) | st.text(max_size=200).map(str.encode)).map(deflate_raw),
    st.binary(min_size=126, max_size=400),
    st.builds(lambda seed: random.Random(seed).randbytes(65_536), st.integers(0, 9)),
)


@dataclass
class FrameSpec:
    opcode: int
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    mask: bytes | None
    payload: bytes

    def encode(self) -> bytes:
        return encode_frame(self.opcode, self.payload, fin=self.fin, rsv1=self.rsv1,
                            rsv2=self.rsv2, rsv3=self.rsv3, mask=self.mask)


@st.composite
def frame_specs(draw: st.DrawFn, role: Role, deflate: bool) -> FrameSpec:
    """Mostly frames a peer of ``role``'s engine may send, each rule broken now and then."""
    opcode = draw(opcodes)
    control = opcode >= 8
    rsv1 = draw(st.booleans()) if deflate and not control else draw(rarely)
    masked = (role is Role.SERVER) != draw(rarely)
    mask = draw(st.binary(min_size=4, max_size=4)) if masked else None
    payload = draw(control_payloads if control else data_payloads)
    rsv2, rsv3 = draw(st.tuples(st.booleans(), st.booleans())) if draw(rarely) else (0, 0)
    return FrameSpec(opcode, not draw(rarely), rsv1, rsv2, rsv3, mask, payload)


@BROAD
@given(role=st.sampled_from(Role), deflate=st.booleans(), small=st.booleans(),
       data=st.data(), tcp_cuts=cuts)
def test_any_single_frame_yields_what_the_rfc_prescribes(role, deflate, small, data, tcp_cuts):
    spec = data.draw(frame_specs(role, deflate), label="frame")
    limit = 100 if small else 1 << 20
    codec = DeflateCodec(DeflateParams(), is_client=role is Role.CLIENT) if deflate else None
    conn = Connection(role, max_message_size=limit, deflate=codec)
    feed(conn, spec.encode(), tcp_cuts)
    events = conn.events_received()
    assert len(events) <= 1
    got = events[0] if events else None
    if isinstance(got, ConnectionFailed):
        got = Fail(got.code)
    assert got in frame_outcomes(role, deflate, limit, spec), events
    record(f"got {got}" if isinstance(got, Fail) else f"got {type(got).__name__}")
    sent = read_frames(conn.data_to_send(), masked=role is Role.CLIENT)
    if isinstance(got, Fail):
        [(first, _, close)] = sent  # §7.1.7: our Close frame carries the same code
        assert first == 0x88 and int.from_bytes(close[:2], "big") == got.code
    elif got is None:
        assert sent == []
    else:
        expected = got
        if isinstance(expected, Ping):  # §5.5.2: Pong with the same payload
            assert [(f, p) for f, _, p in sent] == [(0x8A, spec.payload)]
        elif isinstance(expected, CloseReceived):  # §5.5.1: echo the code
            echo = b"" if expected.code == 1005 else expected.code.to_bytes(2, "big")
            assert [(f, p) for f, _, p in sent] == [(0x88, echo)]
        else:
            assert sent == []


# --------------------------------------------------------------------------- any bytes

@st.composite
def streams(draw: st.DrawFn, role: Role, deflate: bool) -> bytes:
    """Random bytes, or a run of mostly plausible frames, possibly with junk spliced in."""
    if draw(rarely):
        return draw(st.binary(max_size=2000))
    frames = b"".join(f.encode() for f in draw(st.lists(frame_specs(role, deflate), max_size=8)))
    if draw(rarely):
        at = draw(st.integers(0, len(frames)))
        frames = frames[:at] + draw(st.binary(min_size=1, max_size=30)) + frames[at:]
    return frames


@BROAD
@given(role=st.sampled_from(Role), deflate=st.none() | deflate_params,
       limit=st.sampled_from([200, 1 << 20, 1 << 40]), stream=st.data(), tcp_cuts=cuts)
def test_any_bytes_give_only_documented_events_and_never_raise(
        role, deflate, limit, stream, tcp_cuts):
    data = stream.draw(streams(role, deflate is not None), label="bytes")
    codec = None if deflate is None else DeflateCodec(deflate, is_client=role is Role.CLIENT)
    conn = Connection(role, max_message_size=limit, deflate=codec)
    started = time.monotonic()
    feed(conn, data, tcp_cuts)
    before_eof = list(conn.events_received())  # a copy: see the aliasing property below
    conn.receive_eof()
    events = before_eof + conn.events_received()
    assert time.monotonic() - started < 5, "the engine must finish promptly"
    assert not any(isinstance(e, ConnectionLost) for e in before_eof)
    allowed = (TextMessage, BytesMessage, Ping, Pong, CloseReceived, ConnectionFailed,
               ConnectionLost)
    assert all(isinstance(e, allowed) for e in events)
    # events module: exactly one terminal event ends every stream, nothing after it
    record(f"{len(events)} events, ending in {type(events[-1]).__name__}")
    terminal = [i for i, e in enumerate(events) if isinstance(e, TERMINAL)]
    assert terminal == [len(events) - 1]
    for event in events:
        if isinstance(event, ConnectionFailed):
            assert event.code in (1002, 1007, 1009)
    closes = [p for f, _, p in read_frames(conn.data_to_send(), masked=role is Role.CLIENT)
              if f & 0x0F == 8]
    assert len(closes) <= 1  # §5.5.1: one Close frame per endpoint
    for payload in closes:
        assert len(payload) != 1
        # §7.4.1: 1005, 1006 and 1015 MUST NOT be set as a status code in a Close frame
        assert not payload or int.from_bytes(payload[:2], "big") not in (1005, 1006, 1015)


@PROPERTY
@given(role=st.sampled_from(Role), stream=st.data(), tcp_cuts=cuts)
def test_events_received_hands_over_lists_the_engine_never_touches_again(role, stream, tcp_cuts):
    # "Return and forget the events parsed since the last call": a list already handed
    # to the caller must not grow, or its events would be seen twice.
    data = stream.draw(streams(role, False), label="bytes")
    conn = Connection(role)
    handed_over = []
    for piece in split(data, tcp_cuts):
        conn.receive_data(piece)
        events = conn.events_received()
        handed_over.append((events, list(events)))
    conn.receive_eof()
    handed_over.append((conn.events_received(), []))
    for events, snapshot in handed_over[:-1]:
        assert events == snapshot


# --------------------------------------------------------------------------- handshake

_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
VALID_HEADERS = [("Host", "example.com"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                 ("Sec-WebSocket-Key", _KEY), ("Sec-WebSocket-Version", "13")]
_NAMES = [name for name, _ in VALID_HEADERS] + [
    "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "Content-Length",
    "Transfer-Encoding", "upgrade", "CONNECTION", "sec-websocket-key"]
_SAMPLES = ["websocket", "WebSocket", "Upgrade", "keep-alive, Upgrade", "upgrade,", "13", "8",
            " 13 ", _KEY, "AAAAAAAAAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAAAAAAAAAA=", "", "0", "5",
            "chunked", "chat, v2", "chat v2", "http://example.com", "null", ",,", "\"x\""]
_ODD_VALUES = ["8", "16", "09", "\"10\"", "\"1 0\"", "", "abc", "١", "\"\""]
extension_param = st.one_of(
    st.tuples(st.sampled_from(["server_no_context_takeover", "client_no_context_takeover"]),
              rarely.flatmap(lambda odd: st.sampled_from(_ODD_VALUES) if odd else st.none())),
    st.tuples(st.sampled_from(["server_max_window_bits", "client_max_window_bits"]),
              rarely.flatmap(lambda odd: st.sampled_from(_ODD_VALUES) if odd else
                             st.none() | st.integers(8, 15).map(str))),
    st.tuples(st.sampled_from(["x", "mux"]), st.none() | st.just("1")),
)
extension_offer = st.builds(
    lambda name, params: "; ".join([name] + [p if v is None else f"{p}={v}" for p, v in params]),
    rarely.flatmap(lambda odd: st.sampled_from(["x-webkit-deflate-frame", "", "a b"]) if odd
                   else st.just("permessage-deflate")),
    st.lists(extension_param, max_size=4))
extension_values = st.lists(extension_offer, min_size=1, max_size=3).map(", ".join)
header_values = st.sampled_from(_SAMPLES) | st.text(max_size=30) | extension_values
extra_headers = st.one_of(
    st.tuples(st.just("Sec-WebSocket-Extensions"), extension_values),
    st.tuples(st.just("Sec-WebSocket-Protocol"), st.sampled_from(["chat", "v2, chat", "a b"])),
    st.tuples(st.sampled_from(_NAMES) | st.text(min_size=1, max_size=10), header_values),
    st.tuples(st.sampled_from(["Origin", "User-Agent"]), st.just("http://example.com")),
)


@st.composite
def header_sets(draw: st.DrawFn) -> Headers:
    """A valid upgrade request's headers, now and then dropped, replaced or reordered,
    with extra ones added (extension offers most of all)."""
    seldom = st.sampled_from([False] * 15 + [True])
    items = []
    for name, value in VALID_HEADERS:
        if draw(seldom):
            continue
        items.append((name, draw(header_values) if draw(seldom) else value))
    if draw(st.booleans()):
        items.append(("Sec-WebSocket-Extensions", draw(extension_values)))
    items += draw(st.lists(extra_headers, max_size=4))
    return Headers(draw(st.permutations(items)) if draw(rarely) else items)


servers = st.builds(ServerHandshake, subprotocols=st.sampled_from([(), ("chat", "v2")]),
                    deflate=st.none() | deflate_configs | st.builds(
                        PerMessageDeflate, st.booleans(), st.booleans(), st.integers(9, 15),
                        st.none() | st.integers(8, 15)),
                    allowed_origins=st.none() | st.just(["http://example.com"]))


@BROAD
@given(server=servers, headers=header_sets(), has_body=rarely)
def test_server_handshake_accepts_or_raises_handshake_rejected(server, headers, has_body):
    try:
        request = server.check("GET", "1.1", headers, has_body=has_body)
    except HandshakeRejected as exc:
        record(f"rejected with {exc.status_code}: {exc.reason}")
        assert 400 <= exc.status_code < 500
        return
    accepted = server.accept(request, subprotocol=server.select_subprotocol(request))
    record(f"accepted, deflate {'on' if accepted.deflate else 'off'}")
    head = parse_response_head(accepted.response())
    assert head.status_code == 101


@PROPERTY
@given(method=st.sampled_from(["GET", "POST", "get"]) | st.text(max_size=8),
       version=st.sampled_from(["1.1", "1.0", "2.0", "1.10", "11", "1."]) | st.text(max_size=6))
@example(method="GET", version="1.²")  # str.isdigit() is true for superscripts
@example(method="GET", version="1.١")  # and for Arabic-Indic digits, which int() reads
def test_server_handshake_check_raises_only_handshake_rejected_for_any_request_line(
        method, version):
    try:
        ServerHandshake().check(method, version, Headers(VALID_HEADERS))
    except HandshakeRejected:
        return
    assert method == "GET"
    major, _, minor = version.partition(".")
    assert major == "1" and minor.isascii() and int(minor) >= 1  # RFC 6455 §4.1: HTTP/1.1+


# --------------------------------------------------------------------------- HTTP head

_REQUEST = (b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + _KEY.encode() +
            b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
mutated_requests = st.builds(
    lambda at, junk, cut: _REQUEST[:at] + junk + _REQUEST[at + cut:],
    st.integers(0, len(_REQUEST)),
    st.binary(max_size=6) | st.sampled_from([b"\r", b"\n", b" ", b"\t", b":", b"\x00",
                                             b"\r\n \r\n", b"\xff", b"x" * 9000]),
    st.integers(0, 4))
heads = st.binary(max_size=300) | mutated_requests


@BROAD
@given(head=heads)
def test_parse_request_head_parses_or_raises_head_error(head):
    try:
        end = find_head_end(head)
        parsed = parse_request_head(head if end is None else head[:end])
    except HeadError as exc:
        record(f"HeadError {exc.status_code}")
        assert exc.status_code in (400, 414, 431)
        return
    record("parsed")
    assert parsed.http_version[0].isdigit() and all(
        "\r" not in v and "\n" not in v for v in parsed.headers.values())


@PROPERTY
@given(head=heads.map(lambda h: h.replace(b"GET /chat?x=1 HTTP/1.1", b"HTTP/1.1 101 OK", 1)))
def test_parse_response_head_parses_or_raises_head_error(head):
    try:
        parse_response_head(head)
    except HeadError:
        pass


@BROAD
@given(deflate=st.none() | deflate_params, limit=st.sampled_from([200, 1 << 20]),
       stream=st.data(), tcp_cuts=cuts)
def test_compiled_reader_and_python_reader_agree_on_any_bytes(deflate, limit, stream, tcp_cuts):
    # The C reader (whole one-frame messages) hands over to the Python reader wherever it
    # stops; together they must behave exactly like the Python reader alone.
    if connection_module._read_messages is None:
        return  # not built / LEGATO_NO_EXTENSIONS=1: there is only one reader
    data = stream.draw(streams(Role.SERVER, deflate is not None), label="bytes")
    outcomes = []
    for reader in (connection_module._read_messages, None):
        codec = None if deflate is None else DeflateCodec(deflate, is_client=False)
        conn = Connection(Role.SERVER, max_message_size=limit, deflate=codec)
        with mock.patch.object(connection_module, "_read_messages", reader):
            feed(conn, data, tcp_cuts)
        outcomes.append((conn.events_received(), conn.data_to_send(), conn.state))
    assert outcomes[0] == outcomes[1]


@PROPERTY
@given(role=st.sampled_from(Role), deflate=st.booleans(), stream=st.data(), tcp_cuts=cuts)
def test_the_engine_answers_only_alongside_an_event_other_than_a_message(
        role, deflate, stream, tcp_cuts):
    # receive_data's promise, which lets the server skip data_to_send() per message.
    data = stream.draw(streams(role, deflate), label="bytes")
    codec = DeflateCodec(DeflateParams(), is_client=role is Role.CLIENT) if deflate else None
    conn = Connection(role, deflate=codec)
    closing = False
    for piece in split(data, tcp_cuts):
        conn.receive_data(piece)
        events = conn.events_received()
        if all(isinstance(e, (TextMessage, BytesMessage)) for e in events):
            assert conn.data_to_send() == b"" and conn.close_transport() is closing
        conn.data_to_send()
        closing = conn.close_transport()


@PROPERTY
@given(role=st.sampled_from(Role), deflate=st.booleans(), stream=st.data(), tcp_cuts=cuts)
def test_holding_the_fail_close_changes_only_when_the_close_goes_out(
        role, deflate, stream, tcp_cuts):
    # RFC 6455 §7.1.7: a held failure reports what failing at once reports, in the same
    # order; it sends nothing more until send_fail_close(), then the same frames.
    data = stream.draw(streams(role, deflate), label="bytes")
    outcomes = []
    for hold in (False, True):
        codec = DeflateCodec(DeflateParams(), is_client=role is Role.CLIENT) if deflate else None
        conn = Connection(role, deflate=codec, hold_fail_close=hold)
        feed(conn, data, tcp_cuts)
        if hold:
            record(f"ended {conn.state.name}")
        if conn.state is State.FAILING:
            sent = parse_frames(conn.data_to_send())
            assert all(frame.opcode != 8 for frame in sent) and not conn.close_transport()
            conn.send_fail_close()
        else:
            sent = []
        # Compared unmasked: a client masks each frame with a fresh random key.
        sent += parse_frames(conn.data_to_send())
        outcomes.append((conn.events_received(), [(f.fin, f.opcode, f.payload) for f in sent],
                         conn.state, conn.close_transport()))
    assert outcomes[0] == outcomes[1]
