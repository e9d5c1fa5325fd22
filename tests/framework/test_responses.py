"""Responses as ASGI apps (SPEC H2, H6): bodies, headers, cookies, HEAD and bodiless
statuses, redirects, streaming, and what handlers' return values become."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone

import pytest
from asgi_calls import Exchange, call, http_scope, run

from legato.datastructures import MutableHeaders, parse_cookies
from legato.exceptions import HTTPError, MethodNotAllowed, NotFound
from legato.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
    error_response,
    server_error_response,
    to_response,
)

# --------------------------------------------------------------------------- bodies


def test_response_sends_its_bytes_with_a_content_length() -> None:
    sent = call(Response(b"hello", media_type="application/octet-stream"))
    assert sent.status == 200
    assert sent.body == b"hello"
    assert sent.header("content-length") == "5"
    assert sent.header("content-type") == "application/octet-stream"


def test_response_encodes_str_content_as_utf8() -> None:
    sent = call(Response("é", media_type="text/plain"))
    assert sent.body == "é".encode()
    assert sent.header("content-type") == "text/plain; charset=utf-8"


def test_response_without_media_type_sends_no_content_type() -> None:
    sent = call(Response(b"x"))
    assert sent.header("content-type") is None


def test_response_refuses_content_that_is_not_text_or_bytes() -> None:
    with pytest.raises(TypeError, match="JSONResponse"):
        Response({"a": 1})


def test_html_response_declares_utf8_html() -> None:
    sent = call(HTMLResponse("<p>hi</p>"))
    assert sent.header("content-type") == "text/html; charset=utf-8"
    assert sent.body == b"<p>hi</p>"


def test_plain_text_response_declares_utf8_text() -> None:
    assert call(PlainTextResponse("hi")).header("content-type") == "text/plain; charset=utf-8"


def test_json_response_is_compact_json_without_a_charset() -> None:
    sent = call(JSONResponse({"a": [1, 2], "é": None}, status_code=201))
    assert sent.status == 201
    assert sent.body == '{"a":[1,2],"é":null}'.encode()
    assert sent.header("content-type") == "application/json"


def test_json_response_of_none_is_null() -> None:
    assert JSONResponse(None).body == b"null"


def test_json_response_refuses_values_json_cannot_express() -> None:
    with pytest.raises(TypeError):
        JSONResponse({"a": object()})


def test_an_explicit_content_type_header_wins_over_the_media_type() -> None:
    sent = call(HTMLResponse("x", headers={"Content-Type": "text/x-custom"}))
    assert sent.header_all("content-type") == ["text/x-custom"]


def test_content_length_describes_the_body_even_when_set_by_hand() -> None:
    response = Response(b"abc", headers={"content-length": "99"})
    assert call(response).header_all("content-length") == ["3"]


def test_body_changed_after_construction_gets_the_right_content_length() -> None:
    response = Response(b"abc")
    response.body = b"abcdef"
    sent = call(response)
    assert sent.header("content-length") == "6"
    assert sent.body == b"abcdef"


# ----------------------------------------------- RFC 9110 §9.3.2 HEAD, §6.4.1 no body


def test_head_request_gets_the_headers_and_content_length_but_no_body() -> None:
    sent = call(HTMLResponse("<p>hello</p>"), http_scope(method="HEAD"))
    assert sent.header("content-length") == "12"
    assert sent.header("content-type") == "text/html; charset=utf-8"
    assert sent.body == b""


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_status_sends_no_body_no_content_type_no_length(status: int) -> None:
    sent = call(HTMLResponse("ignored", status_code=status, headers={"etag": '"x"'}))
    assert sent.status == status
    assert sent.body == b""
    assert sent.header("content-type") is None
    assert sent.header("content-length") is None
    assert sent.header("etag") == '"x"'


# ------------------------------------------------------------------------- headers


def test_headers_are_case_insensitive_and_mutable() -> None:
    response = Response(headers={"X-A": "1"})
    response.headers["x-b"] = "2"
    assert response.headers["x-a"] == "1"
    assert "X-B" in response.headers
    assert response.headers.get("x-missing") is None
    del response.headers["X-A"]
    assert "x-a" not in response.headers
    sent = call(response)
    assert sent.header("x-b") == "2"
    assert sent.header("x-a") is None


def test_setting_a_header_replaces_every_field_of_that_name_in_place() -> None:
    headers = MutableHeaders([("a", "1"), ("vary", "x"), ("b", "2"), ("Vary", "y")])
    headers["VARY"] = "z"
    assert headers.raw_items() == [("a", "1"), ("VARY", "z"), ("b", "2")]


def test_headers_accept_a_list_of_pairs_and_keep_repeats() -> None:
    headers = MutableHeaders([("vary", "a"), ("Vary", "b")])
    assert headers.get_all("VARY") == ["a", "b"]
    assert len(headers) == 1
    assert list(headers) == ["vary"]


def test_deleting_a_missing_header_raises_key_error() -> None:
    with pytest.raises(KeyError):
        del MutableHeaders()["x"]


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\x00b"])
def test_header_values_with_cr_lf_or_nul_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        Response(headers={"x-a": value})
    response = Response()
    with pytest.raises(ValueError):
        response.headers["x-a"] = value
    with pytest.raises(ValueError):
        response.headers.append("x-a", value)
    with pytest.raises(ValueError):
        RedirectResponse("/", headers=[("x-a", value)])


@pytest.mark.parametrize("name", ["", "a b", "a:b", "é", "x\r\n"])
def test_header_names_that_are_not_tokens_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        MutableHeaders({name: "v"})


def test_header_values_outside_latin1_are_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="percent-encode"):
        MutableHeaders({"x-a": "€"})


# ------------------------------------------------------------- RFC 6265 cookies


def test_set_cookie_adds_one_set_cookie_line_per_cookie() -> None:
    response = Response()
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", max_age=60, domain="example.com", secure=True,
                        httponly=True, samesite="strict", path="/app")
    lines = call(response).header_all("set-cookie")
    assert lines == [
        "a=1; Path=/; SameSite=Lax",
        "b=2; Max-Age=60; Path=/app; Domain=example.com; Secure; HttpOnly; SameSite=Strict",
    ]


def test_set_cookie_formats_expires_as_an_http_date() -> None:
    response = Response()
    response.set_cookie("a", expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    response.set_cookie("b", expires=3600, samesite=None)
    first, second = response.headers.get_all("set-cookie")
    assert "Expires=Wed, 02 Jan 2030 03:04:05 GMT" in first
    assert second.startswith("b=; Expires=") and second.endswith(" GMT; Path=/")


def test_cookie_values_made_of_cookie_octets_are_not_quoted() -> None:
    response = Response()
    response.set_cookie("a", "b64==.x/y:z")
    assert response.headers["set-cookie"].startswith("a=b64==.x/y:z;")


def test_cookie_values_with_separators_are_quoted_and_read_back() -> None:
    response = Response()
    response.set_cookie("a", 'x y;"z"')
    line = response.headers["set-cookie"]
    pair = line.split("; Path")[0]
    assert parse_cookies(pair) == {"a": 'x y;"z"'}


def test_delete_cookie_expires_it_on_the_same_path_and_domain() -> None:
    response = Response()
    response.delete_cookie("sid", path="/app", domain="example.com")
    line = response.headers["set-cookie"]
    assert line.startswith("sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert "Path=/app" in line and "Domain=example.com" in line


@pytest.mark.parametrize("kwargs", [{"key": "a b"}, {"key": "a;b"}, {"key": ""},
                                    {"key": "a", "samesite": "sometimes"},
                                    {"key": "a", "path": "/; Domain=evil"},
                                    {"key": "a", "domain": "x\r\nSet-Cookie: b=1"}])
def test_set_cookie_refuses_names_and_attributes_that_would_break_the_header(
        kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Response().set_cookie(**kwargs)


# -------------------------------------------------------------------- redirects


def test_redirect_defaults_to_307_with_a_location_and_no_body() -> None:
    sent = call(RedirectResponse("/next?a=1#top"))
    assert sent.status == 307
    assert sent.header("location") == "/next?a=1#top"
    assert sent.body == b""
    assert sent.header("content-length") == "0"


def test_redirect_accepts_another_status() -> None:
    assert call(RedirectResponse("/", status_code=303)).status == 303


def test_redirect_percent_encodes_cr_lf_so_no_header_can_be_injected() -> None:
    response = RedirectResponse("/a\r\nSet-Cookie: evil=1\x00")
    assert response.headers["location"] == "/a%0D%0ASet-Cookie:%20evil=1%00"


def test_redirect_percent_encodes_non_ascii_and_keeps_existing_escapes() -> None:
    response = RedirectResponse("https://example.com/caf%C3%A9/ü?q=a b")
    assert response.headers["location"] == "https://example.com/caf%C3%A9/%C3%BC?q=a%20b"


# -------------------------------------------------------------------- streaming


async def numbers(count: int) -> AsyncIterator[str]:
    for i in range(count):
        yield f"{i},"


def test_streaming_response_sends_each_chunk_without_a_content_length() -> None:
    sent = call(StreamingResponse(numbers(3), media_type="text/plain"))
    assert sent.header("content-length") is None
    assert sent.header("content-type") == "text/plain; charset=utf-8"
    assert [m["body"] for m in sent.body_messages] == [b"0,", b"1,", b"2,", b""]
    assert [m.get("more_body", False) for m in sent.body_messages] == [True, True, True, False]


def test_streaming_response_without_media_type_sends_no_content_type() -> None:
    assert call(StreamingResponse(numbers(1))).header("content-type") is None


def test_streaming_response_keeps_a_content_length_set_by_hand() -> None:
    sent = call(StreamingResponse([b"ab", b"c"], headers={"content-length": "3"}))
    assert sent.header("content-length") == "3"
    assert sent.body == b"abc"


def test_streaming_response_skips_empty_chunks_that_would_end_a_chunked_body() -> None:
    sent = call(StreamingResponse([b"a", b"", "", b"b"]))
    assert [m["body"] for m in sent.body_messages] == [b"a", b"b", b""]


def test_streaming_response_treats_bytes_content_as_one_chunk() -> None:
    sent = call(StreamingResponse(b"abc"))
    assert [m["body"] for m in sent.body_messages] == [b"abc", b""]


def test_streaming_response_runs_a_sync_generator_in_a_worker_thread() -> None:
    import threading

    threads: list[str] = []

    def blocking() -> Iterator[bytes]:
        for chunk in (b"a", b"b"):
            threads.append(threading.current_thread().name)
            yield chunk

    sent = call(StreamingResponse(blocking()))
    assert sent.body == b"ab"
    assert threading.main_thread().name not in threads


def test_streaming_response_refuses_chunks_that_are_not_text_or_bytes() -> None:
    async def bad() -> AsyncIterator[object]:
        yield 1

    exchange = Exchange()
    with pytest.raises(TypeError, match="str or bytes"):
        run(StreamingResponse(bad())(http_scope(), exchange.receive, exchange.send))  # type: ignore[arg-type]


def test_streaming_response_to_head_sends_no_body_and_closes_the_generator() -> None:
    generator = numbers(3)
    sent = call(StreamingResponse(generator), http_scope(method="HEAD"))
    assert sent.body == b""
    assert generator.ag_frame is None  # closed, not left for the garbage collector


def test_streaming_stops_and_closes_the_generator_when_the_client_disconnects() -> None:
    cleaned_up = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await asyncio.sleep(0)
        finally:
            cleaned_up.set()

    exchange = Exchange(disconnect_after_sends=4)  # start + 3 chunks, then the peer goes
    run(StreamingResponse(endless())(http_scope(), exchange.receive, exchange.send))
    assert cleaned_up.is_set()
    assert 4 <= len(exchange.messages) < 10


def test_streaming_closes_a_sync_generator_when_the_client_disconnects() -> None:
    finished = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"tick"
        finally:
            finished.append(True)

    exchange = Exchange(disconnect_after_sends=3)
    run(StreamingResponse(endless())(http_scope(), exchange.receive, exchange.send))
    assert finished == [True]


def test_streaming_propagates_an_error_raised_by_the_generator() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"a"
        raise LookupError("boom")

    exchange = Exchange()
    with pytest.raises(LookupError, match="boom"):
        run(StreamingResponse(failing())(http_scope(), exchange.receive, exchange.send))


# ----------------------------------------------------------- SPEC H2 return values


def test_a_returned_response_is_sent_as_it_is() -> None:
    response = PlainTextResponse("x")
    assert to_response(response) is response


def test_a_returned_str_is_html() -> None:
    response = to_response("<h1>hi</h1>")
    assert isinstance(response, HTMLResponse)
    assert response.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("value", [{"a": 1}, [1, "two"]])
def test_a_returned_dict_or_list_is_json(value: object) -> None:
    response = to_response(value)
    assert isinstance(response, JSONResponse)
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("value", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
def test_returned_bytes_are_an_octet_stream(value: bytes) -> None:
    response = to_response(value)
    assert response.body == b"\x00\x01"
    assert response.headers["content-type"] == "application/octet-stream"


def test_returning_none_answers_204() -> None:
    sent = call(to_response(None))
    assert sent.status == 204
    assert sent.body == b""


def test_a_returned_async_generator_streams_html() -> None:
    response = to_response(numbers(2))
    assert isinstance(response, StreamingResponse)
    sent = call(response)
    assert sent.body == b"0,1,"
    assert sent.header("content-type") == "text/html; charset=utf-8"
    assert sent.header("content-length") is None


@pytest.mark.parametrize("value", [42, 1.5, True, ("a",), object()])
def test_returning_anything_else_is_a_type_error_listing_what_works(value: object) -> None:
    with pytest.raises(TypeError, match="return str, bytes, a dict or list"):
        to_response(value)


# ----------------------------------------------------------------- SPEC H6 errors


def test_http_error_with_text_detail_answers_plain_text() -> None:
    sent = call(error_response(HTTPError(418, "short and stout")))
    assert sent.status == 418
    assert sent.body == b"short and stout"
    assert sent.header("content-type") == "text/plain; charset=utf-8"


def test_http_error_without_detail_answers_the_status_phrase() -> None:
    assert call(error_response(NotFound())).body == b"Not Found"


def test_http_error_with_dict_detail_answers_json() -> None:
    sent = call(error_response(HTTPError(422, {"field": "name"})))
    assert sent.status == 422
    assert sent.body == b'{"field":"name"}'
    assert sent.header("content-type") == "application/json"


def test_http_error_headers_are_added_to_the_answer() -> None:
    sent = call(error_response(MethodNotAllowed(headers={"Allow": "GET"})))
    assert sent.status == 405
    assert sent.header("allow") == "GET"


def test_unhandled_error_without_debug_shows_no_internals() -> None:
    try:
        raise RuntimeError("secret path /etc/app.conf")
    except RuntimeError as exc:
        sent = call(server_error_response(exc, debug=False))
    assert sent.status == 500
    assert sent.body == b"Internal Server Error"
    assert sent.header("content-type") == "text/plain; charset=utf-8"


def test_unhandled_error_with_debug_shows_the_escaped_traceback() -> None:
    try:
        raise ValueError("<script>alert(1)</script>")
    except ValueError as exc:
        sent = call(server_error_response(exc, debug=True))
    assert sent.status == 500
    assert sent.header("content-type") == "text/html; charset=utf-8"
    page = sent.body.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Traceback (most recent call last)" in page
    assert "test_unhandled_error_with_debug_shows_the_escaped_traceback" in page
