"""legato.v1 frames without I/O (docs/channels.md, Frames): what parses, what the
client sends, and that every bad frame is one ServerProtocolError naming it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from legato.client import Member, Message, ServerProtocolError
from legato.client.frames import (
    ErrorFrame,
    PresenceFrame,
    Reconnect,
    Reply,
    UnknownFrame,
    Welcome,
    call_body,
    join_body,
    parse_server_frame,
    pub_body,
    with_ref,
)


@pytest.mark.parametrize(("text", "frame"), [
    ('{"topic":"room:a","id":"1-0","data":{"x":1}}', Message("room:a", "1-0", {"x": 1})),
    ('{"t":"welcome","v":1,"conn":"c1","heartbeat":1000}', Welcome(1, "c1", 1000)),
    ('{"t":"welcome","v":1,"conn":"c1"}', Welcome(1, "c1", 25_000)),
    ('{"t":"reply","ref":3,"data":[1]}', Reply(3, [1])),
    ('{"t":"error","ref":4,"code":"forbidden","message":"no","details":{"a":1}}',
     ErrorFrame(4, "forbidden", "no", {"a": 1})),
    ('{"t":"error","ref":null,"code":"invalid","message":"x"}',
     ErrorFrame(None, "invalid", "x", None)),
    ('{"t":"joined","topic":"room:a","member":{"conn":"c2","data":"bob"}}',
     PresenceFrame("joined", "room:a", Member("c2", "bob"))),
    ('{"t":"reconnect","delay":0,"jitter":1000,"reason":"shutdown"}',
     Reconnect(0, 1000, "shutdown")),
    ('{"t":"future-thing","x":1}', UnknownFrame("future-thing")),  # a later minor version
    ('{"t":"reply","ref":1,"data":null,"added_later":true}', Reply(1, None)),
])
def test_server_frames_parse_and_unknown_types_and_fields_are_ignored(text: str,
                                                                      frame: object) -> None:
    assert parse_server_frame(text) == frame


@pytest.mark.parametrize(("text", "close_code", "says"), [
    ("not json", 1007, "not JSON"),
    ('"a string"', 1007, "JSON str, not an object"),
    ('{"t":"reply","ref":true,"data":1}', 1008, "'ref' should be a non-negative integer"),
    ('{"t":"reply","ref":-1}', 1008, "'ref' should be a non-negative integer"),
    ('{"t":"error","ref":1,"message":"m"}', 1008, "'code' should be a string, got nothing"),
    ('{"t":"welcome","v":1,"conn":"c","heartbeat":0}', 1008, "positive number"),
    ('{"topic":1,"id":"1"}', 1008, "message frame whose 'topic' should be a string"),
])
def test_bad_server_frames_name_the_frame_and_field(text: str, close_code: int, says: str
                                                    ) -> None:
    with pytest.raises(ServerProtocolError) as caught:
        parse_server_frame(text)
    assert caught.value.close_code == close_code
    assert says in caught.value.message
    assert caught.value.details == {"frame": text}


def test_a_long_bad_frame_is_quoted_to_200_characters() -> None:
    with pytest.raises(ServerProtocolError) as caught:
        parse_server_frame("x" * 5000)
    assert caught.value.details == {"frame": "x" * 200}


def test_with_ref_splices_ref_and_extras_into_the_encoded_body() -> None:
    body = call_body("rooms.count", {"room": "a"})
    assert json.loads(with_ref(body, 7, '"timeout":500,')) == {
        "ref": 7, "timeout": 500, "t": "call", "name": "rooms.count", "data": {"room": "a"}}


def test_join_sends_epoch_only_with_since() -> None:
    assert json.loads(join_body("room:a", None, None, "e1")) == {"t": "join", "topic": "room:a"}
    assert json.loads(join_body("room:a", {"n": 1}, "5-0", "e1")) == {
        "t": "join", "topic": "room:a", "since": "5-0", "epoch": "e1", "data": {"n": 1}}


def test_data_json_cannot_express_fails_when_the_request_is_made() -> None:
    with pytest.raises(TypeError):
        pub_body("room:a", object(), "once")


# ----------------------------------------------- contract: any text, one of two outcomes

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
_frames = st.fixed_dictionaries(
    {}, optional={"t": st.sampled_from(["welcome", "reply", "error", "pong", "joined",
                                        "left", "reconnect", "other"]) | _json,
                  "ref": _json, "v": _json, "conn": _json, "heartbeat": _json,
                  "data": _json, "code": _json, "message": _json, "topic": _json,
                  "id": _json, "member": _json, "delay": _json, "jitter": _json})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _json.map(json.dumps), _frames.map(json.dumps)))
def test_any_text_parses_to_a_frame_or_raises_server_protocol_error(text: str) -> None:
    """The parser's contract: nothing but a frame or a ServerProtocolError with a
    close code the client may send (1003/1007/1008), whatever the server sends."""
    try:
        parse_server_frame(text)
    except ServerProtocolError as exc:
        assert exc.close_code in (1003, 1007, 1008)
