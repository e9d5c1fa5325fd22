"""The multipart/form-data parser (RFC 7578 on RFC 2046 §5.1): what it accepts, each
malformation it refuses with ValueError, and a fuzzed contract — any input yields a
FormData or a ValueError, nothing else."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.datastructures import FormData, UploadFile
from legato.multipart import parse_header_params, parse_multipart


def part(headers: str, content: bytes) -> bytes:
    return headers.encode() + b"\r\n\r\n" + content


def body(*parts: bytes, boundary: bytes = b"B", preamble: bytes = b"",
         epilogue: bytes = b"") -> bytes:
    out = preamble
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--" + epilogue


def field(name: str, value: bytes) -> bytes:
    return part(f'Content-Disposition: form-data; name="{name}"', value)


# -------------------------------------------------------------------- accepted


def test_text_fields_are_decoded_as_utf8() -> None:
    form = parse_multipart(body(field("a", b"1"), field("b", "é".encode())), "B")
    assert dict(form) == {"a": "1", "b": "é"}


def test_repeated_fields_keep_every_value() -> None:
    form = parse_multipart(body(field("t", b"x"), field("t", b"y")), "B")
    assert form.getlist("t") == ["x", "y"]
    assert form["t"] == "y"


def test_file_parts_become_upload_files_with_their_headers() -> None:
    form = parse_multipart(body(part(
        'Content-Disposition: form-data; name="f"; filename="notes.txt"\r\n'
        "Content-Type: text/plain\r\nX-Extra: 1", b"line 1\r\nline 2\r\n")), "B")
    upload = form["f"]
    assert isinstance(upload, UploadFile)
    assert (upload.filename, upload.content_type, upload.size) == ("notes.txt",
                                                                    "text/plain", 16)
    assert upload.headers["x-extra"] == "1"


def test_file_part_without_content_type_is_an_octet_stream() -> None:
    form = parse_multipart(body(part(
        'Content-Disposition: form-data; name="f"; filename=""', b"")), "B")
    assert form["f"].content_type == "application/octet-stream"
    assert form["f"].filename == ""


def test_raw_utf8_file_names_are_read_as_browsers_send_them() -> None:
    form = parse_multipart(body(part(
        'Content-Disposition: form-data; name="f"; filename="café.txt"', b"x")), "B")
    assert form["f"].filename == "café.txt"


def test_rfc_8187_filename_star_wins_over_filename() -> None:
    form = parse_multipart(body(part(
        "Content-Disposition: form-data; name=\"f\"; filename=\"cafe.txt\"; "
        "filename*=UTF-8''caf%C3%A9.txt", b"x")), "B")
    assert form["f"].filename == "café.txt"


def test_preamble_epilogue_and_transport_padding_are_skipped() -> None:
    data = (b"ignored preamble\r\n--B  \t\r\n" + field("a", b"1")
            + b"\r\n--B--\r\nignored epilogue")
    assert dict(parse_multipart(data, "B")) == {"a": "1"}


def test_content_that_resembles_the_boundary_is_kept() -> None:
    content = b"--B\r\n--Bx\r\n\r\n--"
    data = body(field("a", content), boundary=b"Bx-long")
    assert parse_multipart(data, "Bx-long")["a"] == content.decode()


def test_binary_content_is_kept_byte_for_byte() -> None:
    content = bytes(range(256)) * 3
    form = parse_multipart(body(part(
        'Content-Disposition: form-data; name="f"; filename="b.bin"', content)), "B")
    assert form["f"]._data == content


def test_a_part_charset_decodes_its_text() -> None:
    form = parse_multipart(body(part(
        'Content-Disposition: form-data; name="a"\r\nContent-Type: text/plain; '
        "charset=iso-8859-1", "é".encode("latin-1"))), "B")
    assert form["a"] == "é"


def test_a_body_of_only_the_closing_boundary_is_an_empty_form() -> None:
    assert len(parse_multipart(b"--B--\r\n", "B")) == 0


def test_a_body_encoded_by_httpx_parses_back_to_its_fields() -> None:
    request = httpx.Request("POST", "http://test/", data={"a": "1", "b": ["x", "y"]},
                            files={"f": ("data.bin", b"\x00\r\n--\xff", "application/x-raw")})
    boundary = request.headers["content-type"].split("boundary=")[1]
    form = parse_multipart(request.read(), boundary)
    assert form["a"] == "1"
    assert form.getlist("b") == ["x", "y"]
    assert form["f"]._data == b"\x00\r\n--\xff"


def test_header_params_unquote_and_lower_case_names() -> None:
    assert parse_header_params('Form-Data; NAME="a \\"b\\""; x=1;') == (
        "form-data", {"name": 'a "b"', "x": "1"})


@pytest.mark.parametrize("value", ['a; b="unterminated', "a; =1", 'a; b="x"y'])
def test_header_params_with_bad_syntax_raise_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_header_params(value)


# -------------------------------------------------------------------- refused

MALFORMED = {
    "boundary not in the body": b"hello",
    "no closing boundary": b"--B\r\n" + field("a", b"1"),
    "garbage after the boundary": b"--Bjunk\r\n" + field("a", b"1") + b"\r\n--B--",
    "headers without a blank line": b"--B\r\nContent-Disposition: form-data\r\n--B--",
    "no content-disposition": body(part("Content-Type: text/plain", b"1")),
    "not form-data": body(part('Content-Disposition: attachment; name="a"', b"1")),
    "no name": body(part("Content-Disposition: form-data", b"1")),
    "header line without a colon": body(part('Content-Disposition: form-data; name="a"\r\n'
                                             "oops", b"1")),
    "folded header line": body(part('Content-Disposition: form-data;\r\n name="a"', b"1")),
    "text field that is not utf-8": body(field("a", b"\xff")),
    "unknown charset": body(part('Content-Disposition: form-data; name="a"\r\nContent-Type:'
                                 " text/plain; charset=no-such-codec", b"1")),
    "bad filename star": body(part("Content-Disposition: form-data; name=\"f\"; "
                                   "filename*=no-quotes", b"1")),
    "undecodable filename star": body(part("Content-Disposition: form-data; name=\"f\"; "
                                           "filename*=UTF-8''%FF", b"1")),
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_bodies_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_multipart(data, "B")


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends-in-space ", "bad\"quote", "é"])
def test_boundaries_outside_rfc_2046_are_refused(boundary: str) -> None:
    with pytest.raises(ValueError, match="invalid multipart boundary"):
        parse_multipart(b"", boundary)


def test_seventy_character_boundary_is_accepted() -> None:
    boundary = "b" * 70
    assert parse_multipart(body(field("a", b"1"), boundary=boundary.encode()),
                           boundary)["a"] == "1"


def test_more_parts_than_the_limit_are_refused() -> None:
    data = body(*(field(f"f{i}", b"") for i in range(4)))
    assert len(parse_multipart(data, "B", max_parts=4)) == 4
    with pytest.raises(ValueError, match="more than 3 parts"):
        parse_multipart(data, "B", max_parts=3)


def test_part_headers_over_the_limit_are_refused() -> None:
    data = body(part('Content-Disposition: form-data; name="a"\r\nX-Pad: ' + "p" * 200,
                     b"1"))
    assert parse_multipart(data, "B")["a"] == "1"
    with pytest.raises(ValueError, match="too long"):
        parse_multipart(data, "B", max_part_head=100)


# ------------------------------------------------------ fuzz: STYLE 12 contract

VALID = body(field("a", b"1"), part('Content-Disposition: form-data; name="f"; '
                                     'filename="x.bin"\r\nContent-Type: a/b', b"\x00\xff"))


def _accepts_or_refuses(data: bytes, boundary: str = "B") -> None:
    try:
        result = parse_multipart(data, boundary)
    except ValueError:
        return
    assert isinstance(result, FormData)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.text(max_size=12))
def test_any_bytes_and_boundary_give_a_form_or_a_value_error(data: bytes,
                                                              boundary: str) -> None:
    _accepts_or_refuses(data, boundary)
    _accepts_or_refuses(b"--B\r\n" + data, "B")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID)), st.integers(0, 40), st.binary(max_size=20))
def test_any_splice_of_a_valid_body_gives_a_form_or_a_value_error(
        at: int, cut: int, insert: bytes) -> None:
    _accepts_or_refuses(VALID[:at] + insert + VALID[at + cut:])
