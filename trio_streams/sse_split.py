"""Reading SSE on the client side: whole events out of a byte stream, with their offsets.

A resuming client counts bytes: the offset after the last byte it has is where it resumes
(``GET /v1/stream/C?from=N``). Splitting by bytes, not text, keeps that count exact, and the
split keeps its buffer across reconnects, so an event cut in the middle by a lost
connection is completed by the bytes of the resumed response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_EOL_TEXT = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Event:
    """One whole SSE event and the logical offset just after it (its ``id`` when stamped)."""

    #: The ``data`` lines joined by ``\\n``; ``None`` for an event without data (a comment).
    data: str | None
    #: The ``event`` field; ``"message"`` when absent, as EventSource has it.
    event: str
    #: The ``id`` field, or ``None``.
    id: str | None
    #: Logical offset just after this event: resume here to get the events after it.
    offset: int
    raw: bytes


def parse_event(raw: bytes, offset: int) -> Event:
    """The fields of one whole event (comments and unknown fields skipped)."""
    data: list[str] = []
    event, event_id = "message", None
    for line in _EOL_TEXT.split(raw.decode("utf-8", errors="replace")):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            event_id = value
    return Event("\n".join(data) if data else None, event, event_id, offset, raw)


class EventSplitter:
    """Feed bytes in stream order; get back the whole events they complete."""

    def __init__(self, offset: int = 0) -> None:
        self._buffer = b""
        #: Logical offset of the first buffered byte.
        self._offset = offset

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        return self._split(final=False)

    def flush(self) -> list[Event]:
        """At the end of the stream: a last event ended by a lone CR is complete after all."""
        return self._split(final=True)

    def _split(self, *, final: bool) -> list[Event]:
        events = []
        start = 0
        while True:
            # An event ends at a blank line: a line ending right after a line ending. A CR
            # at the very end may be half of a CRLF, so it waits for the next byte.
            end = self._find_end(start, final)
            if end is None:
                break
            events.append(parse_event(self._buffer[start:end], self._offset + end))
            start = end
        self._buffer = self._buffer[start:]
        self._offset += start
        return events

    def _find_end(self, start: int, final: bool) -> int | None:
        """The buffer index just after the blank line that ends the event at ``start``."""
        position = start  # always the start of a line
        while match := _EOL.search(self._buffer, position):
            if match.group() == b"\r" and match.end() == len(self._buffer) and not final:
                return None  # a CR or the first half of a CRLF: the next byte decides
            if match.start() == position:  # a blank line
                return match.end()
            position = match.end()
        return None
