"""The bench producers' clock (``scripts/bench/bench_pacing.py``) keeps the schedule it promises.

The benchmark's figures rest on it: every token must fall due on time (never early, at
most one tick late), a late producer must take every token due by then, and a cancelled
waiter (a DELETE during a token's wait) must not disturb the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))

from bench_pacing import TICKS, Metronome, Schedule, due_count


async def test_every_waiter_wakes_on_its_tick_in_order(autojump_clock: trio.abc.Clock) -> None:
    metronome = Metronome()
    woken: list[tuple[float, float]] = []

    async def wait(deadline: float) -> None:
        await metronome.wait_until(deadline)
        woken.append((deadline, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(metronome.run)
        await trio.sleep(1)  # the metronome idles with nothing to wake
        now = trio.current_time()
        deadlines = [now + 0.0504, now + 0.0101, now + 0.0300, now + 0.0300, now + 0.2]
        for deadline in deadlines:
            nursery.start_soon(wait, deadline)
        await trio.sleep(0.5)
        # A waiter arriving later with an earlier deadline than the sleeper's target.
        nursery.start_soon(wait, trio.current_time() + 0.3)
        nursery.start_soon(wait, trio.current_time() + 0.001)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()

    assert len(woken) == len(deadlines) + 2
    for deadline, at in woken:
        assert deadline <= at <= deadline + 1 / TICKS + 1e-9
    assert [at for _, at in woken] == sorted(at for _, at in woken)


async def test_a_cancelled_waiter_leaves_the_others_on_time(autojump_clock: trio.abc.Clock) -> None:
    metronome = Metronome()
    woken: list[float] = []

    async def wait(deadline: float) -> None:
        await metronome.wait_until(deadline)
        woken.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(metronome.run)
        start = trio.current_time()
        with trio.move_on_after(0.01):  # cancelled before its tick, as a DELETE would
            await metronome.wait_until(start + 0.05)
        nursery.start_soon(wait, start + 0.05)
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert len(woken) == 1 and start + 0.05 <= woken[0] <= start + 0.05 + 1 / TICKS + 1e-9


async def test_a_past_deadline_returns_at_once(autojump_clock: trio.abc.Clock) -> None:
    metronome = Metronome()  # not running: a past deadline must not need it
    before = trio.current_time()
    await metronome.wait_until(before - 1)
    assert trio.current_time() == before


def test_a_late_producer_takes_every_token_due_and_at_least_one() -> None:
    # 20 tokens/s from t=0: at t=0.26 tokens 0..5 are due (6 of them).
    assert due_count(0.0, 0.05, 0.26, written=0, tokens=100) == 6
    assert due_count(0.0, 0.05, 0.26, written=6, tokens=100) == 7  # woken for token 6
    assert due_count(0.0, 0.05, 99.0, written=3, tokens=10) == 10  # never beyond the end


async def test_without_batching_a_late_producer_writes_one_token_at_a_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    metronome = Metronome()  # every token is already due: the metronome is never needed
    schedule = Schedule(metronome, tokens=5, rate=20, batch=False)
    await trio.sleep(10)  # far behind: all five tokens are due
    writes = []
    while (events := await schedule.next_due()) is not None:
        writes.append(events)
    assert [events.count(b"data: ") for events in writes] == [1, 1, 1, 1, 1]
