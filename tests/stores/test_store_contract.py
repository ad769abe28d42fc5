"""The session contract, run against both stores: in memory and shared through Redis.

Real time, short intervals: the Redis store waits on sockets, which trio's autojump
clock would skip over (the in-memory manager's timing is tested under the virtual
clock in ``test_manager.py``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.redis_fixtures import RedisServer
from trio_streams.core.end_reasons import EndReason, StreamGoneError, end_event
from trio_streams.core.manager import ManagerClosedError, SessionManager
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import OffsetBeyondEndError, OffsetLostError
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.protocol import SessionStore, StreamHandle
from trio_streams.stores.reader import read_then_end
from trio_streams.stores.redis.store import RedisStore

MakeStore = Callable[..., SessionStore]


class Ticker:
    """``count`` numbered events, one per ``interval`` seconds; records how it ended."""

    def __init__(self, count: int = 10, interval: float = 0.01, prefill: float = 0.0) -> None:
        self.count = count
        self.interval = interval
        self.prefill = prefill
        self.started = trio.Event()
        self.finished = False
        self.cancelled = trio.Event()

    async def __call__(self, writer: StreamWriter) -> None:
        self.started.set()
        try:
            await trio.sleep(self.prefill)
            for index in range(self.count):
                await writer.write(f"data: {index}\n\n".encode())
                await trio.sleep(self.interval)
            self.finished = True
        except trio.Cancelled:
            self.cancelled.set()
            raise


def ticks(count: int, first: int = 0) -> bytes:
    return b"".join(f"data: {index}\n\n".encode() for index in range(first, count))


async def read_all(handle: StreamHandle, offset: int = 0) -> bytes:
    return b"".join([chunk async for chunk in handle.read(offset)])


async def opened(store: SessionStore, conversation_id: str, offset: int = 0) -> StreamHandle:
    handle = await store.open(conversation_id, offset)
    assert handle is not None
    return handle


@pytest.fixture(params=["memory", "redis"])
def make_store(request: pytest.FixtureRequest) -> MakeStore:
    """Build stores of the kind under test (every Redis one on the same server)."""
    server: RedisServer | None = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")

    def make(**options: Any) -> SessionStore:
        options.setdefault("ping_interval", None)
        # Exact bytes in, exact bytes out; test_event_ids_are_the_same_in_both_stores
        # checks the ids.
        options.setdefault("event_ids", False)
        if server is None:
            options.pop("lease_seconds", None)
            return MemoryStore(SessionManager(**options))
        return RedisStore(server.url, **options)

    return make


async def test_a_stream_is_read_whole_and_resumed_from_any_offset(make_store: MakeStore) -> None:
    async with make_store() as store:
        ticker = Ticker(count=5)
        first = await store.start("c1", ticker)
        assert await read_all(first) == ticks(5)
        assert ticker.finished
        whole = ticks(5)
        for offset in (0, 1, 9, len(whole) - 1, len(whole)):
            assert await read_all(await opened(store, "c1", offset), offset) == whole[offset:]
        [info] = await store.lookup(["c1"])
        assert (info.conversation_id, info.is_done, info.total_bytes) == ("c1", True, len(whole))
        assert info.completed_at >= info.started_at > 0


async def test_a_reader_beyond_the_end_waits_for_those_bytes(make_store: MakeStore) -> None:
    async with make_store() as store:
        go_on = trio.Event()

        async def producer(writer: StreamWriter) -> None:
            await writer.write(b"abc")
            await go_on.wait()
            await writer.write(b"defg")

        await store.start("c1", producer)
        received: list[bytes] = []
        handle = await opened(store, "c1", 4)

        async def follow() -> None:
            async for chunk in handle.read(4):
                received.append(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.1)
            assert received == []
            go_on.set()
        assert b"".join(received) == b"efg"


async def test_the_cap_drops_the_oldest_bytes_and_counts_them_exactly(
    make_store: MakeStore,
) -> None:
    async with make_store(max_bytes=8) as store:

        async def producer(writer: StreamWriter) -> None:
            for part in (b"01234", b"56789", b"abcde", b"fghij"):
                await writer.write(part)

        # A reader from 12 waits for those bytes, then ends when the stream is finalized.
        assert await read_all(await store.start("c1", producer), 12) == b"cdefghij"
        [info] = await store.lookup(["c1"])
        assert info.total_bytes == 20
        with pytest.raises(OffsetLostError) as lost:
            await store.open("c1", 11)
        assert lost.value.dropped_prefix == 12
        assert await read_all(await opened(store, "c1", 12), 12) == b"cdefghij"
        assert await read_all(await opened(store, "c1", 15), 15) == b"fghij"

        async def oversized(writer: StreamWriter) -> None:
            await writer.write(b"x" * 10 + b"ABCDEFGHIJ")

        assert await read_all(await store.start("c2", oversized), 12) == b"CDEFGHIJ"
        with pytest.raises(OffsetLostError):
            await store.open("c2", 11)
        assert await read_all(await opened(store, "c2", 12), 12) == b"CDEFGHIJ"


async def test_replacement_cancels_the_old_producer_and_ends_its_readers(
    make_store: MakeStore,
) -> None:
    async with make_store() as store:
        old_ticker, new_ticker = Ticker(count=1000, interval=0.02), Ticker(count=3)
        old = await store.start("c1", old_ticker)
        old_bytes: list[bytes] = []
        got_some = trio.Event()

        async def follow_old() -> None:
            async for chunk in old.read(0):
                old_bytes.append(chunk)
                got_some.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow_old)
            await got_some.wait()
            new = await store.start("c1", new_ticker)
            with trio.fail_after(1):
                await old_ticker.cancelled.wait()
        data = b"".join(old_bytes)
        assert data and ticks(1000).startswith(data)
        assert await read_all(new) == ticks(3)
        assert await read_all(await opened(store, "c1")) == ticks(3)
        assert not old_ticker.finished and new_ticker.finished


async def test_stop_cancels_a_producer_in_prefill_and_evicts(make_store: MakeStore) -> None:
    async with make_store() as store:
        ticker = Ticker(prefill=60)
        handle = await store.start("c1", ticker)
        assert [info.conversation_id for info in await store.lookup(["c1"])] == ["c1"]
        await ticker.started.wait()
        assert await store.stop("c1") is True
        with trio.fail_after(1):
            assert await read_all(handle) == b""
            await ticker.cancelled.wait()
        with pytest.raises(StreamGoneError):  # a tombstone says why, for the TTL
            await store.open("c1", 0)
        assert await store.lookup(["c1"]) == []
        assert await store.stop("c1") is False  # idempotent


async def test_lookup_matches_ids_and_variants_only(make_store: MakeStore) -> None:
    async with make_store() as store:
        for cid in ("a", "a::m1", "a::m1::q", "ab", "b::a", "a:x"):
            await read_all(await store.start(cid, Ticker(count=0)))

        async def ids(*requested: str) -> list[str]:
            return [info.conversation_id for info in await store.lookup(requested)]

        assert await ids("a") == ["a", "a::m1", "a::m1::q"]
        assert await ids("a::m1") == ["a::m1", "a::m1::q"]
        assert await ids("a", "a::m1") == ["a", "a::m1", "a::m1::q"]  # no duplicates
        assert await ids("b") == ["b::a"]
        assert await ids("zzz") == []
        await store.stop("a::m1")
        assert await ids("a") == ["a", "a::m1::q"]
        assert await store.open("nope", 0) is None


async def test_a_failing_producer_ends_its_stream_with_an_error_event(
    make_store: MakeStore,
) -> None:
    async with make_store() as store:

        async def broken(writer: StreamWriter) -> None:
            await writer.write(b"data: 1\n\n")
            raise RuntimeError("model crashed")

        data = await read_all(await store.start("c1", broken))
        assert data.startswith(b"data: 1\n\n")
        assert b'"message":"generation failed: model crashed"' in data
        [info] = await store.lookup(["c1"])
        assert info.is_done
        assert await read_all(await store.start("c2", Ticker(count=1))) == ticks(1)


async def test_plain_streams_are_not_registered(make_store: MakeStore) -> None:
    async with make_store() as store:
        ticker = Ticker(count=1000)
        handle = await store.start(None, ticker)
        await ticker.started.wait()
        handle.cancel()
        with trio.fail_after(1):
            await ticker.cancelled.wait()
        assert await store.lookup([""]) == []


async def test_shutdown_cancels_producers_and_ends_every_reader(make_store: MakeStore) -> None:
    async with make_store() as store:
        tickers = [Ticker(count=1000, interval=0.02) for _ in range(2)]
        handles = [await store.start("a", tickers[0]), await store.start("a::m", tickers[1])]
        outputs: list[bytes] = []

        async def follow(handle: StreamHandle, task_status: trio.TaskStatus[None]) -> None:
            reader = handle.read(0)
            first = await reader.__anext__()
            task_status.started()  # this stream is producing
            outputs.append(first + b"".join([chunk async for chunk in reader]))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for handle in handles:
                    await nursery.start(follow, handle)
                store.shutdown()
            for ticker in tickers:  # the readers may end before the producers run again
                await ticker.cancelled.wait()
        for output in outputs:
            # With Redis the log ends with the interruption event (its producer died with
            # this instance, for the readers elsewhere); in memory it just ends.
            produced, _, failure = output.partition(b'data: {"error"')
            assert produced and ticks(1000).startswith(produced)
            assert not failure or b"producing it shut down" in failure
        with pytest.raises(ManagerClosedError):
            await store.start("late", Ticker())


async def test_keep_alive_pings_an_idle_stream(make_store: MakeStore) -> None:
    async with make_store(ping_interval=0.1) as store:

        async def slow(writer: StreamWriter) -> None:
            await trio.sleep(0.35)
            await writer.write(b"data: 1\n\n")
            await trio.sleep(0.05)  # busy again before the next ping is due

        data = await read_all(await store.start("c1", slow))
        # About one ping per 0.1 s of silence (real time: allow the scheduler a margin),
        # all in the log before the event, none after it.
        pings, _, rest = data.rpartition(b": ping\n\n")
        assert rest == b"data: 1\n\n"
        assert pings.replace(b": ping\n\n", b"") == b""
        assert 2 <= data.count(b": ping") <= 4


async def test_no_keep_alive_after_the_done_sentinel(make_store: MakeStore) -> None:
    async with make_store(event_ids=True, ping_interval=0.05) as store:

        async def producer(writer: StreamWriter) -> None:
            await trio.sleep(0.12)  # idle before the answer: pinged
            await writer.write(b"data: a\n\ndata: [DONE]\n\n")
            await trio.sleep(0.3)  # cleanup after the answer: six intervals, no pings

        data = await read_all(await store.start("c1", producer))
    before, _, after = data.partition(b"data: a\n")
    assert before.count(b": ping") >= 1
    assert b": ping" not in after
    assert re.search(rb"data: \[DONE\]\nid: [0-9a-f]{16}-%d\n\n\Z" % len(data), after)


async def test_event_ids_are_the_same_in_both_stores(make_store: MakeStore) -> None:
    async with make_store(event_ids=True, ping_interval=0.05) as store:

        async def producer(writer: StreamWriter) -> None:
            await writer.write(b"data: a\n\n")
            await trio.sleep(0.12)  # pings come in between: comments get no id
            await writer.write(b"event: x\ndata: b\n\ndata: c\n\n")
            raise RuntimeError("boom")  # the error event is stamped too

        data = await read_all(await store.start("c1", producer))
    events = data.split(b"\n\n")[:-1]
    ends = list(itertools.accumulate(len(event) + 2 for event in events))
    for event, end in zip(events, ends, strict=True):
        if event.startswith(b": ping"):
            assert b"id:" not in event
        else:  # the generation, and the offset just after the event
            assert re.search(rb"\nid: [0-9a-f]{16}-%d\Z" % end, event), event
    failure = b'data: {"error":{"code":500,"message":"generation failed: boom",'
    firsts = [event.split(b"\n")[0] for event in events if not event.startswith(b":")]
    assert firsts[:3] == [b"data: a", b"event: x", b"data: c"]
    assert firsts[3].startswith(failure) and len(firsts) == 4


# -- generations and end reasons (issue 15) --------------------------------------------------


async def read_with_end(handle: StreamHandle, offset: int = 0) -> bytes:
    """What a reader's response body holds: the bytes, then the end event if any."""
    return b"".join([chunk async for chunk in read_then_end(handle, offset)])


