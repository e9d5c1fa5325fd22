"""legato.v1 frames (docs/channels.md, Frames), without I/O.

Server frames are parsed into small typed records and checked field by field, so a
server bug surfaces as one ``ServerProtocolError`` naming the frame type and the field
(and the close code to fail the connection with), never as a ``KeyError`` deep in the
client. Unknown frame types and unknown fields are ignored: "a later minor version may
add some".

Client frames are encoded once, without their ``ref``: a request that waits for a
connection, or is resent after a reconnect, gets a new ``ref`` spliced in front
(:func:`with_ref`), and data that JSON cannot express fails when the request is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .. import jsoncodec
from .errors import ServerProtocolError

__all__ = [
    "Message", "Member", "Welcome", "Reply", "ErrorFrame", "Pong", "PresenceFrame",
    "Reconnect", "UnknownFrame", "ServerFrame", "parse_server_frame", "with_ref",
    "join_body", "leave_body", "pub_body", "call_body", "presence_body", "PING_BODY",
    "PROTOCOL_VERSION",
]

PROTOCOL_VERSION = 1
#: The heartbeat the spec promises when welcome carries none (ms).
DEFAULT_HEARTBEAT_MS = 25_000

# RFC 6455 §7.4.1 close codes the client fails a connection with, as the server does.
CLOSE_INVALID_PAYLOAD = 1007  # not JSON, or JSON but not an object
CLOSE_UNSUPPORTED_DATA = 1003  # a binary message
CLOSE_POLICY = 1008  # an object that is not a valid legato.v1 frame


@dataclass(frozen=True, slots=True)
class Message:
    """A message published on a topic: the hub's envelope (a frame without ``t``)."""

    topic: str
    id: str
    data: Any


@dataclass(frozen=True, slots=True)
class Member:
    """One connection present on a topic, with what its join (or the channel) listed."""

    conn: str
    data: Any


@dataclass(frozen=True, slots=True)
class Welcome:
    v: int
    conn: str
    heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class Reply:
    ref: int
    data: Any


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    ref: int | None
    code: str
    message: str
    details: Any


@dataclass(frozen=True, slots=True)
class Pong:
    ref: int | None  # null answers a ping without ref (the server allows one)


@dataclass(frozen=True, slots=True)
class PresenceFrame:
    kind: Literal["joined", "left"]
    topic: str
    member: Member


@dataclass(frozen=True, slots=True)
class Reconnect:
    delay_ms: int
    jitter_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class LostFrame:
    """While connected: the hub's broker lost messages of a joined topic (an outage it
    could not refill, or a restart with an empty history: a new ``epoch``)."""

    topic: str
    reason: str
    epoch: str


@dataclass(frozen=True, slots=True)
class UnknownFrame:
    t: str


ServerFrame = (Message | Welcome | Reply | ErrorFrame | Pong | PresenceFrame | Reconnect
               | LostFrame | UnknownFrame)


# ---------------------------------------------------------------------------- parsing


class _Fields:
    """Typed access to one frame's fields; every failure names the frame and field."""

    __slots__ = ("obj", "kind", "text")

    def __init__(self, obj: dict[str, Any], kind: str, text: str) -> None:
        self.obj = obj
        self.kind = kind
        self.text = text

    def fail(self, key: str, wanted: str) -> ServerProtocolError:
        got = type(self.obj[key]).__name__ if key in self.obj else "nothing"
        return ServerProtocolError(f"server sent a {self.kind} frame whose {key!r} should "
                                   f"be {wanted}, got {got}", frame=self.text)

    def string(self, key: str) -> str:
        value = self.obj.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "a string")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.obj.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(key, "a non-negative integer")
        return value

    def ref(self, nullable: bool = False) -> int | None:
        if nullable and self.obj.get("ref") is None:
            return None
        return self.integer("ref")

    def member(self) -> Member:
        value = self.obj.get("member")
        if not isinstance(value, dict) or not isinstance(value.get("conn"), str):
            raise self.fail("member", 'an object with a string "conn"')
        return Member(value["conn"], value.get("data"))


