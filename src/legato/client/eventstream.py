"""A ``text/event-stream`` parser without I/O: bytes in, events out.

It follows the WHATWG HTML Standard, §9.2.6 "Interpreting an event stream": UTF-8 (a
leading BOM dropped), lines end with CRLF, LF or CR; a blank line dispatches the event;
``:`` starts a comment; ``data`` lines are joined with LF; ``id`` sets the last event id
(kept across events, ignored when it holds NUL); ``retry`` is digits only. An event with
no data is not dispatched, but its ``id`` still counts.

The one limit is ``max_size`` (characters of one pending line plus the event's data): a
peer that never ends a line must not grow memory without bound. Past it, or on bytes that
are not UTF-8, :meth:`EventStreamParser.feed` raises :class:`EventStreamError`; the
parser is then unusable (the stream is to be dropped).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["Event", "EventStreamError", "EventStreamParser", "DEFAULT_MAX_EVENT_SIZE"]

#: 1 MiB + 64 KiB: a legato.v1 frame is at most the WebSocket message limit (1 MiB by
#: default); the rest is room for the ``data:`` prefixes and the ``id`` line.
DEFAULT_MAX_EVENT_SIZE = 1024 * 1024 + 64 * 1024

# §9.2.6: end-of-line = ( cr lf / cr / lf )
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: ``id`` is the last event id when it was dispatched."""

    data: str
    id: str
    type: str = "message"


class EventStreamError(ValueError):
    """The stream is not a valid event stream (not UTF-8) or broke ``max_size``."""


class EventStreamParser:
    """Feed it the response body's bytes as they come; it returns whole events."""

    def __init__(self, max_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self.max_size = max_size
        self.last_id = ""
        #: The ``retry`` field's value (ms), None until the server sent one.
        self.retry_ms: int | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._started = False  # the BOM check happens once, on the first character
        self._buffer = ""  # an unfinished line
        self._data: list[str] = []
        self._data_size = 0
        self._type = ""

    def feed(self, data: bytes) -> list[Event]:
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise EventStreamError(f"the event stream is not UTF-8: {exc.reason}") from None
        if not self._started and text:
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        buffer = self._buffer + text
        events: list[Event] = []
        start = 0
        for eol in _EOL.finditer(buffer):
            if eol.group() == "\r" and eol.end() == len(buffer):
                break  # maybe the CR of a CRLF whose LF is in the next chunk
            self._line(buffer[start:eol.start()], events)
            start = eol.end()
        self._buffer = buffer[start:]
        if len(self._buffer) + self._data_size > self.max_size:
            raise EventStreamError(f"an event longer than {self.max_size} characters")
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[0] == ":":
            return  # a comment (the server's keepalive)
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_size += len(value) + 1
            if self._data_size > self.max_size:
                raise EventStreamError(f"an event longer than {self.max_size} characters")
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "event":
            self._type = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        # other field names are ignored (§9.2.6)

    def _dispatch(self, events: list[Event]) -> None:
        if self._data:
            events.append(Event("\n".join(self._data), self.last_id, self._type or "message"))
        self._data = []
        self._data_size = 0
        self._type = ""
