"""SessionManager under a virtual clock: producers, replacement, cancel, GC, shutdown."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.helpers import without_event_ids
from trio_streams.core.end_reasons import EndReason, end_event_after
from trio_streams.core.limits import Limits
from trio_streams.core.manager import ManagerClosedError, SessionManager, variant_prefixes
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import StreamSession
from trio_streams.core.sse import PING, ends_with_done
from trio_streams.stores.reader import read_then_end


class Ticker:
    """A producer writing ``count`` numbered events, one per ``interval`` seconds.

    Records whether it finished or was cancelled, which is what the tests assert on.
    """

    def __init__(self, count: int = 10, interval: float = 1.0, prefill: float = 0.0) -> None:
        self.count = count
        self.interval = interval
        self.prefill = prefill
        self.started = False
        self.finished = False
        self.cancelled = False

    async def __call__(self, writer: StreamWriter) -> None:
        self.started = True
        try:
            await trio.sleep(self.prefill)
            for index in range(self.count):
                await writer.write(f"data: {index}\n\n".encode())
                await trio.sleep(self.interval)
            self.finished = True
        except trio.Cancelled:
            self.cancelled = True
            raise


async def read_all(session: StreamSession, offset: int = 0) -> bytes:
    """The session's bytes, without the event ids (tests/core/test_event_ids.py checks those)."""
    return without_event_ids(b"".join([chunk async for chunk in session.read(offset)]))


def expected_ticks(count: int) -> bytes:
    return b"".join(f"data: {index}\n\n".encode() for index in range(count))


async def test_producer_runs_to_completion_and_finalizes(autojump_clock: trio.abc.Clock) -> None:
    async with SessionManager(ping_interval=None) as manager:
        ticker = Ticker(count=5)
        session = manager.start("c1", ticker)
        assert manager.get("c1") is session
        assert await read_all(session) == expected_ticks(5)
        assert ticker.finished and session.is_done and session.completed_at > 0


