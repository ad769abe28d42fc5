"""The lifetime helper the session manager and the stores share (core/lifetime.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from trio_streams.core.lifetime import Chore, Lifetime


class Recorder(Lifetime):
    """Counts its chores' rounds, and logs what it enters, leaves and shuts down."""

    def __init__(self, *, fail_open: bool = False) -> None:
        super().__init__()
        self.fail_open = fail_open
        self.log: list[str] = []
        self.sync_rounds = 0
        self.async_rounds = 0

    def _chores(self) -> Iterable[Chore]:
        return [(10.0, self._count), (25.0, self._count_async)]

    def _count(self) -> None:
        self.sync_rounds += 1

    async def _count_async(self) -> None:
        await trio.lowlevel.checkpoint()
        self.async_rounds += 1

    @asynccontextmanager
    async def _resource(self, name: str) -> AsyncIterator[None]:
        self.log.append(f"enter {name}")
        try:
            yield
        finally:
            self.log.append(f"leave {name} (closed={self.closed})")

    async def _open(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self._resource("before"))
        await self._open_nursery(stack)
        await stack.enter_async_context(self._resource("after"))
        if self.fail_open:
            raise RuntimeError("cannot start")

    def shutdown(self) -> None:
        self.log.append("shutdown")
        super().shutdown()


async def test_chores_repeat_until_shutdown(autojump_clock: trio.testing.MockClock) -> None:
    async with Recorder() as recorder:
        await trio.sleep(55)
        assert (recorder.sync_rounds, recorder.async_rounds) == (5, 2)
        recorder.shutdown()
        await trio.sleep(100)
        assert (recorder.sync_rounds, recorder.async_rounds) == (5, 2)
    assert recorder.closed


async def test_exit_shuts_down_first_then_unwinds_in_reverse() -> None:
    async with Recorder() as recorder:
        assert recorder.log == ["enter before", "enter after"]
        assert not recorder.closed
    assert recorder.log == [
        "enter before",
        "enter after",
        "shutdown",
        "leave after (closed=True)",
        "leave before (closed=True)",
    ]


async def test_a_failed_open_unwinds_what_it_entered() -> None:
    recorder = Recorder(fail_open=True)
    # Raised inside the nursery: trio groups it.
    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="cannot start")):
        async with recorder:
            pass  # pragma: no cover - never entered
    assert recorder.log == [
        "enter before",
        "enter after",
        "leave after (closed=False)",
        "leave before (closed=False)",
    ]


async def test_the_body_and_the_nursery_tasks_outlive_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Shutdown stops the chores only: the body of ``async with`` and the tasks started
    in the nursery end by themselves (the owner's shutdown tells them to)."""
    finished: list[str] = []

    async def task() -> None:
        await trio.sleep(5)
        finished.append("task")

    async with Recorder() as recorder:
        assert recorder._nursery is not None
        recorder._nursery.start_soon(task)
        recorder.shutdown()
        await trio.sleep(1)
        finished.append("body")
    assert finished == ["body", "task"]
