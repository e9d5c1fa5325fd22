"""Request (SPEC H1): connection facts, shared state, and the body as bytes, JSON, a form
or a stream, with the limits and the 400/413 answers for what a client gets wrong."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_calls import Exchange, http_scope, run

from legato.datastructures import UploadFile
from legato.exceptions import BadRequest, PayloadTooLarge
from legato.requests import Request


def request(body: bytes | list[bytes] = b"", *headers: tuple[str, str],
            max_body_size: int | None = None, **scope: Any) -> tuple[Request, Exchange]:
    exchange = Exchange(body)
    scope.setdefault("method", "POST")
    req = Request(http_scope(headers=headers, **scope), exchange.receive,
                  max_body_size=max_body_size)
    return req, exchange


def websocket_scope() -> dict[str, Any]:
    scope = http_scope("/chat", headers=[("host", "example.com"), ("cookie", "a=1")],
                       query_string=b"room=7", scheme="ws")
    scope["type"] = "websocket"
    del scope["method"]
    return scope


# --------------------------------------------------------------------------- facts


def test_request_exposes_the_facts_of_the_scope() -> None:
    req, _ = request(b"", ("Host", "example.com:8080"), ("Cookie", "sid=abc; theme=dark"),
                     path="/items/3", query_string=b"q=a+b&q=c", method="PUT")
    assert req.method == "PUT"
    assert req.path == "/items/3"
    assert req.headers["host"] == "example.com:8080"
    assert req.query_params.getlist("q") == ["a b", "c"]
    assert req.cookies == {"sid": "abc", "theme": "dark"}
    assert req.client == ("127.0.0.1", 50000)
    assert req.url == "http://example.com:8080/items/3?q=a+b&q=c"
    assert repr(req) == "Request(PUT '/items/3')"


def test_request_on_a_websocket_scope_has_every_fact_and_an_empty_body() -> None:
    req = Request(websocket_scope())
    assert req.method == "GET"
    assert req.url == "ws://example.com/chat?room=7"
    assert req.cookies == {"a": "1"}
    assert run(req.body()) == b""
    assert run(_collect(req)) == []


def test_request_on_a_websocket_scope_never_reads_websocket_messages() -> None:
    exchange = Exchange(b"not a body")
    req = Request(websocket_scope(), exchange.receive)
    assert run(req.body()) == b""
    assert exchange.receive_calls == 0


def test_state_is_shared_by_every_request_over_the_same_scope() -> None:
    scope = http_scope()
    Request(scope).state.user = "ada"
    assert Request(scope).state.user == "ada"


# ---------------------------------------------------------------------------- body


def test_body_joins_the_chunks_as_they_arrive() -> None:
    req, _ = request([b"ab", b"", b"cd"])
    assert run(req.body()) == b"abcd"


def test_body_is_read_once_and_kept_for_later_calls_and_other_requests() -> None:
    req, exchange = request(b"payload")
    assert run(req.body()) == b"payload"
    assert run(req.body()) == b"payload"
    assert exchange.receive_calls == 1
    assert run(Request(req.scope, exchange.receive).body()) == b"payload"
    assert exchange.receive_calls == 1


def test_a_request_without_receive_does_not_hide_the_body_from_one_with_it() -> None:
    req, exchange = request(b"payload")
    assert run(Request(req.scope).body()) == b""
    assert run(req.body()) == b"payload"


def test_body_over_max_body_size_by_content_length_is_refused_before_reading() -> None:
    req, exchange = request(b"x" * 11, ("content-length", "11"), max_body_size=10)
    with pytest.raises(PayloadTooLarge) as caught:
        run(req.body())
    assert caught.value.status_code == 413
    assert "10 bytes" in str(caught.value.detail)
    assert exchange.receive_calls == 0


def test_body_over_max_body_size_without_content_length_is_refused_as_it_arrives() -> None:
    req, exchange = request([b"x" * 6, b"x" * 6, b"x" * 6], max_body_size=10)
    with pytest.raises(PayloadTooLarge):
        run(req.body())
    assert exchange.receive_calls == 2


def test_body_of_exactly_max_body_size_is_accepted() -> None:
    req, _ = request(b"x" * 10, ("content-length", "10"), max_body_size=10)
    assert run(req.body()) == b"x" * 10


def test_client_leaving_before_the_end_of_the_body_is_a_bad_request() -> None:
    req, exchange = request([b"part", b"never"])

    async def read_then_drop() -> bytes:
        iterator = req.stream()
        first = await iterator.__anext__()
        exchange.chunks.clear()
        exchange.disconnect()
        await iterator.__anext__()
        return first  # pragma: no cover - the second chunk raises

    with pytest.raises(BadRequest, match="disconnected"):
        run(read_then_drop())


# -------------------------------------------------------------------------- stream


async def _collect(req: Request) -> list[bytes]:
    return [chunk async for chunk in req.stream()]


def test_stream_yields_chunks_in_order_without_keeping_them() -> None:
    req, _ = request([b"a", b"", b"b", b"c"])
    assert run(_collect(req)) == [b"a", b"b", b"c"]
    assert "legato.body" not in req.scope


def test_stream_a_second_time_is_a_runtime_error() -> None:
    req, _ = request(b"abc")
    run(_collect(req))
    with pytest.raises(RuntimeError, match="already streamed"):
        run(_collect(req))
    with pytest.raises(RuntimeError, match="already streamed"):
        run(req.body())


def test_stream_after_body_yields_the_kept_body() -> None:
    req, _ = request([b"a", b"b"])
    run(req.body())
    assert run(_collect(req)) == [b"ab"]


def test_stream_enforces_max_body_size() -> None:
    req, _ = request([b"x" * 8, b"x" * 8], max_body_size=10)
    with pytest.raises(PayloadTooLarge):
        run(_collect(req))


# ---------------------------------------------------------------------------- json


def test_json_parses_the_body_once() -> None:
    req, _ = request(b'{"a": [1, 2.5, null], "b": "\xc3\xa9"}')
    assert run(req.json()) == {"a": [1, 2.5, None], "b": "é"}
    assert run(req.json()) is run(req.json())


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"[1,]", b"\xff\xfe", b"1 2"])
def test_invalid_json_is_a_bad_request_that_says_so(body: bytes) -> None:
    req, _ = request(body)
    with pytest.raises(BadRequest, match="not valid JSON") as caught:
        run(req.json())
    assert caught.value.status_code == 400


def test_empty_body_is_a_bad_request_for_json() -> None:
    req, _ = request(b"")
    with pytest.raises(BadRequest, match="empty"):
        run(req.json())


# ---------------------------------------------------------------------------- forms

URLENCODED = ("content-type", "application/x-www-form-urlencoded")


def test_urlencoded_form_decodes_plus_percent_repeats_and_blanks() -> None:
    req, _ = request(b"name=Ada+Lovelace&city=Z%C3%BCrich&tag=a&tag=b&empty=", URLENCODED)
    form = run(req.form())
    assert form["name"] == "Ada Lovelace"
    assert form["city"] == "Zürich"
    assert form.getlist("tag") == ["a", "b"]
    assert form["empty"] == ""
    assert run(req.form()) is form


def test_urlencoded_form_accepts_a_charset_parameter_and_raw_utf8() -> None:
    req, _ = request("city=Zürich".encode(),
                     ("content-type", "application/x-www-form-urlencoded; charset=UTF-8"))
    assert run(req.form())["city"] == "Zürich"


@pytest.mark.parametrize("body", [b"a=%ff", b"a=\xff"])
def test_urlencoded_form_that_is_not_utf8_is_a_bad_request(body: bytes) -> None:
    req, _ = request(body, URLENCODED)
    with pytest.raises(BadRequest, match="UTF-8"):
        run(req.form())


def test_urlencoded_form_with_too_many_fields_is_a_bad_request() -> None:
    req, _ = request(b"&".join(b"f%d=1" % i for i in range(11)), URLENCODED)
    with pytest.raises(BadRequest, match="more than 10 form fields"):
        run(req.form(max_fields=10))


def multipart_request(data: dict[str, str], files: dict[str, Any]
                      ) -> tuple[Request, Exchange]:
    # httpx encodes the body: an encoder nobody here wrote.
    encoded = httpx.Request("POST", "http://test/", data=data, files=files)
    return request(encoded.read(), ("content-type", encoded.headers["content-type"]))


def test_multipart_form_gives_text_fields_and_upload_files() -> None:
    req, _ = multipart_request({"title": "Zürich"},
                               {"photo": ("café.png", b"\x89PNG\r\n\x1a\n", "image/png")})
    form = run(req.form())
    assert form["title"] == "Zürich"
    upload = form["photo"]
    assert isinstance(upload, UploadFile)
    assert upload.filename == "café.png"
    assert upload.content_type == "image/png"
    assert run(upload.read()) == b"\x89PNG\r\n\x1a\n"


def test_multipart_boundary_may_be_quoted() -> None:
    body = b'--x y\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x y--\r\n'
    req, _ = request(body, ("content-type", 'multipart/form-data; boundary="x y"'))
    assert run(req.form())["a"] == "1"


def test_malformed_multipart_body_is_a_bad_request() -> None:
    body = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nno closing boundary'
    req, _ = request(body, ("content-type", "multipart/form-data; boundary=xyz"))
    with pytest.raises(BadRequest, match="malformed multipart body"):
        run(req.form())


def test_multipart_without_a_boundary_is_a_bad_request() -> None:
    req, _ = request(b"", ("content-type", "multipart/form-data"))
    with pytest.raises(BadRequest, match="boundary"):
        run(req.form())


@pytest.mark.parametrize("headers", [[("content-type", "application/json")], [],
                                     [("content-type", 'text/plain; charset="unterminated')]])
def test_form_with_another_content_type_is_a_bad_request_naming_the_accepted_ones(
        headers: list[tuple[str, str]]) -> None:
    req, _ = request(b"a=1", *headers)
    with pytest.raises(BadRequest) as caught:
        run(req.form())
    detail = str(caught.value.detail)
    assert "application/x-www-form-urlencoded" in detail
    assert "multipart/form-data" in detail
