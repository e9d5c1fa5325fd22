"""Interop with the ``websockets`` library, sans-I/O, bytes carried in memory.

``websockets`` was written by nobody here, so agreeing with it is evidence that our
engine speaks RFC 6455 and RFC 7692 and not a private dialect shared by our own client
and server. Two arrangements, each across every permessage-deflate option:

* websockets' ``ClientProtocol`` against our ``ServerHandshake`` and server ``Connection``;
* our ``ClientHandshake`` and client ``Connection`` against websockets' ``ServerProtocol``.

Bytes from websockets reach our engine in 4093-byte pieces, so small frames take the
whole-frame path and large ones the piece-by-piece path of the reader.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.protocol import SEND_EOF
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from legato.protocol import (
    BytesMessage,
    ClientHandshake,
    CloseReceived,
    Connection,
    DeflateParams,
    Event,
    PerMessageDeflate,
    Ping,
    Pong,
    ServerHandshake,
    State,
    TextMessage,
)
from legato.protocol.http import find_head_end, parse_request_head, parse_response_head

#: Bytes per ``receive_data`` call when feeding our engine (odd, so frames straddle it).
CHUNK = 4093
#: websockets counts compressed bytes against its own frame limit; give it room so that
#: only our side's limits are under test.
WS_MAX_SIZE = 2**21
ONE_MIB_MINUS_1 = (1 << 20) - 1

WsProtocol = ClientProtocol | ServerProtocol


# --------------------------------------------------------------------------- payloads

_LETTERS = bytes.maketrans(bytes(range(256)), b"abcdefghijklmnopqrstuvwxyz .,:;!" * 8)
_NIBBLES = bytes.maketrans(bytes(range(256)), bytes(range(16)) * 16)


def text_of(size: int, seed: int = 0) -> str:
    """Exactly ``size`` bytes of UTF-8: multi-byte characters, then random letters."""
    head = "légato €🎵 ".encode()[: min(size, 16)].decode("utf-8", "ignore")
    filler = random.Random(seed).randbytes(size - len(head.encode())).translate(_LETTERS)
    return head + filler.decode("ascii")


def bytes_of(size: int, seed: int = 0) -> bytes:
    """``size`` random bytes of 4 bits entropy each: compressible with any window."""
    return random.Random(seed).randbytes(size).translate(_NIBBLES)


def wire(kind: str, payload: Any) -> bytes:
    return payload.encode() if kind == "text" else payload


#: (kind, payload) of whole messages; payload is str for "text", bytes for "binary".
MESSAGES: list[tuple[str, Any]] = [
    ("text", ""),
    ("binary", b""),
    ("text", text_of(32, 1)),
    ("binary", random.Random(2).randbytes(32)),
    ("text", text_of(64 * 1024, 3)),
    ("binary", random.Random(4).randbytes(64 * 1024)),
    ("text", text_of(ONE_MIB_MINUS_1, 5)),
    ("binary", bytes_of(ONE_MIB_MINUS_1, 6)),
    # the same message again: with context takeover it refers to the previous one
    ("text", text_of(32, 1)),
    ("text", text_of(64 * 1024, 3)),
]

RAW_SIZE = sum(len(wire(kind, payload)) for kind, payload in MESSAGES)

#: (kind, fragments) of fragmented messages; text fragments are UTF-8 bytes and may split
#: a character, which RFC 6455 §5.6 allows as long as the whole message is valid.
_EURO = "€".encode()
FRAGMENTED: list[tuple[str, list[bytes]]] = [
    ("text", [b"frag", b"men", b"ted"]),
    ("text", [b"", b"", b""]),
    ("text", [b"price: " + _EURO[:1], _EURO[1:2], _EURO[2:] + b"42"]),
    ("binary", [bytes_of(70_000, 7), b"", random.Random(8).randbytes(65_536)]),
    ("binary", [b"\x00", b"\xff" * 125, b"\x00" * 126]),
]


# --------------------------------------------------------------------------- handshakes

@dataclass
class Case:
    """One permessage-deflate configuration and what RFC 7692 §7.1 says it negotiates."""

    id: str
    websockets: dict[str, Any] | None  # factory kwargs; None: extension not configured
    ours: PerMessageDeflate | None
    expected: DeflateParams | None


P = DeflateParams
PMD = PerMessageDeflate

#: websockets' client offers (ClientPerMessageDeflateFactory), our server answers.
CLIENT_CASES = [
    Case("default", {}, PMD(), P(False, False, 12, 12)),
    Case("server-nct", {"server_no_context_takeover": True}, PMD(), P(True, False, 12, 12)),
    Case("client-nct", {"client_no_context_takeover": True}, PMD(), P(False, True, 12, 12)),
    Case("both-nct-offered", {"server_no_context_takeover": True,
                              "client_no_context_takeover": True}, PMD(), P(True, True, 12, 12)),
    Case("both-nct-required", {}, PMD(server_no_context_takeover=True,
                                      client_no_context_takeover=True), P(True, True, 12, 12)),
    *[Case(f"server-bits-{b}", {"server_max_window_bits": b},
           PMD(server_max_window_bits=15, client_max_window_bits=None), P(False, False, b, 15))
      for b in range(9, 16)],
    *[Case(f"client-bits-{b}", {"client_max_window_bits": b},
           PMD(server_max_window_bits=15, client_max_window_bits=None), P(False, False, 15, b))
      for b in range(9, 16)],
    Case("client-bits-not-offered", {"client_max_window_bits": None}, PMD(),
         P(False, False, 12, 15)),
    Case("ours-lower-bits", {"server_max_window_bits": 15, "client_max_window_bits": 15},
         PMD(server_max_window_bits=9, client_max_window_bits=9), P(False, False, 9, 9)),
    Case("all-options", {"server_no_context_takeover": True, "client_no_context_takeover": True,
                         "server_max_window_bits": 10, "client_max_window_bits": 11},
         PMD(server_max_window_bits=13, client_max_window_bits=13), P(True, True, 10, 11)),
    Case("ours-level-0-mem-1", {}, PMD(compress_level=0, mem_level=1), P(False, False, 12, 12)),
    Case("ours-level-9-min-size", {}, PMD(compress_level=9, mem_level=9, min_size=64),
         P(False, False, 12, 12)),
    # zlib cannot deflate with an 8-bit window, so the offer is declined (§7.1.2.1)
    Case("server-bits-8-declined", {"server_max_window_bits": 8}, PMD(), None),
    Case("websockets-without-deflate", None, PMD(), None),
    Case("ours-without-deflate", {}, None, None),
]

#: Our client offers (PerMessageDeflate), websockets' server answers
#: (ServerPerMessageDeflateFactory).
SERVER_CASES = [
    Case("default", {}, PMD(), P(False, False, 12, 12)),
    Case("server-nct-required", {"server_no_context_takeover": True}, PMD(),
         P(True, False, 12, 12)),
    Case("client-nct-required", {"client_no_context_takeover": True}, PMD(),
         P(False, True, 12, 12)),
    Case("server-nct-offered", {}, PMD(server_no_context_takeover=True), P(True, False, 12, 12)),
    Case("client-nct-offered", {}, PMD(client_no_context_takeover=True), P(False, True, 12, 12)),
    *[Case(f"server-bits-{b}", {"server_max_window_bits": b},
           PMD(server_max_window_bits=15, client_max_window_bits=None), P(False, False, b, 15))
      for b in range(9, 16)],
    # RFC 7692 §7.1.2.2 allows 8; zlib's 9-bit deflater never reaches back more than
    # 250 bytes, so its output inflates with a 256-byte window.
    *[Case(f"client-bits-{b}", {"client_max_window_bits": b},
           PMD(server_max_window_bits=15, client_max_window_bits=None), P(False, False, 15, b))
      for b in range(8, 16)],
    *[Case(f"offered-bits-{b}", {}, PMD(server_max_window_bits=b, client_max_window_bits=b),
           P(False, False, b, b)) for b in (9, 11, 15)],
    Case("all-options", {"server_no_context_takeover": True, "client_no_context_takeover": True,
                         "server_max_window_bits": 12, "client_max_window_bits": 13},
         PMD(server_no_context_takeover=True, client_no_context_takeover=True,
             server_max_window_bits=10, client_max_window_bits=11), P(True, True, 10, 11)),
    Case("ours-level-0-mem-1", {}, PMD(compress_level=0, mem_level=1), P(False, False, 12, 12)),
    Case("ours-level-9-min-size", {}, PMD(compress_level=9, mem_level=9, min_size=64),
         P(False, False, 12, 12)),
    Case("websockets-without-deflate", None, PMD(), None),
    Case("ours-without-deflate", {}, None, None),
]


@dataclass
class Link:
    """Our engine and websockets' engine joined by an in-memory "socket"."""

    ours: Connection
    theirs: WsProtocol
    negotiated: DeflateParams | None
    subprotocol: str | None
    theirs_sent_eof: bool = False
    wire_to_theirs: int = 0  # bytes our engine wrote, to see compression at work
    wire_to_ours: int = 0
    pending: list[bytes] = field(default_factory=list)  # bytes that followed the head

    def to_theirs(self) -> list[Frame]:
        """Deliver what our engine wrote; return the frames websockets parsed."""
        data = self.ours.data_to_send()
        self.wire_to_theirs += len(data)
        if data:
            self.theirs.receive_data(data)
        return self.theirs.events_received()

    def to_ours(self) -> list[Event]:
        """Deliver what websockets wrote, in CHUNK pieces (then its EOF, if it sent one)."""
        writes = self.pending + self.theirs.data_to_send()
        self.pending = []
        eof = SEND_EOF in writes
        data = b"".join(writes)
        self.wire_to_ours += len(data)
        for start in range(0, len(data), CHUNK):
            self.ours.receive_data(data[start:start + CHUNK])
        if eof:
            self.theirs_sent_eof = True
            self.ours.receive_eof()
        return self.ours.events_received()


