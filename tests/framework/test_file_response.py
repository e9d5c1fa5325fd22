"""FileResponse (SPEC H3): content types, validators and conditional requests (RFC 9110
§8.8, §13), byte ranges (§14), HEAD, chunked reads and Content-Disposition (RFC 6266)."""

from __future__ import annotations

import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest
from asgi_calls import Exchange, call, http_scope, run

from legato.responses import FileResponse, content_disposition, parse_range, resolve_range

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def get(path: Path, *headers: tuple[str, str], method: str = "GET", **kwargs: object
        ) -> Exchange:
    return call(FileResponse(path, **kwargs), http_scope(method=method, headers=headers))  # type: ignore[arg-type]


# -------------------------------------------------------------- content and types


def test_file_is_sent_whole_with_its_length_and_accept_ranges(data_file: Path) -> None:
    sent = get(data_file)
    assert sent.status == 200
    assert sent.body == DATA
    assert sent.header("content-length") == "1024"
    assert sent.header("accept-ranges") == "bytes"
    assert sent.header("content-type") == "application/octet-stream"


@pytest.mark.parametrize(("name", "content_type"), [
    ("site.css", "text/css; charset=utf-8"),
    ("page.html", "text/html; charset=utf-8"),
    ("logo.png", "image/png"),
    ("data.json", "application/json"),
    ("notes.unknownext", "application/octet-stream"),
    ("site.css.gz", "application/octet-stream"),  # no Content-Encoding: not text/css
])
def test_content_type_is_guessed_from_the_file_name(tmp_path: Path, name: str,
                                                    content_type: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert get(path).header("content-type") == content_type


def test_an_explicit_media_type_overrides_the_guess(data_file: Path) -> None:
    assert get(data_file, media_type="video/mp4").header("content-type") == "video/mp4"


def test_large_file_is_sent_in_64_kib_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    content = os.urandom(200 * 1024 + 7)
    path.write_bytes(content)
    sent = get(path)
    assert sent.body == content
    sizes = [len(m["body"]) for m in sent.body_messages]
    assert sizes == [65536, 65536, 65536, 8199]
    assert [m.get("more_body", False) for m in sent.body_messages] == [True, True, True, False]


def test_empty_file_is_an_empty_200(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    sent = get(path, ("range", "bytes=0-"))
    assert sent.status == 200
    assert sent.body == b""
    assert sent.header("content-length") == "0"


def test_head_sends_the_headers_of_get_without_the_body(data_file: Path) -> None:
    sent = get(data_file, method="HEAD")
    assert sent.status == 200
    assert sent.header("content-length") == "1024"
    assert sent.header("etag") is not None
    assert sent.body == b""


def test_missing_file_is_a_runtime_error_naming_it(tmp_path: Path) -> None:
    exchange = Exchange()
    response = FileResponse(tmp_path / "nope.txt")
    with pytest.raises(RuntimeError, match="nope.txt"):
        run(response(http_scope(), exchange.receive, exchange.send))


def test_a_directory_is_a_runtime_error(tmp_path: Path) -> None:
    exchange = Exchange()
    with pytest.raises(RuntimeError, match="not a regular file"):
        run(FileResponse(tmp_path)(http_scope(), exchange.receive, exchange.send))


# ------------------------------------------------ RFC 9110 §8.8 validators, §13 conditions


def test_etag_and_last_modified_come_from_size_and_mtime(data_file: Path) -> None:
    sent = get(data_file)
    stat = data_file.stat()
    assert sent.header("etag") == f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    assert sent.header("last-modified") == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_etag_changes_when_the_file_changes(data_file: Path) -> None:
    before = get(data_file).header("etag")
    os.utime(data_file, (1_700_000_001, 1_700_000_001))
    assert get(data_file).header("etag") != before


def test_matching_if_none_match_answers_304_with_validators_and_no_body(
        data_file: Path) -> None:
    etag = get(data_file).header("etag")
    assert etag is not None
    sent = get(data_file, ("if-none-match", etag))
    assert sent.status == 304
    assert sent.body == b""
    assert sent.header("etag") == etag
    assert sent.header("content-length") is None
    assert sent.header("content-type") is None


@pytest.mark.parametrize("template", ['W/{etag}', '"other", {etag}', '*'])
def test_if_none_match_uses_weak_comparison_lists_and_star(data_file: Path,
                                                           template: str) -> None:
    etag = get(data_file).header("etag")
    assert get(data_file, ("if-none-match", template.format(etag=etag))).status == 304


def test_if_none_match_that_does_not_match_sends_the_file(data_file: Path) -> None:
    sent = get(data_file, ("if-none-match", '"stale"'))
    assert sent.status == 200
    assert sent.body == DATA


def test_if_modified_since_at_last_modified_answers_304(data_file: Path) -> None:
    last_modified = get(data_file).header("last-modified")
    assert last_modified is not None
    assert get(data_file, ("if-modified-since", last_modified)).status == 304
    assert get(data_file, ("if-modified-since", formatdate(1_700_000_100, usegmt=True))
               ).status == 304


def test_if_modified_since_before_the_change_sends_the_file(data_file: Path) -> None:
    earlier = formatdate(1_699_999_999, usegmt=True)
    assert get(data_file, ("if-modified-since", earlier)).status == 200


@pytest.mark.parametrize("value", ["yesterday", "", "Mon, 99 Foo 2023 99:99:99 GMT",
                                   formatdate(time.time() + 86400, usegmt=True)])
def test_invalid_or_future_if_modified_since_is_ignored(data_file: Path, value: str) -> None:
    assert get(data_file, ("if-modified-since", value)).status == 200


def test_if_none_match_takes_precedence_over_if_modified_since(data_file: Path) -> None:
    # RFC 9110 §13.2.2: when If-None-Match is present, If-Modified-Since is not evaluated.
    sent = get(data_file, ("if-none-match", '"stale"'),
               ("if-modified-since", formatdate(time.time(), usegmt=True)))
    assert sent.status == 200


def test_conditions_are_not_evaluated_for_a_non_200_file_response(data_file: Path) -> None:
    etag = get(data_file).header("etag")
    assert etag is not None
    sent = get(data_file, ("if-none-match", etag), ("range", "bytes=0-1"), status_code=404)
    assert sent.status == 404
    assert sent.body == DATA


# ------------------------------------------------------------- RFC 9110 §14 ranges


@pytest.mark.parametrize(("spec", "start", "stop"), [
    ("bytes=0-4", 0, 5),
    ("bytes=1000-", 1000, 1024),
    ("bytes=-3", 1021, 1024),
    ("bytes=1020-5000", 1020, 1024),  # last-pos past the end is clamped
    ("bytes=-5000", 0, 1024),  # a suffix longer than the file is the whole file
    ("bytes=1023-1023", 1023, 1024),
    ("BYTES = 5-6", 5, 7),  # the unit is case-insensitive
    ("bytes=5-6, ", 5, 7),  # empty list elements are allowed
])
def test_single_range_answers_206_with_content_range(data_file: Path, spec: str,
                                                     start: int, stop: int) -> None:
    sent = get(data_file, ("range", spec))
    assert sent.status == 206
    assert sent.body == DATA[start:stop]
    assert sent.header("content-range") == f"bytes {start}-{stop - 1}/1024"
    assert sent.header("content-length") == str(stop - start)


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_answers_416_with_the_size(data_file: Path, spec: str) -> None:
    sent = get(data_file, ("range", spec))
    assert sent.status == 416
    assert sent.header("content-range") == "bytes */1024"
    assert sent.body == b""


@pytest.mark.parametrize("spec", [
    "bytes=0-1,5-6",  # several ranges: answered with the whole file
    "items=0-1", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2", "bytes=+1-2",
    "bytes=0x1-2", "bytes=1-2-3", "bytes=" + "9" * 30 + "-",
])
def test_multiple_or_malformed_ranges_are_ignored_and_the_file_sent(data_file: Path,
                                                                    spec: str) -> None:
    sent = get(data_file, ("range", spec))
    assert sent.status == 200
    assert sent.body == DATA
    assert sent.header("content-range") is None


def test_range_is_ignored_on_head(data_file: Path) -> None:
    # RFC 9110 §14.2: range handling is defined for GET only.
    sent = get(data_file, ("range", "bytes=0-4"), method="HEAD")
    assert sent.status == 200
    assert sent.header("content-length") == "1024"


def test_if_range_with_the_current_etag_allows_the_range(data_file: Path) -> None:
    etag = get(data_file).header("etag")
    assert etag is not None
    assert get(data_file, ("range", "bytes=0-4"), ("if-range", etag)).status == 206


@pytest.mark.parametrize("if_range", ['"stale"', "W/{etag}", "Thu, 01 Jan 2015 00:00:00 GMT"])
def test_if_range_that_does_not_match_strongly_sends_the_whole_file(
        data_file: Path, if_range: str) -> None:
    etag = get(data_file).header("etag")
    sent = get(data_file, ("range", "bytes=0-4"), ("if-range", if_range.format(etag=etag)))
    assert sent.status == 200
    assert sent.body == DATA


def test_if_range_with_the_exact_last_modified_date_allows_the_range(data_file: Path) -> None:
    last_modified = get(data_file).header("last-modified")
    assert last_modified is not None
    assert get(data_file, ("range", "bytes=0-4"), ("if-range", last_modified)).status == 206


def test_range_spanning_chunks_is_sent_exactly(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    content = os.urandom(300 * 1024)
    path.write_bytes(content)
    sent = get(path, ("range", "bytes=1000-200000"))
    assert sent.status == 206
    assert sent.body == content[1000:200001]


def test_parse_range_reads_first_last_and_suffix_forms() -> None:
    assert parse_range("bytes=0-4, 7-, -3") == [(0, 4), (7, None), (None, 3)]
    assert parse_range("bytes=4-2") is None


def test_resolve_range_clamps_to_the_size_or_reports_unsatisfiable() -> None:
    assert resolve_range((0, 99), 10) == (0, 10)
    assert resolve_range((None, 3), 10) == (7, 10)
    assert resolve_range((10, None), 10) is None
    assert resolve_range((None, 0), 10) is None


# ------------------------------------------------------ RFC 6266 Content-Disposition


def test_filename_sets_an_attachment_disposition_and_the_type(data_file: Path) -> None:
    sent = get(data_file, filename="report.pdf")
    assert sent.header("content-disposition") == 'attachment; filename="report.pdf"'
    assert sent.header("content-type") == "application/pdf"


def test_non_ascii_filename_gets_an_rfc_8187_filename_star() -> None:
    assert content_disposition("attachment", "résumé €.txt") == (
        "attachment; filename=\"r_sum_ _.txt\"; "
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC.txt")


def test_quotes_and_backslashes_in_a_filename_are_escaped() -> None:
    assert content_disposition("inline", 'a"b\\c.txt') == 'inline; filename="a\\"b\\\\c.txt"'


def test_cr_lf_in_a_filename_cannot_reach_the_header(data_file: Path) -> None:
    sent = get(data_file, filename="a\r\nSet-Cookie: x=1.txt")
    value = sent.header("content-disposition")
    assert value is not None and "\r" not in value and "\n" not in value
    assert sent.header("set-cookie") is None
    assert "filename*=UTF-8''a%0D%0ASet-Cookie%3A%20x%3D1.txt" in value
