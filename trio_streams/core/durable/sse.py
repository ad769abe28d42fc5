"""SSE framing of a Durable Streams read: ``data`` events with the bytes, each followed
by a ``control`` event with the next offset (and cursor, up-to-date, closed).

Every line of a payload gets its own ``data:`` line, split on CR, LF and CRLF alike, so
a payload cannot inject events. No space follows ``data:``: a client strips exactly one,
and a payload starting with a space would lose it. Bytes of a stream that is not text
nor JSON are sent base64-encoded (``Stream-SSE-Data-Encoding: base64``), each event's
payload decodable on its own.
"""

from __future__ import annotations

import base64
import json
import re

_LINES = re.compile(r"\r\n|\r|\n")


def event(kind: str, payload: str) -> bytes:
    """One SSE event of type ``kind`` whose data is ``payload``."""
    lines = _LINES.split(payload)
    return (f"event: {kind}\n" + "".join(f"data:{line}\n" for line in lines) + "\n").encode()


def data_event(data: bytes, *, base64_encoded: bool) -> bytes:
    """The ``data`` event of a read's bytes (JSON streams: already an array)."""
    if base64_encoded:
        return event("data", base64.b64encode(data).decode("ascii"))
    return event("data", data.decode("utf-8", errors="replace"))


def control_event(next_offset: str, *, cursor: str | None, up_to_date: bool, closed: bool) -> bytes:
    """The ``control`` event: a closed stream's last one carries ``streamClosed`` and no
    cursor (nothing more will come to collapse on)."""
    control: dict[str, object] = {"streamNextOffset": next_offset}
    if closed:
        control["streamClosed"] = True
    else:
        if cursor is not None:
            control["streamCursor"] = cursor
        if up_to_date:
            control["upToDate"] = True
    return event("control", json.dumps(control, separators=(",", ":")))


def utf8_complete(data: bytes) -> int:
    """How many bytes of ``data`` end on a character boundary: a chunk cut inside a
    UTF-8 sequence keeps its incomplete tail for the next event."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: everything before and including it is whole
            return len(data)
        if byte >= 0xC0:  # the lead byte of the last sequence
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)