async def test_every_reader_learns_why_its_stream_ended(make_store: MakeStore) -> None:
    async with make_store() as store:
        bodies: dict[str, bytes] = {}

        async def follow(name: str, handle: StreamHandle) -> None:
            bodies[name] = await read_with_end(handle)

        async def failing(writer: StreamWriter) -> None:
            await writer.write(b"data: 0\n\n")
            raise RuntimeError("model fell over")

        async with trio.open_nursery() as nursery:
            for name in ("stopped", "replaced"):
                nursery.start_soon(follow, name, await store.start(name, Ticker(1000, 0.01)))
            nursery.start_soon(follow, "done", await store.start("done", Ticker(3)))
            nursery.start_soon(follow, "failed", await store.start("failed", failing))
            await trio.sleep(0.1)
            await store.stop("stopped")
            await store.start("replaced", Ticker(3))
        stopped, reason = bodies["stopped"], EndReason.STOPPED
        assert stopped.startswith(ticks(2)) and stopped.endswith(end_event(reason))
        assert bodies["replaced"].endswith(end_event(EndReason.REPLACED))
        assert bodies["done"] == ticks(3)  # the answer is complete: nothing more
        # The failure's error event is in the log itself: no end event after it.
        assert bodies["failed"].startswith(b"data: 0\n\n")
        assert b"generation failed: model fell over" in bodies["failed"]
        assert b": end " not in bodies["failed"]