def _welcome(f: _Fields) -> Welcome:
    version = f.integer("v")
    if version != PROTOCOL_VERSION:
        raise ServerProtocolError(f"server speaks legato.v1 version {version}, this client "
                                  f"version {PROTOCOL_VERSION}", frame=f.text)
    heartbeat = f.integer("heartbeat", DEFAULT_HEARTBEAT_MS)
    if heartbeat == 0:
        raise f.fail("heartbeat", "a positive number of milliseconds")
    return Welcome(version, f.string("conn"), heartbeat)


def _reply(f: _Fields) -> Reply:
    ref = f.ref()
    assert ref is not None
    return Reply(ref, f.obj.get("data"))


def _error(f: _Fields) -> ErrorFrame:
    message = f.obj.get("message", "")
    if not isinstance(message, str):
        raise f.fail("message", "a string")
    return ErrorFrame(f.ref(nullable=True), f.string("code"), message, f.obj.get("details"))


def _pong(f: _Fields) -> Pong:
    return Pong(f.ref(nullable=True))


def _joined(f: _Fields) -> PresenceFrame:
    return PresenceFrame("joined", f.string("topic"), f.member())


def _left(f: _Fields) -> PresenceFrame:
    return PresenceFrame("left", f.string("topic"), f.member())


def _reconnect(f: _Fields) -> Reconnect:
    reason = f.obj.get("reason", "")
    return Reconnect(f.integer("delay", 0), f.integer("jitter", 0),
                     reason if isinstance(reason, str) else "")


def _lost(f: _Fields) -> LostFrame:
    return LostFrame(f.string("topic"), f.string("reason"), f.string("epoch"))


_PARSERS: dict[str, Callable[[_Fields], ServerFrame]] = {
    "welcome": _welcome, "reply": _reply, "error": _error, "pong": _pong,
    "joined": _joined, "left": _left, "reconnect": _reconnect, "lost": _lost,
}


def parse_server_frame(text: str) -> ServerFrame:
    """One server text message as a frame; ``ServerProtocolError`` when it is not one."""
    try:
        obj = jsoncodec.loads(text)
    except ValueError:
        raise ServerProtocolError("server sent a frame that is not JSON",
                                  close_code=CLOSE_INVALID_PAYLOAD, frame=text) from None
    if not isinstance(obj, dict):
        raise ServerProtocolError(f"server sent a JSON {type(obj).__name__}, not an object",
                                  close_code=CLOSE_INVALID_PAYLOAD, frame=text)
    kind = obj.get("t")
    if kind is None:
        f = _Fields(obj, "message", text)
        return Message(f.string("topic"), f.string("id"), obj.get("data"))
    if not isinstance(kind, str):
        raise ServerProtocolError(f"server sent a frame whose 't' is a {type(kind).__name__}",
                                  frame=text)
    parser = _PARSERS.get(kind)
    if parser is None:
        return UnknownFrame(kind)
    return parser(_Fields(obj, repr(kind), text))


# --------------------------------------------------------------------------- encoding


def with_ref(body: str, ref: int, extra: str = "") -> str:
    """``body`` (an encoded object without ``ref``) with ``"ref": ref`` and ``extra``
    (pre-encoded ``"key":value,`` pairs) in front: one string concatenation per send."""
    return f'{{"ref":{ref},{extra}{body[1:]}'


def _encode(frame: dict[str, Any]) -> str:
    return jsoncodec.dumps_str(frame)  # TypeError for data JSON cannot express


def join_body(topic: str, data: Any, since: str | None, epoch: str | None) -> str:
    frame: dict[str, Any] = {"t": "join", "topic": topic}
    if since is not None:
        frame["since"] = since
        if epoch is not None:
            frame["epoch"] = epoch
    if data is not None:
        frame["data"] = data
    return _encode(frame)


def leave_body(topic: str) -> str:
    return _encode({"t": "leave", "topic": topic})


def pub_body(topic: str, data: Any, once: str) -> str:
    return _encode({"t": "pub", "topic": topic, "data": data, "once": once})


def call_body(name: str, data: Any) -> str:
    return _encode({"t": "call", "name": name, "data": data})


def presence_body(topic: str, *, count: bool = False) -> str:
    frame: dict[str, Any] = {"t": "presence", "topic": topic}
    if count:
        frame["count"] = True
    return _encode(frame)


PING_BODY = '{"t":"ping"}'
