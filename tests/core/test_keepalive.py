"""core/keepalive.py under ``autojump_clock``: one wake-up per ping, whatever the floats.

The task used to wake at ``last_append + interval`` and then check ``now - last_append <
interval``, which rounds the wrong way for some times (``(0.6 + 0.3) - 0.6 < 0.3``): it then
slept until the same past deadline again, forever, without the virtual clock moving. These
tests count the task's steps with a trio instrument over a virtual hour; a spin shows as
steps without pings, and the instrument cancels the run rather than let it hang.
"""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from trio_streams.core.keepalive import keep_alive
from trio_streams.core.session import StreamSession
from trio_streams.core.sse import PING

HOUR = 3600.0
NAME = "keep-alive under test"


class StepCounter(trio.abc.Instrument):
    """Counts the steps of the task named :data:`NAME`; past ``limit``, cancels ``scope``."""

    def __init__(self, scope: trio.CancelScope, limit: int) -> None:
        self.scope = scope
        self.limit = limit
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name == NAME:
            self.steps += 1
            if self.steps > self.limit:
                self.scope.cancel()


async def run_for_an_hour(
    session: StreamSession, interval: float, appends: int = 0
) -> tuple[int, float]:
    """Run ``keep_alive`` for a virtual hour, with ``appends`` producer writes at odd times
    first: the steps the keep-alive task took, and the clock of the last write."""
    pings_at_most = int(HOUR / interval) + 1
    # A step per wake-up, plus its first; an append can cost one wake-up that does not ping.
    limit = pings_at_most + appends + 2
    last_append = 0.0
    with trio.move_on_after(HOUR) as scope:
        counter = StepCounter(scope, limit)
        trio.lowlevel.add_instrument(counter)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_alive, session, interval, name=NAME)
                for index in range(appends):
                    # Gaps from 0.37 to 2.17 intervals: some move the deadline, some ping.
                    await trio.sleep(interval * (0.37 + index % 7 * 0.3))
                    session.append(f"data: {index}\n\n".encode())
                    last_append = trio.current_time()
        finally:
            trio.lowlevel.remove_instrument(counter)
    assert scope.cancelled_caught, "the virtual hour did not end"
    assert trio.current_time() >= HOUR, f"spun at {trio.current_time()} after {counter.steps} steps"
    return counter.steps, last_append


@pytest.mark.parametrize("interval", [1.1, 5.0])  # 1.1 spun at its 5th ping, 5.0 never
async def test_an_idle_stream_wakes_once_per_ping(
    autojump_clock: trio.abc.Clock, interval: float
) -> None:
    session = StreamSession("c-idle", max_bytes=1 << 20)
    steps, _ = await run_for_an_hour(session, interval)
    pings = session.total_bytes // len(PING)
    assert session.tail(session.total_bytes) == PING * pings
    # Every deadline in the hour pinged: the count is what the interval gives, to one.
    assert abs(pings - HOUR / interval) <= 1
    assert steps <= pings + 2


async def test_appends_move_the_deadline_without_a_spin(autojump_clock: trio.abc.Clock) -> None:
    session = StreamSession("c-busy", max_bytes=1 << 20)
    interval = 1.1
    steps, last_append = await run_for_an_hour(session, interval, appends=1000)
    written = session.tail(session.total_bytes)
    assert written.count(b"data: ") == 1000
    during, after = written.split(b"data: 999\n\n")
    # The gaps longer than an interval pinged; after the last write, one ping per interval.
    assert during.count(PING) > 0
    assert after == PING * len(after.split(PING)[:-1])
    assert abs(after.count(PING) - (HOUR - last_append) / interval) <= 1
    assert steps <= HOUR / interval + 1000 + 2
