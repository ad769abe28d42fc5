"""SSE ``id:`` stamping: every event's id names its generation and the logical byte offset
just after it, ``<generation>-<offset>`` (:mod:`trio_streams.core.generations`).

A browser ``EventSource`` that loses its connection reconnects by itself and sends the id
of the last event it received as ``Last-Event-ID``. Making that id the byte offset where
the event ends (its own ``id:`` line included) means ``Last-Event-ID: G-N`` and
``?generation=G&from=N`` name the same place: EventSource clients and byte-counting clients
resume identically, and neither can be handed bytes of a later generation.

The stamper sits in the writer, not in a producer, so every producer (the demo model, an
upstream proxy, an embedder's own) gets ids without knowing about them. It inserts the
``id:`` line as the *last* line of each event, just before the blank line that ends it and
with the event's own line ending. An ``id:`` line the producer wrote itself (an upstream
server that numbers its events) is removed, not left beside ours: an event has one id.
Comment-only events (``: ping``) get no id: EventSource ignores them, and a reconnect
after a ping simply re-reads the ping.

Producers write whole events, but the stamper keeps its parse state across writes, so an
event split over several writes (or a CRLF split between two) is still stamped once,
where it ends.
"""

from __future__ import annotations

import re

_LF = 0x0A
_COLON = 0x3A
_EOL_BYTES = b"\r\n"
_EOL = re.compile(rb"\r\n?|\n")


def id_line(line_start: int, eol: bytes, blank_eol: bytes, prefix: bytes = b"") -> bytes:
    """The ``id: <prefix>N`` line starting at logical offset ``line_start``.

    ``N`` is the offset just after the event: after this line and the blank line
    (``blank_eol``) that follows it. The line's length depends on the number of digits of
    ``N``, so ``N`` is the fixed point of ``N = line_start + len("id: " + prefix + "N" +
    eol) + len(blank_eol)``; it exists and is unique because one more digit moves ``N`` by
    one. ``prefix`` is the generation and its separator (``<generation>-``).
    """
    fixed = line_start + len(b"id: ") + len(prefix) + len(eol) + len(blank_eol)
    # N has at least as many digits as ``fixed`` and, adding so few, at most one more.
    digits = len(str(fixed))
    if len(str(fixed + digits)) != digits:
        digits += 1
    return b"id: %s%d%s" % (prefix, fixed + digits, eol)


def _is_id_line(line: bytes) -> bool:
    """An ``id`` field line (``id`` alone is one too: it resets the last event id)."""
    return line == b"id" or line.startswith(b"id:")


def _may_become_id_line(partial: bytes) -> bool:
    """Whether an unfinished line could still turn out to be an ``id`` field line."""
    return b"id:".startswith(partial) or partial.startswith(b"id:")


