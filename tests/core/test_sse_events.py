"""The SSE event splitter: whole events out, every byte unchanged, however input is cut."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_streams.core.sse_events import SSEEventSplitter

ENDINGS = [b"\n", b"\r\n", b"\r"]


def split_all(pieces: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = SSEEventSplitter()
    events = []
    for piece in pieces:
        events += splitter.feed(piece)
    return events, splitter.finish()


def test_each_blank_line_form_ends_an_event() -> None:
    stream = b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\n\r\ndata: e\r\n\n: c\n\n"
    events, rest = split_all([stream])
    assert events == [
        b"data: a\n\n",
        b"data: b\r\n\r\n",
        b"data: c\r\r",
        b"data: d\n\r\n",
        b"data: e\r\n\n",
        b": c\n\n",
    ]
    assert rest == b""


def test_a_single_line_ending_does_not_end_an_event() -> None:
    events, rest = split_all([b"event: x\r\ndata: 1\ndata: 2\rdata: 3"])
    assert events == [] and rest == b"event: x\r\ndata: 1\ndata: 2\rdata: 3"


def test_a_crlf_cut_between_cr_and_lf_stays_in_its_event() -> None:
    splitter = SSEEventSplitter()
    assert splitter.feed(b"data: a\r\n\r") == []  # the "\n" of this CRLF may follow
    assert splitter.feed(b"\ndata: b") == [b"data: a\r\n\r\n"]
    assert splitter.pending() == b"data: b"
    assert splitter.feed(b"\r\r") == []
    assert splitter.finish() == b"data: b\r\r"


def test_an_unterminated_tail_is_returned_at_the_end() -> None:
    events, rest = split_all([b"data: 1\n\ndata: 2\n"])
    assert events == [b"data: 1\n\n"] and rest == b"data: 2\n"


@st.composite
def event_streams(draw: st.DrawFn) -> list[bytes]:
    """Events made of lines with any mixture of line endings, each ending in a blank line."""
    events = []
    for _ in range(draw(st.integers(1, 8))):
        lines = draw(
            st.lists(
                st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                min_size=1,
                max_size=4,
            )
        )
        event = b""
        for line in lines:
            event += b"data: " + line + draw(st.sampled_from(ENDINGS))
        ending = draw(st.sampled_from(ENDINGS))
        # "\r" then "\n" would be one CRLF, not a blank line: no blank line there.
        if event.endswith(b"\r") and ending == b"\n":
            ending = b"\r\n"
        events.append(event + ending)
    return events


@given(event_streams(), st.lists(st.integers(1, 40), max_size=30))
def test_any_cut_gives_back_the_same_events(events: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(events)
    pieces, position = [], 0
    for size in cuts:
        pieces.append(stream[position : position + size])
        position += size
    pieces.append(stream[position:])
    got, rest = split_all(pieces)
    assert b"".join(got) + rest == stream
    if not stream.endswith(b"\r"):
        assert got == events and rest == b""
    else:  # the last "\r" could still become a CRLF: it waits for the end of input
        assert got == events[:-1] and rest == events[-1]