def websockets_client_link(case: Case, subprotocols: list[str] | None = None,
                           ours_subprotocols: tuple[str, ...] = ()) -> Link:
    """websockets' client handshakes with our server (RFC 6455 §4.1, §4.2)."""
    extensions = None
    if case.websockets is not None:
        extensions = [ClientPerMessageDeflateFactory(**case.websockets)]
    theirs = ClientProtocol(parse_uri("ws://localhost/chat"), extensions=extensions,
                            subprotocols=subprotocols, max_size=WS_MAX_SIZE)
    theirs.send_request(theirs.connect())
    request = b"".join(theirs.data_to_send())
    end = find_head_end(request)
    assert end == len(request)
    head = parse_request_head(request[:end])
    server = ServerHandshake(subprotocols=ours_subprotocols, deflate=case.ours)
    upgrade = server.check(head.method, head.http_version, head.headers)
    accepted = server.accept(upgrade, subprotocol=server.select_subprotocol(upgrade))
    theirs.receive_data(accepted.response())
    [response] = theirs.events_received()
    assert response.status_code == 101
    assert theirs.handshake_exc is None
    assert theirs.state is WsState.OPEN
    return Link(accepted.connection(), theirs, accepted.deflate, accepted.subprotocol)


def websockets_server_link(case: Case, subprotocols: tuple[str, ...] = (),
                           theirs_subprotocols: list[str] | None = None) -> Link:
    """Our client handshakes with websockets' server (RFC 6455 §4.1, §4.2)."""
    extensions = None
    if case.websockets is not None:
        extensions = [ServerPerMessageDeflateFactory(**case.websockets)]
    theirs = ServerProtocol(extensions=extensions, subprotocols=theirs_subprotocols,
                            max_size=WS_MAX_SIZE)
    client = ClientHandshake("localhost", "/chat", subprotocols=subprotocols,
                             deflate=case.ours)
    theirs.receive_data(client.request())
    [request] = theirs.events_received()
    theirs.send_response(theirs.accept(request))
    assert theirs.handshake_exc is None
    assert theirs.state is WsState.OPEN
    data = b"".join(theirs.data_to_send())
    end = find_head_end(data)
    assert end is not None
    head = parse_response_head(data[:end])
    result = client.check_response(head.status_code, head.headers)
    return Link(result.connection, theirs, result.deflate, result.subprotocol,
                pending=[data[end:]] if data[end:] else [])


