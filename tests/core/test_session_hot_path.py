"""The hot path tuned by the benchmarks (issue 7) keeps the session's contract.

A finished session drops its reader parking lot to stay small while idle; these tests pin
what readers see around that moment. Event-id stamping has a fast path for the one whole
event per write that producers write; it must stamp exactly as the general parser does.
``scripts/bench/bench_hotpath.py`` (the library's own cost per event) is run on a toy size to
keep it working; it checks every byte was delivered.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref
from pathlib import Path

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_streams import SessionManager, StreamWriter
from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.limits import Limits
from trio_streams.core.session import StreamSession

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "bench"


async def test_many_parked_readers_all_end_at_finalize(autojump_clock: trio.abc.Clock) -> None:
    session = StreamSession("c", max_bytes=1024)
    session.append(b"abc")
    received: list[list[bytes]] = [[] for _ in range(5)]

    async def read(into: list[bytes], offset: int) -> None:
        async for chunk in session.read(offset):
            into.append(chunk)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for index, into in enumerate(received):
                nursery.start_soon(read, into, index % 4)
            await trio.testing.wait_all_tasks_blocked()
            assert session.reader_count == 5
            session.append(b"d")
            await trio.testing.wait_all_tasks_blocked()
            session.finalize()
    assert [b"".join(chunks) for chunks in received] == [b"abcd"[index % 4 :] for index in range(5)]
    assert session.reader_count == 0


async def test_a_finished_session_serves_new_readers_without_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    session = StreamSession("c", max_bytes=1024)
    session.append(b"data: 1\n\n")
    session.finalize()
    assert session.append(b"late") is False
    with trio.fail_after(10):  # under autojump a reader that parked would fail at once
        assert [chunk async for chunk in session.read(0)] == [b"data: 1\n\n"]
        assert [chunk async for chunk in session.read(session.total_bytes)] == []
        assert [chunk async for chunk in session.read(session.total_bytes + 5)] == []


def test_hot_path_script_delivers_every_byte() -> None:
    script = str(SCRIPTS / "bench_hotpath.py")
    done = subprocess.run(
        [sys.executable, script, "--streams", "20", "--rounds", "5", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(done.stdout)
    assert set(figures) == {"session_us_per_event", "channel_us_per_event", "ratio"}
    assert figures["session_us_per_event"] > 0


_TEXT = st.text(alphabet='ab :{}"\r\n0123456789', max_size=10)


def lf_event(fields: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in fields) + "\n"


_LF_EVENT = st.lists(
    st.tuples(st.sampled_from(["data", "event", "id"]), _TEXT), min_size=1, max_size=3
).map(lf_event)
_WRITE = st.one_of(
    # what producers write: whole events, LF endings (the fast path), one per write or
    # several (what one upstream read brought)
    _LF_EVENT,
    st.lists(_LF_EVENT, min_size=2, max_size=4).map("".join),
    _TEXT.map(lambda text: f": {text}\n\n"),  # a comment, as keep-alive pings are
    _TEXT,  # anything else, split events and CR endings included
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_WRITE, max_size=10), st.integers(min_value=0, max_value=10**7))
def test_the_whole_events_fast_path_stamps_exactly_as_the_general_parser(
    writes: list[str], start: int
) -> None:
    fast, general = EventIdStamper(), EventIdStamper()
    offset_fast = offset_general = start
    for write in writes:
        data = write.encode()
        out_fast = fast.stamp(data, offset_fast)
        out_general = general._stamp_lines(data, offset_general)
        assert out_fast == out_general
        offset_fast += len(out_fast)
        offset_general += len(out_general)


async def test_ttl_eviction_lets_go_of_the_session(autojump_clock: trio.abc.Clock) -> None:
    """Memory comes back after TTL eviction, with or without a global byte budget."""
    for limits in (Limits(), Limits(max_total_bytes=None, max_sessions=None, max_producers=None)):
        async with SessionManager(ttl=10, gc_interval=1, limits=limits) as manager:

            async def one_event(writer: StreamWriter) -> None:
                await writer.write(b"data: x\n\n")

            session = manager.start("conversation", one_event)
            alive = weakref.ref(session)
            del session
            await trio.sleep(1)
            assert manager.lookup(["conversation"])[0].is_done
            await trio.sleep(12)
            assert len(manager) == 0
            gc.collect()
            assert alive() is None, gc.get_referrers(alive())
