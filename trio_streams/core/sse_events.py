"""Split a Server-Sent Events byte stream into whole events, without changing a byte.

An upstream's bytes arrive in arbitrary pieces (TCP segments, chunked-encoding chunks). A
keep-alive comment inserted in the middle of an event would corrupt it, so the upstream
producer writes only whole events: every byte of the input comes out, in order and
unchanged, cut only just after the blank line that ends an event. The SSE grammar allows
three line endings (``\\r\\n``, ``\\n``, ``\\r``), so a blank line is any two line endings in
a row: ``\\n\\n``, ``\\r\\n\\r\\n``, ``\\r\\r`` and their mixtures.
"""

from __future__ import annotations

import re

# Two line endings in a row. Atomic groups keep "\r\n" one ending: without them the
# pattern would backtrack and read the "\r" and the "\n" of a single CRLF as two.
_BLANK_LINE = re.compile(rb"(?>\r\n|\r|\n)(?>\r\n|\r|\n)")


class SSEEventSplitter:
    """Feed bytes in, get whole events (each with its terminating blank line) out."""

    __slots__ = ("_buffer", "_scan_from")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # Where the next search starts: a boundary can only begin in the last 3 bytes
        # already scanned, so a long event is not rescanned from its start on every feed.
        self._scan_from = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the events it completed (possibly none)."""
        self._buffer += data
        return self._split(at_end=False)

    def flush(self) -> list[bytes]:
        """At end of input: also the event ended by a CR that :meth:`feed` held back.

        Bytes of an event not yet terminated stay :meth:`pending`.
        """
        return self._split(at_end=True)

    def _split(self, *, at_end: bool) -> list[bytes]:
        events: list[bytes] = []
        start = 0
        position = self._scan_from
        while match := _BLANK_LINE.search(self._buffer, position):
            end = match.end()
            if not at_end and end == len(self._buffer) and self._buffer.endswith(b"\r"):
                # "...\r\r" or "\n\r" at the very end: the next byte may be the "\n" of this
                # CRLF; wait for it so the event ends after the whole line ending.
                break
            events.append(bytes(self._buffer[start:end]))
            start = position = end
        del self._buffer[:start]
        self._scan_from = max(0, len(self._buffer) - 3)
        return events

    def pending(self) -> bytes:
        """Bytes received after the last whole event (an event not yet terminated)."""
        return bytes(self._buffer)

    def finish(self) -> bytes:
        """At end of input: the remaining bytes, which the caller passes on unchanged."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        return rest
