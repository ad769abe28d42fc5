"""Global limits of the manager under a virtual clock: budget, sessions, producers."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams.core.limits import CapacityError, ConversationOwnedError, Limits
from trio_streams.core.manager import SessionManager
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import MAX_READ_CHUNK, StreamSession

CAP = 100


class Writes:
    """A producer that writes ``size`` bytes, then stays running until ``done`` is set."""

    def __init__(self, size: int = CAP) -> None:
        self.size = size
        self.done = trio.Event()

    async def __call__(self, writer: StreamWriter) -> None:
        await writer.write(b"x" * self.size)
        await self.done.wait()


def manager_with(**limits: int | None) -> SessionManager:
    full = {"max_total_bytes": None, "max_sessions": None, "max_producers": None, **limits}
    return SessionManager(max_bytes=CAP, ping_interval=None, limits=Limits(**full))


async def finish(producer: Writes) -> None:
    producer.done.set()
    await trio.testing.wait_all_tasks_blocked()


async def test_finished_sessions_are_evicted_oldest_finished_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with manager_with(max_total_bytes=3 * CAP) as manager:
        producers = {name: Writes() for name in "abc"}
        for name, producer in producers.items():
            manager.start(name, producer)
        await trio.testing.wait_all_tasks_blocked()
        # Finish in the order b, c, a: b is the oldest finished, though a started first.
        for name in "bca":
            await trio.sleep(1)
            await finish(producers[name])
        reader_of_b = manager.get("b")
        assert reader_of_b is not None
        manager.start("d", Writes())
        assert manager.get("b") is None and reader_of_b.is_done
        assert reader_of_b.retained_bytes == 0  # released: its memory is back
        assert {s.conversation_id for s in manager.sessions()} == {"a", "c", "d"}
        manager.start("e", Writes())
        assert manager.get("c") is None and manager.get("a") is not None
        assert manager.stats.evictions_capacity == 2
        assert manager.reserved_bytes() <= 3 * CAP


async def test_only_live_sessions_left_means_429_and_nothing_is_touched(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with manager_with(max_total_bytes=2 * CAP) as manager:
        first, second = Writes(), Writes()
        manager.start("a", first)
        manager.start("b", second)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CapacityError) as refused:
            manager.start("c", Writes())
        assert refused.value.retry_after >= 1
        assert "memory budget" in refused.value.reason
        assert manager.get("c") is None and manager.producer_count == 2
        assert manager.stats.rejections == {"bytes": 1}
        # Once one finishes it becomes evictable, and the next stream gets in.
        await finish(first)
        manager.start("c", Writes())
        assert manager.get("a") is None and manager.get("b") is not None


async def test_replacing_a_running_session_always_fits(autojump_clock: trio.abc.Clock) -> None:
    async with manager_with(max_total_bytes=CAP, max_producers=1, max_sessions=1) as manager:
        manager.start("a", Writes())
        await trio.testing.wait_all_tasks_blocked()
        replacement = manager.start("a", Writes())
        await trio.testing.wait_all_tasks_blocked()
        assert manager.get("a") is replacement and manager.producer_count == 1
        assert manager.stats.cancels == 1
        with pytest.raises(CapacityError):
            manager.start("b", Writes())


async def test_max_sessions_evicts_finished_and_refuses_when_all_live(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with manager_with(max_sessions=2) as manager:
        a, b = Writes(1), Writes(1)
        manager.start("a", a)
        manager.start("b", b)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CapacityError, match="too many sessions"):
            manager.start("c", Writes(1))
        # Anonymous streams are not registered sessions: they are not counted here.
        manager.start(None, Writes(1))
        await finish(a)
        manager.start("c", Writes(1))
        assert len(manager) == 2 and manager.get("a") is None


async def test_max_producers_counts_anonymous_streams(autojump_clock: trio.abc.Clock) -> None:
    async with manager_with(max_producers=2) as manager:
        anonymous = Writes(1)
        manager.start(None, anonymous)
        manager.start("a", Writes(1))
        with pytest.raises(CapacityError, match="too many streams"):
            manager.start("b", Writes(1))
        await finish(anonymous)
        manager.start("b", Writes(1))
        assert manager.producer_count == 2


async def test_a_stopped_session_with_a_reader_is_counted_until_the_reader_ends(
    autojump_clock: trio.abc.Clock,
) -> None:
    """DELETE ends readers once they have what was written; until then the bytes they
    may still send are in memory, so the budget keeps counting them (and may evict them)."""
    async with manager_with(max_total_bytes=2 * CAP) as manager:
        producer = Writes(CAP)
        session = manager.start("a", producer)
        await trio.testing.wait_all_tasks_blocked()
        chunks = session.read(0)
        assert await chunks.__anext__() == b"x" * CAP  # a reader, paused mid-stream
        manager.stop("a")
        assert manager.reserved_bytes() == CAP  # still held for that reader
        manager.start("b", Writes())
        # Room for "c" needs those bytes: the stopped session is evicted, its reader ends.
        manager.start("c", Writes())
        assert session.retained_bytes == 0
        with pytest.raises(StopAsyncIteration):
            await chunks.__anext__()
        await chunks.aclose()
        assert manager.reserved_bytes() == 2 * CAP


async def test_a_session_of_another_owner_cannot_be_replaced() -> None:
    async with manager_with() as manager:
        manager.start("a", Writes(1), owner="key:1")
        with pytest.raises(ConversationOwnedError):
            manager.start("a", Writes(1), owner="key:2")
        assert manager.get("a") is not None and manager.get("a").owner == "key:1"  # type: ignore[union-attr]
        manager.start("a", Writes(1), owner="key:1")  # the same key replaces as usual
        manager.shutdown()


async def test_limits_that_could_never_admit_a_stream_are_refused() -> None:
    with pytest.raises(ValueError):
        SessionManager(max_bytes=CAP, limits=Limits(max_total_bytes=CAP - 1))
    with pytest.raises(ValueError):
        SessionManager(limits=Limits(max_producers=0))


async def test_a_stuck_reader_holds_at_most_one_chunk() -> None:
    session = StreamSession("big", max_bytes=4 * MAX_READ_CHUNK)
    session.append(b"y" * (3 * MAX_READ_CHUNK + 5))
    session.finalize()
    chunks = session.read(0)
    sizes = [len(chunk) async for chunk in chunks]
    assert sizes == [MAX_READ_CHUNK] * 3 + [5]
    assert sum(sizes) == session.total_bytes


async def test_replacing_a_session_a_reader_still_holds_keeps_its_bytes_counted(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Found by the state machine: a replaced session's bytes stay in memory while a quiet
    reader holds them, so the replacement must not count them as freed."""
    async with manager_with(max_total_bytes=CAP, max_producers=2) as manager:
        first = manager.start("a", Writes(10))
        await trio.testing.wait_all_tasks_blocked()
        reader = first.read(0)
        assert await reader.__anext__() == b"x" * 10  # then the client goes quiet
        with pytest.raises(CapacityError):
            manager.start("a", Writes(10))  # CAP for the new one + 10 still held > CAP
        assert manager.get("a") is first and not first.is_done
        await reader.aclose()
        manager.start("a", Writes(10))
        assert manager.reserved_bytes() == CAP and first.is_done