LINKS = [
    *[pytest.param(websockets_client_link, c, id=f"websockets-client-{c.id}")
      for c in CLIENT_CASES],
    *[pytest.param(websockets_server_link, c, id=f"websockets-server-{c.id}")
      for c in SERVER_CASES],
]


#: One link per kind of configuration, for tests whose outcome does not vary further.
_SAMPLE = {"default", "all-options", "server-bits-9", "client-bits-9", "ours-level-0-mem-1",
           "ours-without-deflate"}
SAMPLE_LINKS = [p for p in LINKS if p.values[1].id in _SAMPLE]
#: The default configuration of each arrangement.
DEFAULT_LINKS = [LINKS[0], LINKS[len(CLIENT_CASES)]]


def theirs_parameters(link: Link) -> DeflateParams | None:
    """What websockets believes was negotiated, in our terms."""
    if not link.theirs.extensions:
        return None
    [ext] = link.theirs.extensions
    if isinstance(link.theirs, ClientProtocol):
        return P(ext.remote_no_context_takeover, ext.local_no_context_takeover,
                 ext.remote_max_window_bits, ext.local_max_window_bits)
    return P(ext.local_no_context_takeover, ext.remote_no_context_takeover,
             ext.local_max_window_bits, ext.remote_max_window_bits)


