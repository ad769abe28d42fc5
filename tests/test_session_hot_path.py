"""The hot path tuned by the benchmarks (issue 7) keeps the session's contract.

A finished session drops its reader parking lot to stay small while idle; these tests pin
what readers see around that moment. ``scripts/bench_hotpath.py`` (the library's own cost
per event) is run on a toy size to keep it working; it checks every byte was delivered.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio
import trio.testing

from trio_streams.session import StreamSession

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


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