async def test_a_stop_pinned_to_a_replaced_generation_leaves_the_new_one(
    make_store: MakeStore,
) -> None:
    """A Stop meant for the answer a client shows, arriving after another client started a
    newer one: checked and stopped in one step, it stops nothing."""
    async with make_store() as store:
        old = await store.start("c1", Ticker(prefill=60))
        ticker = Ticker(prefill=60)
        new = await store.start("c1", ticker)
        await ticker.started.wait()
        assert await store.stop("c1", generation=old.generation) is False
        [info] = await store.lookup(["c1"])
        assert (info.generation, info.is_done) == (new.generation, False)
        assert await store.stop("c1", generation=new.generation) is True
        with trio.fail_after(1):
            await ticker.cancelled.wait()
        assert await store.lookup(["c1"]) == []


async def test_a_pinned_resume_never_reads_another_generation(make_store: MakeStore) -> None:
    async with make_store() as store:
        old = await store.start("c1", Ticker(3))
        assert await read_all(old) == ticks(3)
        new = await store.start("c1", Ticker(5))
        assert old.generation != new.generation
        with pytest.raises(StreamGoneError) as gone:
            await store.open("c1", 9, generation=old.generation)
        assert gone.value.reason is EndReason.REPLACED
        pinned = await store.open("c1", 9, generation=new.generation)
        assert pinned is not None and await read_all(pinned, 9) == ticks(5)[9:]
        unpinned = await opened(store, "c1", 9)  # llama.cpp's meaning: the current one
        assert unpinned.generation == new.generation
        [info] = await store.lookup(["c1"])
        assert (info.generation, info.dropped_prefix) == (new.generation, 0)
        # Past the end of a finished stream: an error (at the end: nothing to read).
        with pytest.raises(OffsetBeyondEndError):
            await store.open("c1", len(ticks(5)) + 1)
        assert await read_all(await opened(store, "c1", len(ticks(5))), len(ticks(5))) == b""