# --------------------------------------------------------------------------- helpers

def ws_messages(frames: list[Frame]) -> list[tuple[str, bytes]]:
    """Reassemble websockets' data frames into (kind, payload) messages."""
    messages: list[tuple[str, bytes]] = []
    kind, parts = "", []
    for frame in frames:
        if frame.opcode is WsOpcode.TEXT or frame.opcode is WsOpcode.BINARY:
            kind, parts = ("text" if frame.opcode is WsOpcode.TEXT else "binary"), []
        elif frame.opcode is not WsOpcode.CONT:
            continue
        parts.append(bytes(frame.data))
        if frame.fin:
            messages.append((kind, b"".join(parts)))
    return messages


def our_messages(events: list[Event]) -> list[tuple[str, bytes]]:
    out = []
    for event in events:
        if isinstance(event, TextMessage):
            out.append(("text", event.data.encode()))
        elif isinstance(event, BytesMessage):
            out.append(("binary", event.data))
    return out


def ws_send(theirs: WsProtocol, kind: str, payload: bytes, fin: bool = True) -> None:
    if kind == "text":
        theirs.send_text(payload, fin=fin)
    else:
        theirs.send_binary(payload, fin=fin)


def our_send(ours: Connection, kind: str, payload: Any, fin: bool = True) -> None:
    if kind == "text":
        ours.send_text(payload, fin=fin)
    else:
        ours.send_bytes(payload, fin=fin)


# --------------------------------------------------------------------------- RFC 7692 §7.1

@pytest.mark.parametrize(("make_link", "case"), LINKS)
def test_permessage_deflate_negotiates_the_same_parameters_on_both_sides(make_link, case):
    link = make_link(case)
    assert link.negotiated == case.expected
    assert theirs_parameters(link) == case.expected


# --------------------------------------------------------------------------- RFC 6455 §5.6

@pytest.mark.parametrize(("make_link", "case"), LINKS)
def test_websockets_messages_reach_us_intact(make_link, case):
    link = make_link(case)
    for kind, payload in MESSAGES:
        ws_send(link.theirs, kind, wire(kind, payload))
    events = link.to_ours()
    assert [type(e) for e in events] == [
        TextMessage if kind == "text" else BytesMessage for kind, _ in MESSAGES]
    assert [e.data for e in events] == [payload for _, payload in MESSAGES]
    assert link.ours.state is State.OPEN
    if case.expected is not None:
        assert link.wire_to_ours < 0.8 * RAW_SIZE  # compressed on the wire


@pytest.mark.parametrize(("make_link", "case"), LINKS)
def test_our_messages_reach_websockets_intact(make_link, case):
    link = make_link(case)
    for kind, payload in MESSAGES:
        our_send(link.ours, kind, payload)
    frames = link.to_theirs()
    assert ws_messages(frames) == [(kind, wire(kind, payload)) for kind, payload in MESSAGES]
    assert link.theirs.state is WsState.OPEN
    if case.expected is not None and case.ours is not None and case.ours.compress_level:
        assert link.wire_to_theirs < 0.8 * RAW_SIZE  # compressed on the wire


