"""The client-side event splitter: whole events and exact offsets, however bytes arrive."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.sse_split import EventSplitter, parse_event

_LINE = st.one_of(
    st.text(alphabet="abc {}:0123456789é", max_size=10).map(lambda text: "data: " + text),
    st.just(": ping"),
    st.just("event: delta"),
)
_EVENT = st.tuples(st.lists(_LINE, min_size=1, max_size=3), st.sampled_from(["\n", "\r\n", "\r"]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_EVENT, max_size=8),
    st.lists(st.integers(min_value=0), max_size=10),
    st.integers(min_value=0, max_value=10_000),
)
def test_split_at_any_byte_gives_the_same_whole_events_and_offsets(
    events: list[tuple[list[str], str]], cuts: list[int], start: int
) -> None:
    blocks = [("".join(line + eol for line in lines) + eol).encode() for lines, eol in events]
    stream = b"".join(blocks)
    splitter = EventSplitter(start)
    got = []
    bounds = [0, *sorted(cut % (len(stream) + 1) for cut in cuts), len(stream)]
    for begin, end in itertools.pairwise(bounds):
        got += splitter.feed(stream[begin:end])
    # A CR as the very last byte might be half a CRLF: that event waits for more bytes,
    # or for the end of the stream.
    if stream.endswith(b"\r"):
        assert [event.raw for event in got] == blocks[:-1]
    got += splitter.flush()
    assert [event.raw for event in got] == blocks
    ends = list(itertools.accumulate(len(block) for block in blocks))
    assert [event.offset for event in got] == [start + end for end in ends]


def test_parse_event_reads_data_event_and_id_and_skips_comments() -> None:
    event = parse_event(b": c\r\nevent: delta\r\ndata: a\r\ndata:b\r\nid: 42\r\n\r\n", 42)
    assert (event.event, event.data, event.id, event.offset) == ("delta", "a\nb", "42", 42)
    assert parse_event(b": ping\n\n", 8).data is None


def test_stamped_ids_equal_the_offsets_the_splitter_counts() -> None:
    stamper = EventIdStamper()
    raw = b""
    for index in range(200):
        raw += stamper.stamp(f"data: {index}\r\n\r\n".encode(), len(raw))
    events = EventSplitter(0).feed(raw)
    assert len(events) == 200 and all(event.id == str(event.offset) for event in events)