async def test_session_exists_before_the_first_token_and_stop_cancels_prefill(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with SessionManager(ping_interval=None) as manager:
        ticker = Ticker(prefill=60)
        session = manager.start("c1", ticker)
        assert [info.conversation_id for info in manager.lookup(["c1"])] == ["c1"]
        await trio.sleep(1)
        assert ticker.started and session.total_bytes == 0
        assert manager.stop("c1") is True
        assert await read_all(session) == b""
        await trio.testing.wait_all_tasks_blocked()
        assert ticker.cancelled and not ticker.finished
        assert manager.get("c1") is None
        assert manager.stop("c1") is False  # idempotent


async def test_stop_before_the_producer_task_even_ran(autojump_clock: trio.abc.Clock) -> None:
    async with SessionManager(ping_interval=None) as manager:
        ticker = Ticker()
        manager.start("c1", ticker)
        manager.stop("c1")  # no checkpoint in between: the producer has not started
        await trio.testing.wait_all_tasks_blocked()
        assert not ticker.finished


async def test_replacement_cancels_the_old_producer_and_ends_its_readers(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with SessionManager(ping_interval=None) as manager:
        old_ticker, new_ticker = Ticker(count=100), Ticker(count=3)
        old = manager.start("c1", old_ticker)
        await trio.sleep(2.5)
        new = manager.start("c1", new_ticker)
        assert old.is_done and old.is_cancelled
        assert await read_all(old) == expected_ticks(3)
        assert manager.get("c1") is new
        assert await read_all(new) == expected_ticks(3)
        assert old_ticker.cancelled and new_ticker.finished


async def test_finished_sessions_expire_after_ttl_on_the_gc_interval(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with SessionManager(ttl=300, gc_interval=60, ping_interval=None) as manager:
        start = trio.current_time()
        manager.start("done", Ticker(count=1, interval=0))
        live = Ticker(count=10_000, interval=1)
        manager.start("live", live)
        await trio.sleep(1)
        assert manager.get("done") is not None and manager.get("done").is_done  # type: ignore[union-attr]
        # Completed at ~t0; the sweep at t0+300 sees it exactly at the TTL and evicts it.
        await trio.sleep_until(start + 299)
        assert manager.get("done") is not None
        await trio.sleep_until(start + 301)
        assert manager.get("done") is None
        assert manager.get("live") is not None  # live sessions are never collected
        assert not live.finished


async def test_gc_runs_on_its_interval_not_before(autojump_clock: trio.abc.Clock) -> None:
    async with SessionManager(ttl=10, gc_interval=100, ping_interval=None) as manager:
        start = trio.current_time()
        manager.start("c1", Ticker(count=1, interval=0))
        await trio.sleep_until(start + 99)
        assert manager.get("c1") is not None  # expired at 10 s but no sweep yet
        await trio.sleep_until(start + 101)
        assert manager.get("c1") is None


async def test_collect_garbage_by_hand() -> None:
    async with SessionManager(ttl=0, ping_interval=None) as manager:
        session = manager.start("c1", Ticker(count=0))
        await read_all(session)
        assert manager.collect_garbage() == 1
        assert len(manager) == 0


async def test_shutdown_cancels_producers_and_finalizes_every_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    tickers = [Ticker(count=1000) for _ in range(3)]
    outputs: list[bytes] = []
    async with trio.open_nursery() as readers:
        async with SessionManager(ping_interval=None) as manager:
            named = manager.start("a", tickers[0])
            variant = manager.start("a::model", tickers[1])
            anonymous = manager.start(None, tickers[2])
            for session in (named, variant, anonymous):
                readers.start_soon(lambda s=session: _append_output(s, outputs))
            await trio.sleep(5.5)
        # leaving the block: every reader ends, every producer was cancelled
        assert all(ticker.cancelled for ticker in tickers)
        assert all(session.is_done for session in (named, variant, anonymous))
    assert outputs == [expected_ticks(6)] * 3
    with pytest.raises(ManagerClosedError):
        manager.start("late", Ticker())


async def test_shutdown_inside_the_block_does_not_cancel_the_block(
    autojump_clock: trio.abc.Clock,
) -> None:
    """serve() calls shutdown() and then lets Hypercorn finish the responses: the body of
    ``async with manager`` (where Hypercorn runs) must not be cancelled by it."""
    ticker = Ticker(count=1000)
    async with SessionManager(ping_interval=None) as manager:
        session = manager.start("c1", ticker)
        await trio.sleep(2.5)
        manager.shutdown()
        await trio.sleep(10)  # would raise Cancelled if shutdown cancelled the block
        assert await read_all(session) == expected_ticks(3)
        assert ticker.cancelled and session.is_done


async def _append_output(session: StreamSession, outputs: list[bytes]) -> None:
    outputs.append(await read_all(session))


async def test_a_failing_producer_ends_its_stream_with_an_error_event() -> None:
    async def broken(writer: StreamWriter) -> None:
        await writer.write(b"data: 1\n\n")
        raise RuntimeError("model crashed")

    async with SessionManager(ping_interval=None) as manager:
        session = manager.start("c1", broken)
        data = await read_all(session)
        assert data.startswith(b"data: 1\n\n")
        assert b'"message":"generation failed: model crashed"' in data
        assert b'"type":"server_error"' in data
        assert session.is_done
        # the manager survives: another stream works
        assert await read_all(manager.start("c2", Ticker(count=1, interval=0))) == b"data: 0\n\n"


async def test_keep_alive_pings_only_while_idle(autojump_clock: trio.abc.Clock) -> None:
    async with SessionManager(ping_interval=5) as manager:
        # 12 s of prefill, then events every second for 3 s, then 11 s of silence.
        async def producer(writer: StreamWriter) -> None:
            await trio.sleep(12)
            for index in range(3):
                await writer.write(f"data: {index}\n\n".encode())
                await trio.sleep(1)
            await trio.sleep(10.5)

        session = manager.start("c1", producer)
        data = await read_all(session)
    assert data == PING * 2 + expected_ticks(3) + PING * 2


@pytest.mark.parametrize(
    ("tail", "done"),
    [
        (b"data: x\n\ndata: [DONE]\n\n", True),
        (b"data: [DONE]\nid: 1431\n\n", True),
        (b"\r\ndata: [DONE]\r\nid: 9\r\n\r\n", True),
        (b"data:[DONE]\r\r", True),
        (b"data: [DONE]\n\n: ping\n\n", False),  # something came after it
        (b"data: [DONE]x\n\n", False),
        (b"data: [DONE]\n", False),  # the event is not over yet
        (b'data: {"content":"data: [DONE]"}\n\n', False),
    ],
)
def test_the_done_sentinel_is_recognised_as_the_last_event(tail: bytes, done: bool) -> None:
    assert ends_with_done(tail) is done


async def test_keep_alive_ends_with_the_answer(autojump_clock: trio.abc.Clock) -> None:
    """After ``data: [DONE]`` (CRLF, with our id line) a slow producer exit gets no pings."""
    async with SessionManager(ping_interval=5) as manager:

        async def producer(writer: StreamWriter) -> None:
            await writer.write(b"data: 0\r\n\r\ndata: [DONE]\r\n\r\n")
            await trio.sleep(30)

        data = await read_all(manager.start("c1", producer))
    assert b": ping" not in data and data.endswith(b"\r\n\r\n")


async def test_per_stream_ping_interval_overrides_and_zero_disables(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def silent(writer: StreamWriter) -> None:
        await trio.sleep(10.5)  # not a whole number of intervals: no tie with the 10th ping

    async with SessionManager(ping_interval=5) as manager:
        fast = manager.start("fast", silent, ping_interval=1)
        off = manager.start("off", silent, ping_interval=0)
        assert await read_all(fast) == PING * 10
        assert await read_all(off) == b""


async def test_lookup_matches_ids_and_variants_only() -> None:
    async with SessionManager(ping_interval=None) as manager:
        for cid in ("a", "a::m1", "a::m1::q", "ab", "b::a", "a:x"):
            manager.start(cid, Ticker(count=0))
        await trio.testing.wait_all_tasks_blocked()

        def ids(*requested: str) -> list[str]:
            return [info.conversation_id for info in manager.lookup(requested)]

        assert ids("a") == ["a", "a::m1", "a::m1::q"]
        assert ids("a::m1") == ["a::m1", "a::m1::q"]
        assert ids("a", "a::m1") == ["a", "a::m1", "a::m1::q"]  # no duplicates
        assert ids("b") == ["b::a"]
        assert ids("zzz", "") == []
        manager.stop("a::m1")
        assert ids("a") == ["a", "a::m1::q"]
        info = manager.lookup(["ab"])[0]
        assert (info.is_done, info.total_bytes) == (True, 0)
        assert info.completed_at >= info.started_at > 0


def test_variant_prefixes() -> None:
    assert variant_prefixes("a") == []
    assert variant_prefixes("a::b") == ["a"]
    assert variant_prefixes("conv::org/m:Q8_0::x") == ["conv", "conv::org/m:Q8_0"]


async def test_tombstones_name_the_stop_for_the_ttl_then_go(autojump_clock: trio.abc.Clock) -> None:
    async with SessionManager(ttl=300, gc_interval=60, ping_interval=None) as manager:
        session = manager.start("c1", Ticker(3))
        await read_all(session)
        assert manager.tombstone("c1") is None  # finished is not gone
        assert manager.stop("c1")
        tombstone = manager.tombstone("c1")
        assert tombstone is not None and tombstone.reason is EndReason.STOPPED
        assert tombstone.generation == session.generation
        await trio.sleep(299)
        assert manager.tombstone("c1") is not None
        await trio.sleep(61)  # past the TTL, and a sweep ran: the tombstone went too
        assert manager.tombstone("c1") is None
        assert manager._tombstones == {}


async def test_a_reader_overtaken_by_an_eviction_is_told_so() -> None:
    """A finished session evicted for room while a slow reader is behind: its bytes are
    freed under the reader, which ends with the ``evicted`` end event, and the id keeps a
    tombstone."""
    big = b"data: " + b"x" * (300 * 1024) + b"\n\n"  # more than one read chunk

    async def one_big_event(writer: StreamWriter) -> None:
        await writer.write(big)

    limits = Limits(max_total_bytes=2 * len(big) + 100, max_sessions=None)
    manager = SessionManager(max_bytes=len(big) + 100, ping_interval=None, limits=limits)
    async with manager:
        session = manager.start("c1", one_big_event)
        await trio.testing.wait_all_tasks_blocked()
        assert session.is_done
        chunks = read_then_end(session, 0)
        first = await chunks.__anext__()  # the reader is one chunk in, then stalls
        manager.start("c2", one_big_event)  # the budget takes c1's bytes
        rest = [chunk async for chunk in chunks]
        assert len(first) < len(big)
        assert rest == [end_event_after(EndReason.EVICTED, first)]
        tombstone = manager.tombstone("c1")
        assert tombstone is not None and tombstone.reason is EndReason.EVICTED
