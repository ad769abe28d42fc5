"""Reading SSE on the client side: whole events out of a byte stream, with their offsets.

A resuming client counts bytes: the offset after the last byte it has is where it resumes
(``GET /v1/stream/C?from=N``). Splitting by bytes, not text, keeps that count exact, and the
split keeps its buffer across reconnects, so an event cut in the middle by a lost
connection is completed by the bytes of the resumed response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trio_streams.core.sse_events import SSEEventSplitter

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
    """Feed bytes in stream order; get back the whole events they complete, parsed.

    The cutting is the server's (:class:`~trio_streams.core.sse_events.SSEEventSplitter`, which
    cuts an upstream's stream into whole events); this adds the offsets and the fields.
    """

    def __init__(self, offset: int = 0) -> None:
        self._raw = SSEEventSplitter()
        #: Logical offset just after the last event returned.
        self._offset = offset

    def feed(self, chunk: bytes) -> list[Event]:
        return self._parsed(self._raw.feed(chunk))

    def flush(self) -> list[Event]:
        """At the end of the stream: a last event ended by a lone CR is complete after all."""
        return self._parsed(self._raw.flush())

    def _parsed(self, raw_events: list[bytes]) -> list[Event]:
        events = []
        for raw in raw_events:
            self._offset += len(raw)
            events.append(parse_event(raw, self._offset))
        return events
