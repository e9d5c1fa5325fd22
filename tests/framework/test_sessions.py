"""Signed-cookie sessions (SPEC H4): the modified flag, the cookie written back only on
change, and every bad cookie (tampered, foreign, expired, not JSON) read as an empty
session rather than an error."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable
from typing import Any

import itsdangerous
import pytest

from legato.datastructures import parse_cookies
from legato.sessions import Session, SessionCodec

# --------------------------------------------------------------------- Session


def test_a_session_loaded_with_data_is_not_modified() -> None:
    assert Session({"a": 1}).modified is False


MUTATIONS: dict[str, Callable[[Session], Any]] = {
    "setitem": lambda s: s.__setitem__("b", 2),
    "delitem": lambda s: s.__delitem__("a"),
    "clear": lambda s: s.clear(),
    "pop": lambda s: s.pop("a"),
    "popitem": lambda s: s.popitem(),
    "setdefault": lambda s: s.setdefault("b", 2),
    "update": lambda s: s.update(b=2),
    "ior": lambda s: s.__ior__({"b": 2}),
}


@pytest.mark.parametrize("mutate", list(MUTATIONS.values()), ids=list(MUTATIONS))
def test_every_mutation_marks_the_session_modified(mutate: Callable[[Session], Any]) -> None:
    session = Session({"a": 1})
    mutate(session)
    assert session.modified is True


def test_in_place_or_keeps_the_session_type_and_marks_it() -> None:
    session = Session({"a": 1})
    session |= {"b": 2}
    assert isinstance(session, Session) and session.modified
    assert session == {"a": 1, "b": 2}


NO_OPS: dict[str, tuple[dict[str, Any], Callable[[Session], Any]]] = {
    "pop missing with default": ({"a": 1}, lambda s: s.pop("missing", None)),
    "setdefault existing": ({"a": 1}, lambda s: s.setdefault("a", 5)),
    "clear empty": ({}, lambda s: s.clear()),
    "read": ({"a": 1}, lambda s: (s.get("a"), s["a"], list(s.items()))),
}


@pytest.mark.parametrize(("data", "no_op"), list(NO_OPS.values()), ids=list(NO_OPS))
def test_operations_that_change_nothing_leave_the_session_unmodified(
        data: dict[str, Any], no_op: Callable[[Session], Any]) -> None:
    session = Session(data)
    no_op(session)
    assert session.modified is False


# ------------------------------------------------------------------ SessionCodec


@pytest.fixture
def codec() -> SessionCodec:
    return SessionCodec("s3cret")


def cookie_of(header: str, name: str = "session") -> dict[str, str]:
    """What the browser sends back for a Set-Cookie header."""
    pair = header.split(";")[0]
    cookies = parse_cookies(pair)
    assert name in cookies
    return cookies


def issued(codec: SessionCodec, data: dict[str, Any]) -> dict[str, str]:
    session = Session()
    session.update(data)
    header = codec.set_cookie_header(session, secure=False)
    assert header is not None
    return cookie_of(header, codec.cookie_name)


def test_a_modified_session_round_trips_through_its_cookie(codec: SessionCodec) -> None:
    data = {"user": "ada", "cart": [1, 2], "é": None}
    loaded = codec.load(issued(codec, data))
    assert loaded == data
    assert loaded.modified is False


def test_the_cookie_value_needs_no_quoting(codec: SessionCodec) -> None:
    value = issued(codec, {"user": "ada" * 10})["session"]
    assert value.count(".") == 2
    assert not set(value) & set('"=; ,\\')


def test_the_cookie_is_http_only_same_site_lax_and_lasts_max_age(codec: SessionCodec) -> None:
    session = Session()
    session["a"] = 1
    header = codec.set_cookie_header(session, secure=False)
    assert header is not None
    attributes = header.split("; ")[1:]
    assert attributes == ["Max-Age=1209600", "Path=/", "HttpOnly", "SameSite=Lax"]


def test_the_cookie_is_secure_over_tls_or_when_https_only() -> None:
    session = Session()
    session["a"] = 1
    assert "Secure" in (SessionCodec("k").set_cookie_header(session, secure=True) or "")
    assert "Secure" in (SessionCodec("k", https_only=True).set_cookie_header(session, False)
                        or "")
    assert "Secure" not in (SessionCodec("k").set_cookie_header(session, False) or "")


def test_cookie_options_are_honoured() -> None:
    codec = SessionCodec("k", cookie_name="sid", max_age=None, same_site="strict",
                         path="/app")
    session = Session()
    session["a"] = 1
    header = codec.set_cookie_header(session, secure=False)
    assert header is not None
    assert header.startswith("sid=")
    assert header.split("; ")[1:] == ["Path=/app", "HttpOnly", "SameSite=Strict"]


def test_an_unmodified_session_sends_no_cookie(codec: SessionCodec) -> None:
    loaded = codec.load(issued(codec, {"a": 1}))
    assert codec.set_cookie_header(loaded, secure=False) is None


def test_an_emptied_session_sends_an_expiring_cookie(codec: SessionCodec) -> None:
    loaded = codec.load(issued(codec, {"a": 1}))
    loaded.clear()
    header = codec.set_cookie_header(loaded, secure=False)
    assert header is not None
    assert header.startswith("session=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")


def test_values_json_cannot_express_are_a_type_error(codec: SessionCodec) -> None:
    session = Session()
    session["a"] = object()
    with pytest.raises(TypeError):
        codec.set_cookie_header(session, secure=False)


def test_a_missing_cookie_loads_an_empty_session(codec: SessionCodec) -> None:
    assert codec.load({}) == {}
    assert codec.load({"other": "x", "session": ""}) == {}


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


def tampered(value: str) -> list[str]:
    # Flip whole characters at the start of a base64 run: the last character of a run
    # may hold padding bits only, and changing those would change nothing.
    payload, timestamp, signature = value.split(".")
    return [f"{_flip(payload[0])}{payload[1:]}.{timestamp}.{signature}",
            f"{payload}.{_flip(timestamp[0])}{timestamp[1:]}.{signature}",
            f"{payload}.{timestamp}.{_flip(signature[0])}{signature[1:]}",
            value + "x", payload, "garbage", "a.b.c", "..", "\x00"]


def test_a_tampered_cookie_loads_an_empty_session(codec: SessionCodec) -> None:
    value = issued(codec, {"user": "ada"})["session"]
    for bad in tampered(value):
        assert codec.load({"session": bad}) == {}, bad


def test_a_cookie_signed_with_another_key_loads_an_empty_session(codec: SessionCodec) -> None:
    foreign = issued(SessionCodec("other key"), {"user": "admin"})
    assert codec.load(foreign) == {}


def test_an_expired_cookie_loads_an_empty_session(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = SessionCodec("k", max_age=60)
    cookies = issued(codec, {"user": "ada"})
    assert codec.load(cookies) == {"user": "ada"}
    later = int(time.time()) + 61
    monkeypatch.setattr(itsdangerous.TimestampSigner, "get_timestamp", lambda self: later)
    assert codec.load(cookies) == {}


def signed(payload: bytes) -> dict[str, str]:
    """A correctly signed cookie around any payload: only the content is wrong."""
    signer = itsdangerous.TimestampSigner("s3cret", salt="legato.session")
    return {"session": signer.sign(payload).decode()}


@pytest.mark.parametrize("payload", [
    b"!!not base64!!", b"A", base64.urlsafe_b64encode(b"{not json"),
    base64.urlsafe_b64encode(b"[1, 2]"), base64.urlsafe_b64encode(b'"text"'),
    base64.urlsafe_b64encode(b"\xff\xfe"),
])
def test_a_signed_cookie_that_is_not_a_json_object_loads_an_empty_session(
        codec: SessionCodec, payload: bytes) -> None:
    assert codec.load(signed(payload)) == {}


def test_the_signature_is_salted_for_sessions(codec: SessionCodec) -> None:
    # A value signed with the same key for another purpose (the default salt) is refused.
    plain = itsdangerous.TimestampSigner("s3cret")
    payload = base64.urlsafe_b64encode(b'{"user": "admin"}')
    assert codec.load({"session": plain.sign(payload).decode()}) == {}


def test_an_empty_secret_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        SessionCodec("")


def test_an_unknown_same_site_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="samesite"):
        SessionCodec("k", same_site="sometimes")


def test_an_oversized_session_is_logged_as_a_warning(codec: SessionCodec,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    session = Session()
    session["blob"] = "x" * 5000
    with caplog.at_level("WARNING", logger="legato.sessions"):
        codec.set_cookie_header(session, secure=False)
    assert "browsers drop cookies over 4096" in caplog.text


def test_without_itsdangerous_sessions_ask_for_the_extra(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setitem(sys.modules, "itsdangerous", None)
    with pytest.raises(RuntimeError, match=r"pip install legato\[sessions\]"):
        SessionCodec("k")
