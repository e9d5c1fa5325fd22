"""The event-stream parser (WHATWG HTML §9.2.6 "Interpreting an event stream"), without
I/O: line endings, fields, ids, comments, limits, and its contract under hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legato.client.eventstream import Event, EventStreamError, EventStreamParser


def parse(*chunks: bytes, max_size: int = 1000) -> list[Event]:
    parser = EventStreamParser(max_size)
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_9_2_6_data_lines_join_with_lf_and_a_blank_line_dispatches() -> None:
    assert parse(b"id: c.1\ndata: {\"a\":\ndata: 1}\n\n") == [Event('{"a":\n1}', "c.1")]


def test_9_2_6_lines_end_with_crlf_lf_or_cr_even_split_between_chunks() -> None:
    assert parse(b"data: a\r", b"\ndata: b\r\r", b"data: c\n\n") == [
        Event("a\nb", ""), Event("c", "")]


def test_9_2_6_comments_and_unknown_fields_are_ignored_and_one_leading_space_dropped() -> None:
    assert parse(b": keepalive\n\nfoo: bar\ndata:x\ndata:  y\n\n") == [Event("x\n y", "")]


def test_9_2_6_the_id_persists_and_counts_without_data_and_nul_ids_are_ignored() -> None:
    parser = EventStreamParser()
    assert parser.feed(b"id: c.7\n\n") == []
    assert parser.last_id == "c.7"
    assert parser.feed(b"id: bad\0id\ndata: x\n\n") == [Event("x", "c.7")]


def test_9_2_6_retry_takes_digits_only_and_a_leading_bom_is_dropped() -> None:
    parser = EventStreamParser()
    parser.feed(b"\xef\xbb\xbfretry: 1000\nretry: 5s\n\n")
    assert parser.retry_ms == 1000


def test_multibyte_characters_split_between_chunks_decode() -> None:
    encoded = "data: é€\n\n".encode()
    assert parse(encoded[:7], encoded[7:9], encoded[9:]) == [Event("é€", "")]


def test_a_line_that_never_ends_or_an_event_too_long_fails_at_max_size() -> None:
    with pytest.raises(EventStreamError):
        parse(b"data: " + b"x" * 2000)
    with pytest.raises(EventStreamError):
        parse(*[b"data: " + b"x" * 100 + b"\n" for _ in range(20)])


def test_bytes_that_are_not_utf8_fail() -> None:
    with pytest.raises(EventStreamError):
        parse(b"data: \xff\n\n")


_ID = st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",))
_DATA = st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))


@given(st.lists(st.tuples(st.text(_ID, max_size=20),
                          st.lists(st.text(_DATA, max_size=20), min_size=1, max_size=3)),
                max_size=5),
       st.sampled_from(["\n", "\r\n", "\r"]), st.data())
def test_any_split_of_a_stream_gives_the_events_it_encodes(
        events: list[tuple[str, list[str]]], eol: str, data: st.DataObject) -> None:
    text = "".join(f"id: {i}{eol}" + "".join(f"data: {d}{eol}" for d in ds) + eol
                   for i, ds in events)
    raw = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    # a CR at the very end waits for the next byte (it may be a CRLF): give it one
    assert parse(*chunks, b"\n", max_size=10_000) == [Event("\n".join(ds), i) for i, ds in events]


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_any_bytes_give_events_or_an_event_stream_error(chunks: list[bytes]) -> None:
    parser = EventStreamParser(256)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event.data, str) and "\0" not in event.id
    except EventStreamError:
        pass