class EventIdStamper:
    """Adds ``id: <prefix><offset>`` to every non-comment event of one stream's bytes.

    Feed it the stream in order with :meth:`stamp`, each time with the logical offset at
    which its output will be appended. ``prefix`` is what every id starts with (the
    generation: :func:`~trio_streams.core.generations.event_id_prefix`).
    """

    __slots__ = (
        "_after_cr",
        "_at_line_start",
        "_dropped_cr",
        "_has_field",
        "_held",
        "_last_eol",
        "_line_is_comment",
        "_prefix",
    )

    def __init__(self, prefix: bytes = b"") -> None:
        self._prefix = prefix
        # The start of a line that may be an ``id:`` line, held back until it ends.
        self._held = b""
        # The id line just dropped ended with a CR: an LF right after it goes too.
        self._dropped_cr = False
        self._at_line_start = True
        # The previous byte was a CR ending a line: an LF right after it belongs to it.
        self._after_cr = False
        self._line_is_comment = False
        # The event seen so far has a line that is not a comment: it gets an id.
        self._has_field = False
        self._last_eol = b"\n"

    def stamp(self, data: bytes, base_offset: int) -> bytes:
        """``data`` with an ``id:`` line inserted before the end of each event it finishes.

        ``base_offset`` is the logical offset of ``data``'s first byte once appended; the
        ids count the inserted lines too, so they are offsets in the *stamped* stream.
        """
        # The hot path (issue 7): producers write whole LF events, one per write, or all
        # that one upstream read brought. The general parser below handles them at several
        # times the cost. Same bytes out, same state after (a clean line start), as
        # ``_stamp_lines`` would give.
        if self._clean_lf_start(data):
            if data.find(b"\n\n") == len(data) - 2:  # one whole event
                end = len(data) - 1
                return data[:end] + id_line(base_offset + end, b"\n", b"\n", self._prefix) + b"\n"
            events = _whole_events(data)
            if events is not None:
                out = bytearray()
                for event in events:
                    out += event
                    out += b"\n"
                    out += id_line(base_offset + len(out), b"\n", b"\n", self._prefix)
                    out += b"\n"
                return bytes(out)
        return self._stamp_lines(data, base_offset)

    def _clean_lf_start(self, data: bytes) -> bool:
        """Between events, LF endings only, ``data`` starts with a field line, and it has
        no ``id`` line of its own to remove."""
        return (
            not self._held
            and self._at_line_start
            and not self._after_cr
            and not self._has_field
            and self._last_eol == b"\n"
            and len(data) > 2
            and data[0] not in b"\r\n:"
            and b"\r" not in data
            and not data.startswith(b"id")
            and b"\nid" not in data
        )

    def _stamp_lines(self, data: bytes, base_offset: int) -> bytes:
        """The general case: events split across writes, CR or CRLF endings, comments,
        and ``id`` lines of the producer's own, which are removed."""
        if self._held:
            data, self._held = self._held + data, b""
        out = bytearray()
        start = 0  # first byte of data not yet copied to out
        i = 0
        size = len(data)
        while i < size:
            if self._after_cr:
                self._after_cr = False
                if data[i] == _LF:  # the second half of a CRLF split across two writes
                    if self._last_eol == b"\r":
                        self._last_eol = b"\r\n"
                    if self._dropped_cr:  # ... of a dropped id line: it goes too
                        out += data[start:i]
                        start = i + 1
                    self._dropped_cr = False
                    i += 1
                    continue
                self._dropped_cr = False
            if self._at_line_start and data[i] not in _EOL_BYTES:
                line_end = _EOL.search(data, i)
                line = data[i : size if line_end is None else line_end.start()]
                if line_end is None and _may_become_id_line(line):
                    out += data[start:i]  # the rest may be an id line: wait for its end
                    self._held = data[i:]
                    return bytes(out)
                if line_end is not None and _is_id_line(line):
                    out += data[start:i]  # the producer's own id: ours replaces it
                    i = start = line_end.end()
                    self._after_cr = self._dropped_cr = line_end.group() == b"\r"
                    continue
                self._at_line_start = False
                self._line_is_comment = data[i] == _COLON
            # Jump to the next line ending (CRLF, LF or CR); the bytes before it are content.
            match = _EOL.search(data, i)
            if match is None:
                break
            i, eol = match.start(), match.group()
            if self._at_line_start:
                # A blank line: it ends the event.
                if self._has_field:
                    out += data[start:i]
                    out += id_line(base_offset + len(out), eol, eol, self._prefix)
                    start = i
                self._has_field = False
            else:
                if not self._line_is_comment:
                    self._has_field = True
                self._at_line_start = True
            self._last_eol = eol
            # A CR at the very end of data may still get its LF in the next write.
            self._after_cr = eol == b"\r"
            i += len(eol)
        out += data[start:]
        return bytes(out)


def _whole_events(data: bytes) -> list[bytes] | None:
    """The events of ``data``, each without its blank line, if ``data`` is whole LF events
    that each begin with a field line; ``None`` when the general parser is needed."""
    if not data.endswith(b"\n\n"):
        return None
    events = data[:-2].split(b"\n\n")
    for event in events:
        # Empty or edged by a newline: blank lines between events; or a comment first.
        if not event or event[0] in b"\n:" or event[-1] == _LF:
            return None
    return events