# RFC 6455 §5.4: fragments of one message, in order, control frames allowed between them.
@pytest.mark.parametrize(("make_link", "case"), LINKS)
def test_websockets_fragmented_messages_reach_us_reassembled(make_link, case):
    link = make_link(case)
    for kind, fragments in FRAGMENTED:
        ws_send(link.theirs, kind, fragments[0], fin=False)
        link.theirs.send_ping(b"between fragments")
        for fragment in fragments[1:-1]:
            link.theirs.send_continuation(fragment, fin=False)
        link.theirs.send_continuation(fragments[-1], fin=True)
    events = link.to_ours()
    assert our_messages(events) == [(kind, b"".join(f)) for kind, f in FRAGMENTED]
    assert [e for e in events if isinstance(e, Ping)] == [Ping(b"between fragments")] * 5
    pongs = [f for f in link.to_theirs() if f.opcode is WsOpcode.PONG]
    assert [bytes(f.data) for f in pongs] == [b"between fragments"] * 5


@pytest.mark.parametrize(("make_link", "case"), LINKS)
def test_our_fragmented_messages_reach_websockets_reassembled(make_link, case):
    link = make_link(case)
    for kind, fragments in FRAGMENTED:
        first, rest = fragments[0], fragments[1:]
        if kind == "text":
            try:
                first = first.decode()
            except UnicodeDecodeError:  # send_text() takes str: start empty, then bytes
                first, rest = "", fragments
        our_send(link.ours, kind, first, fin=False)
        link.ours.send_ping(b"between fragments")
        for fragment in rest[:-1]:
            link.ours.send_continuation(fragment, fin=False)
        link.ours.send_continuation(rest[-1], fin=True)
    frames = link.to_theirs()
    assert ws_messages(frames) == [(kind, b"".join(f)) for kind, f in FRAGMENTED]
    assert sum(f.opcode is WsOpcode.PING for f in frames) == 5
    assert link.to_ours() == [Pong(b"between fragments")] * 5


# Connection docstring: max_message_size bounds a message after decompression. Deflate
# makes incompressible data slightly larger on the wire (RFC 7692 §7.2.1 stored blocks),
# and a message under the limit must still arrive.
@pytest.mark.parametrize(("make_link", "case"), SAMPLE_LINKS)
def test_incompressible_message_just_under_one_mib_reaches_us(make_link, case):
    link = make_link(case)
    payload = random.Random(9).randbytes(ONE_MIB_MINUS_1)
    link.theirs.send_binary(payload)
    events = link.to_ours()
    assert events == [BytesMessage(payload)], link.ours.failure


@pytest.mark.parametrize(("make_link", "case"), SAMPLE_LINKS)
def test_incompressible_message_just_under_one_mib_reaches_websockets(make_link, case):
    link = make_link(case)
    payload = random.Random(9).randbytes(ONE_MIB_MINUS_1)
    link.ours.send_bytes(payload)
    assert ws_messages(link.to_theirs()) == [("binary", payload)]


# --------------------------------------------------------------------------- RFC 6455 §5.5.2-3

PING_PAYLOADS = [b"", b"ping", bytes(range(125))]


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
@pytest.mark.parametrize("payload", PING_PAYLOADS, ids=["empty", "short", "125-bytes"])
def test_websockets_ping_gets_our_pong_with_the_same_payload(make_link, case, payload):
    link = make_link(case)
    link.theirs.send_ping(payload)
    assert link.to_ours() == [Ping(payload)]
    [pong] = link.to_theirs()
    assert pong.opcode is WsOpcode.PONG and bytes(pong.data) == payload


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
@pytest.mark.parametrize("payload", PING_PAYLOADS, ids=["empty", "short", "125-bytes"])
def test_our_ping_gets_websockets_pong_with_the_same_payload(make_link, case, payload):
    link = make_link(case)
    link.ours.send_ping(payload)
    [ping] = link.to_theirs()
    assert ping.opcode is WsOpcode.PING and bytes(ping.data) == payload
    assert link.to_ours() == [Pong(payload)]


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
def test_unsolicited_pongs_are_reported_in_both_directions(make_link, case):
    link = make_link(case)
    link.theirs.send_pong(b"heartbeat")
    assert link.to_ours() == [Pong(b"heartbeat")]
    link.ours.send_pong(b"beat")
    [pong] = link.to_theirs()
    assert pong.opcode is WsOpcode.PONG and bytes(pong.data) == b"beat"
    assert link.to_theirs() == [] and link.to_ours() == []  # §5.5.3: no answer to a Pong


# --------------------------------------------------------------------------- RFC 6455 §7