async def test_a_stopped_session_leaves_a_tombstone_for_its_owner(make_store: MakeStore) -> None:
    async with make_store() as store:
        handle = await store.start("c1", Ticker(3), owner="key-a")
        await read_all(handle)
        assert await store.stop("c1", owner="key-a")
        for pinned in (None, handle.generation):
            with pytest.raises(StreamGoneError) as gone:
                await store.open("c1", 0, generation=pinned, owner="key-a")
            assert gone.value.reason is EndReason.STOPPED
        assert await store.open("c1", 0, owner="key-b") is None  # another key learns nothing
        assert await store.lookup(["c1"], owner="key-a") == []  # gone, as llama.cpp has it
        # A new session under the id is read as usual; the stopped generation stays stopped.
        await store.start("c1", Ticker(2), owner="key-a")
        assert await store.open("c1", 0, owner="key-a") is not None
        with pytest.raises(StreamGoneError) as gone:
            await store.open("c1", 0, generation=handle.generation, owner="key-a")
        assert gone.value.reason is EndReason.STOPPED


async def test_tombstones_expire_with_the_ttl_on_redis(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, ttl=1, ping_interval=None) as store:
        await read_all(await store.start("c1", Ticker(2)))
        await store.stop("c1")
        with pytest.raises(StreamGoneError):
            await store.open("c1", 0)
        await trio.sleep(1.2)  # Redis's own clock expires the tombstone's key
        assert await store.open("c1", 0) is None


async def test_shutdown_tells_readers_to_resume_elsewhere(make_store: MakeStore) -> None:
    async with make_store() as store:
        handle = await store.start("c1", Ticker(1000, 0.01))
        body = b""

        async def follow() -> None:
            nonlocal body
            body = await read_with_end(handle)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.1)
            store.shutdown()
        assert body.startswith(ticks(2))
        assert body.endswith(end_event(EndReason.SHUTDOWN))


async def test_cancel_stops_the_producer_and_keeps_its_log(make_store: MakeStore) -> None:
    """What ``POST /v1/responses/{id}/cancel`` needs: unlike stop, the session stays."""
    async with make_store() as store:
        ticker = Ticker(count=1000, interval=0.01)
        handle = await store.start("c1", ticker, owner="key")
        await ticker.started.wait()
        await trio.sleep(0.05)
        assert await store.cancel("c1", owner="another key") is False
        assert await store.cancel("unknown", owner="key") is False
        assert await store.cancel("c1", owner="key") is True
        with trio.fail_after(2):
            await ticker.cancelled.wait()
            data = await read_all(handle)
        assert data and ticks(1000).startswith(data) and not ticker.finished
        [info] = await store.lookup(["c1"], owner="key")
        assert info.is_done and info.total_bytes == len(data)
        kept = await store.open("c1", 0, owner="key")
        assert kept is not None and await read_all(kept) == data
        assert await store.cancel("c1", owner="key") is True  # idempotent