CLOSES = [
    pytest.param(1000, "bye", id="1000-bye"),
    pytest.param(1001, "", id="1001-no-reason"),
    pytest.param(1011, "ünïcödé ✓", id="1011-utf8-reason"),
    pytest.param(4999, "r" * 123, id="4999-longest-reason"),
    pytest.param(None, "", id="no-status"),  # §7.1.5: reported as 1005
]


def _finish_tcp(link: Link) -> None:
    """§7.1.1: the server closes TCP first, then the client sees EOF and closes too."""
    if isinstance(link.theirs, ServerProtocol):
        assert link.theirs_sent_eof, "websockets' server should close TCP first"
        assert link.ours.close_transport()
    else:
        assert link.ours.close_transport(), "our server should close TCP first"
    link.theirs.receive_eof()
    assert link.theirs.state is WsState.CLOSED


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
@pytest.mark.parametrize(("code", "reason"), CLOSES)
def test_closing_handshake_started_by_websockets(make_link, case, code, reason):
    link = make_link(case)
    link.theirs.send_text(b"last words")
    link.theirs.send_close(code, reason)
    expected = 1005 if code is None else code
    assert link.to_ours() == [TextMessage("last words"), CloseReceived(expected, reason)]
    assert link.ours.state is State.CLOSED
    assert link.ours.close_code == expected
    frames = link.to_theirs()  # our echo (§5.5.1)
    assert [f.opcode for f in frames] == [WsOpcode.CLOSE]
    assert link.theirs.close_rcvd is not None and link.theirs.close_rcvd.code == expected
    link.to_ours()  # websockets' server now sends EOF; nothing for a client to read
    _finish_tcp(link)
    assert link.theirs.close_code == expected
    assert link.ours.events_received() == []


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
@pytest.mark.parametrize(("code", "reason"), CLOSES)
def test_closing_handshake_started_by_us(make_link, case, code, reason):
    link = make_link(case)
    link.ours.send_text("last words")
    link.ours.send_close(1005 if code is None else code, reason)
    assert link.ours.state is State.CLOSING
    frames = link.to_theirs()
    expected = 1005 if code is None else code
    assert [f.opcode for f in frames] == [WsOpcode.TEXT, WsOpcode.CLOSE]
    assert link.theirs.close_rcvd.code == expected
    assert link.theirs.close_rcvd.reason == reason
    assert link.to_ours() == [CloseReceived(expected, reason)]  # websockets echoes all
    assert link.ours.state is State.CLOSED
    assert link.ours.close_code == expected
    _finish_tcp(link)
    assert (link.theirs.close_code, link.theirs.close_reason) == (expected, reason)


@pytest.mark.parametrize(("make_link", "case"), DEFAULT_LINKS)
def test_websockets_closing_mid_fragmented_message_is_a_normal_close_for_us(make_link, case):
    # §5.4/§5.5: control frames may interrupt a fragmented message; after Close nothing
    # more is processed and the partial message is dropped.
    link = make_link(case)
    link.theirs.send_text(b"never ", fin=False)
    link.theirs.send_close(1001, "going away")
    assert link.to_ours() == [CloseReceived(1001, "going away")]
    assert link.ours.state is State.CLOSED


# --------------------------------------------------------------------------- RFC 6455 §4

def test_our_server_picks_its_preferred_subprotocol_among_websockets_offers():
    link = websockets_client_link(CLIENT_CASES[0], subprotocols=["superchat", "chat"],
                                  ours_subprotocols=("chat", "superchat"))
    assert link.subprotocol == "chat"
    assert link.theirs.subprotocol == "chat"


def test_our_server_answers_without_subprotocol_when_none_is_shared():
    link = websockets_client_link(CLIENT_CASES[0], subprotocols=["v1"],
                                  ours_subprotocols=("v2",))
    assert link.subprotocol is None
    assert link.theirs.subprotocol is None


def test_websockets_server_subprotocol_choice_is_accepted_by_our_client():
    link = websockets_server_link(SERVER_CASES[0], subprotocols=("chat", "v2"),
                                  theirs_subprotocols=["v2", "chat"])
    assert link.subprotocol == "v2"
    assert link.theirs.subprotocol == "v2"
    link.ours.send_text("hi")
    assert ws_messages(link.to_theirs()) == [("text", b"hi")]
