"""The Redis store across instances: two RedisStore objects on one real server."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.redis_fixtures import RedisServer
from tests.stores.test_store_contract import Ticker, read_all, ticks
from trio_streams.core.end_reasons import EndReason, StreamGoneError
from trio_streams.core.producer import StreamWriter
from trio_streams.stores.protocol import StoreUnavailableError
from trio_streams.stores.redis.commands import ORPHAN_MESSAGE
from trio_streams.stores.redis.keys import SEGMENT_BYTES
from trio_streams.stores.redis.store import RedisStore


@asynccontextmanager
async def two_stores(
    server: RedisServer, **options: float | None
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    options.setdefault("ping_interval", None)
    options.setdefault("event_ids", False)  # exact bytes; test_store_contract checks ids
    async with RedisStore(server.url, **options) as a, RedisStore(server.url, **options) as b:  # type: ignore[arg-type]
        yield a, b


async def test_another_instance_reads_resumes_and_looks_up(redis_server: RedisServer) -> None:
    async with two_stores(redis_server) as (a, b):
        handle = await a.start("c1", Ticker(count=20))
        first = b""
        async for chunk in handle.read(0):
            first += chunk
            if len(first) >= 30:
                break
        resumed = await b.open("c1", len(first))
        assert resumed is not None
        rest = await read_all(resumed, len(first))
        assert first + rest == ticks(20)
        [info] = await b.lookup(["c1"])
        assert info.is_done and info.total_bytes == len(ticks(20))
        assert a.local_session_count() == 0 and b.local_session_count() == 0


#: Cancel latencies are measured on real time on a shared 2-core machine: a scheduling
#: hiccup can delay any one sample, so the 100 ms bound applies to the median of several.
TRIALS = 5


async def test_delete_on_another_instance_cancels_the_producer_within_100_ms(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server) as (a, b):
        latencies = []
        for trial in range(TRIALS):
            ticker = Ticker(prefill=60)  # in "prompt processing": it writes nothing
            handle = await a.start(f"c{trial}", ticker)
            await ticker.started.wait()
            assert a.local_session_count() == 1
            begin = trio.current_time()
            assert await b.stop(f"c{trial}") is True
            with trio.fail_after(1):
                await ticker.cancelled.wait()
            latencies.append(trio.current_time() - begin)
            with trio.fail_after(1):
                assert await read_all(handle) == b""
            with pytest.raises(StreamGoneError) as gone:  # its tombstone says why
                await a.open(f"c{trial}", 0)
            assert gone.value.reason is EndReason.STOPPED
        assert statistics.median(latencies) < 0.1, latencies


async def test_replacement_on_another_instance_cancels_the_old_producer_within_100_ms(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server) as (a, b):
        latencies = []
        for trial in range(TRIALS):
            old_ticker = Ticker(count=1000, interval=0.02)
            old = (await a.start(f"c{trial}", old_ticker)).read(0)
            old_bytes = await old.__anext__()  # it is producing
            begin = trio.current_time()
            new = await b.start(f"c{trial}", Ticker(count=3))
            with trio.fail_after(1):
                await old_ticker.cancelled.wait()
            latencies.append(trio.current_time() - begin)
            with trio.fail_after(1):
                old_bytes += b"".join([chunk async for chunk in old])
            assert old_bytes and ticks(1000).startswith(old_bytes)
            assert await read_all(new) == ticks(3)
            reopened = await a.open(f"c{trial}", 0)
            assert reopened is not None and await read_all(reopened) == ticks(3)
        assert statistics.median(latencies) < 0.1, latencies


async def test_a_dead_instance_s_session_is_finalized_after_its_lease(
    redis_server: RedisServer,
) -> None:
    lease = 0.3
    async with two_stores(redis_server, lease_seconds=lease) as (a, b):
        # What a killed instance leaves behind: a live session whose lease nobody renews.
        await a.commands.run(
            "START", "c1", "f" * 32, "dead-instance", int(time.time()), 300, 60, ""
        )
        await a.commands.run("APPEND", "c1", "f" * 32, b"data: 1\n\n", 1 << 20, 0)
        handle = await b.open("c1", 0)
        assert handle is not None
        started = trio.current_time()
        with trio.fail_after(5):
            data = await read_all(handle)
        waited = trio.current_time() - started
        assert data.startswith(b"data: 1\n\n")
        assert ORPHAN_MESSAGE.encode() in data and b'"type":"server_error"' in data
        assert waited < 2 * lease + 1.0  # the lease ran out, then one reader period at most
        [info] = await b.lookup(["c1"])
        assert info.is_done


async def test_lookup_finalizes_an_orphan_too(redis_server: RedisServer) -> None:
    async with two_stores(redis_server) as (a, _):
        await a.commands.run("START", "c1", "e" * 32, "dead-instance", int(time.time()), 50, 60, "")
        await trio.sleep(0.1)  # Redis's own clock expires the 50 ms lease
        [info] = await a.lookup(["c1"])
        assert info.is_done and info.total_bytes > 0


def command_calls(stats: dict[str, Any]) -> dict[str, int]:
    """Calls per command from ``INFO commandstats`` (the INFO calls themselves left out),
    not counting those Redis refused (a script's first ``EVALSHA``, before coredis loads it)."""
    return {
        name.removeprefix("cmdstat_"): int(entry["calls"])
        - int(entry.get("failed_calls", 0))
        - int(entry.get("rejected_calls", 0))
        for name, entry in stats.items()
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    }


async def test_a_waiting_reader_waits_for_a_push_and_does_not_poll(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server, lease_seconds=10) as (a, b):
        go_on = trio.Event()

        async def producer(writer: StreamWriter) -> None:
            await go_on.wait()
            await writer.write(b"data: 1\n\n")

        await a.start("c1", producer)
        handle = await b.open("c1", 0)
        assert handle is not None
        await b.client.config_resetstat()
        received: list[bytes] = []

        async def follow() -> None:
            received.append(await read_all(handle))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.2)  # the follower is subscribed and waiting
            before = command_calls(await b.client.info("commandstats"))
            await trio.sleep(1.0)
            during = command_calls(await b.client.info("commandstats"))
            go_on.set()  # the producer writes and ends: both pushed to the reader
        assert during == before  # a whole second without a single command: no polling
        assert received == [b"data: 1\n\n"]
        assert "xread" not in during and during["subscribe"] == 1


async def test_redis_down_is_unavailable_and_recovery_needs_nothing(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server) as (a, _):
        await read_all(await a.start("c1", Ticker(count=2)))
        redis_server.stop()
        for call in (a.open("c1", 0), a.lookup(["c1"]), a.stop("c1"), a.start("c2", Ticker())):
            with pytest.raises(StoreUnavailableError):
                await call
        redis_server.start()
        assert await read_all(await a.start("c3", Ticker(count=2))) == ticks(2)


@pytest.mark.parametrize("fault", ["out of memory", "paused"])
async def test_a_redis_that_takes_no_write_stops_the_producer_and_ends_its_readers(
    redis_server: RedisServer, fault: str
) -> None:
    """Redis out of memory (it answers, but refuses every write) or paused (no answer at
    all): within a lease the producer is stopped and its reader here ends, with no end
    event (its client resumes), rather than waiting for as long as Redis stays so; a
    reader on another instance ends a few leases later. Once Redis takes writes again,
    the session ends with the interruption event after exactly the bytes the reader had."""
    async with two_stores(redis_server, lease_seconds=1.0) as (a, b):
        ticker = Ticker(count=100_000, interval=0.005)
        handle = await a.start("c1", ticker)
        reader = handle.read(0)
        first = await reader.__anext__()
        elsewhere = await b.open("c1", 0)  # a reader on another instance
        assert elsewhere is not None
        followed = elsewhere.read(0)
        assert (await followed.__anext__()).startswith(b"data: 0\n\n")
        if fault == "paused":
            redis_server.pause()
        else:
            await a.client.config_set({"maxmemory": "1", "maxmemory-policy": "noeviction"})
        try:
            with trio.fail_after(10):
                rest = b"".join([chunk async for chunk in reader])
                await ticker.cancelled.wait()
                # The other instance cannot have the orphan finalized either: after a
                # lease of failed checks its reader ends too.
                async for _ in followed:
                    pass
            assert handle.ending() is None and elsewhere.ending() is None
            assert a.local_session_count() == 0
            if fault == "out of memory":
                with pytest.raises(StoreUnavailableError):
                    await b.open("c1", 0)
        finally:
            if fault == "paused":
                redis_server.resume()
            else:
                await a.client.config_set({"maxmemory": "0"})
        read = first + rest
        assert read == ticks(read.count(b"\n\n"))  # whole events, none lost or repeated
        await trio.sleep(1.0)  # the producer's lease runs out: the session is an orphan
        resumed = await b.open("c1", len(read))
        assert resumed is not None
        with trio.fail_after(10):
            tail = await read_all(resumed, len(read))
        assert ORPHAN_MESSAGE.encode() in tail, tail[:300]
        assert ticks(100_000).startswith(read + tail[: tail.index(b"data: {")])


async def test_shutting_down_a_reading_instance_ends_its_readers_only(
    redis_server: RedisServer,
) -> None:
    async with RedisStore(redis_server.url, ping_interval=None, event_ids=False) as a:
        ticker = Ticker(count=1000, interval=0.02)
        await a.start("c1", ticker)
        async with RedisStore(redis_server.url, ping_interval=None, event_ids=False) as b:
            handle = await b.open("c1", 0)
            assert handle is not None
            reader = handle.read(0)
            await reader.__anext__()
            b.shutdown()
            with trio.fail_after(1):
                async for _ in reader:
                    pass
        assert not ticker.cancelled.is_set()  # the producer on A goes on
        [info] = await a.lookup(["c1"])
        assert not info.is_done
        await a.stop("c1")


async def test_finished_sessions_expire_through_redis_ttl(redis_server: RedisServer) -> None:
    async with RedisStore(redis_server.url, ttl=1, ping_interval=None, event_ids=False) as store:
        await read_all(await store.start("c1", Ticker(count=1)))
        await read_all(await store.start("c1::v", Ticker(count=1)))
        assert len(await store.lookup(["c1"])) == 2
        assert await store.client.ttl("trio-streams:meta:c1") == 1
        await trio.sleep(1.5)  # Redis's own clock: a short, bounded real wait
        assert await store.lookup(["c1"]) == []
        assert await store.open("c1", 0) is None
        assert await store.client.keys("trio-streams:*") == {b"trio-streams:seq"}


async def test_readers_on_one_instance_share_one_subscription(redis_server: RedisServer) -> None:
    async with two_stores(redis_server) as (a, b):
        go_on = trio.Event()

        async def producer(writer: StreamWriter) -> None:
            await go_on.wait()
            for index in range(10):
                await writer.write(f"data: {index}\n\n".encode())
                await trio.sleep(0.01)

        await a.start("c1", producer)
        await b.client.config_resetstat()
        outputs: list[bytes] = []

        async def follow() -> None:
            handle = await b.open("c1", 0)
            assert handle is not None
            outputs.append(await read_all(handle))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(follow)
            await trio.sleep(0.2)
            go_on.set()
        assert outputs == [ticks(10)] * 50
        calls = command_calls(await b.client.info("commandstats"))
        # One follower for 50 readers: one subscription, one look at the log's end, and
        # the bytes pushed to it; no blocking read.
        assert calls["subscribe"] == 1 and calls["xrevrange"] == 1
        assert "xread" not in calls


async def test_a_reader_arriving_as_the_last_one_leaves_follows_to_the_end(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server) as (a, b):
        await a.start("c1", Ticker(count=20))
        first = await b.open("c1", 0)
        assert first is not None
        reader = first.read(0)
        got = await reader.__anext__()
        second = await b.open("c1", len(got))
        assert second is not None
        await reader.aclose()  # the last reader leaves: its follower stops...
        with trio.fail_after(5):  # ...and a resume starts reading at that very moment
            assert got + await read_all(second, len(got)) == ticks(20)
        [info] = await b.lookup(["c1"])
        assert info.is_done


async def test_redis_refusing_writes_is_unavailable_too(redis_server: RedisServer) -> None:
    async with two_stores(redis_server) as (a, b):
        await read_all(await a.start("c0", Ticker(count=1)))
        # A read-only replica (of a primary it cannot reach) refuses every write.
        await a.client.replicaof("127.0.0.1", 1)
        with pytest.raises(StoreUnavailableError, match="read only replica"):
            await a.start("c1", Ticker())
        with pytest.raises(StoreUnavailableError, match="read only replica"):
            await b.stop("c0")
        await a.client.replicaof()
        assert await read_all(await a.start("c1", Ticker(count=1))) == ticks(1)
        assert await b.stop("c0") is True


async def test_the_scripts_tolerate_a_retry_after_a_lost_reply(redis_server: RedisServer) -> None:
    """coredis retries a command whose connection dropped: applying START or APPEND twice
    must change nothing."""
    async with two_stores(redis_server) as (a, b):
        generation = "a" * 32
        for _ in range(2):
            await a.commands.run("START", "c1", generation, "x", int(time.time()), 60_000, 60, "")
        handle = await b.open("c1", 0)
        assert handle is not None
        received: list[bytes] = []

        async def follow() -> None:
            received.append(await read_all(handle))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)  # a live reader, from the start of the log
            for _ in range(2):
                assert (
                    await a.commands.run("APPEND", "c1", generation, b"data: 1\n\n", 1 << 20, 0)
                    == 9
                )
            await a.commands.run("FINALIZE", "c1", generation, int(time.time()), 60, "", 1 << 20)
        assert received == [b"data: 1\n\n"]


async def test_a_long_backlog_comes_back_whole_in_bounded_chunks(
    redis_server: RedisServer,
) -> None:
    """A replay longer than one byte segment (1 MiB), from the start, from inside an
    entry and from a segment's boundary, on another instance: the bytes exactly, in
    chunks no larger than a segment."""
    events = [b"data: %05d %s\n\n" % (index, b"x" * 700) for index in range(2000)]
    everything = b"".join(events)

    async def producer(writer: StreamWriter) -> None:
        for event in events:
            await writer.write(event)

    async with two_stores(redis_server, max_bytes=4 << 20) as (a, b):
        await read_all(await a.start("long", producer))
        for offset in (0, 12_345, SEGMENT_BYTES):
            handle = await b.open("long", offset)
            assert handle is not None
            chunks = [chunk async for chunk in handle.read(offset)]
            assert b"".join(chunks) == everything[offset:]
            # One GETRANGE per segment (the entries' 256 KiB reads would take more).
            assert len(chunks) == (2 if offset < SEGMENT_BYTES else 1)
            assert max(map(len, chunks)) <= SEGMENT_BYTES


async def test_trimmed_and_gapped_logs_read_the_same_from_segments_and_entries(
    redis_server: RedisServer,
) -> None:
    """A log capped at two segments: the segments wholly before its kept bytes are
    deleted with the entries they repeat, an append larger than the cap leaves the
    segment it starts inside unwritten (no zero padding read as bytes), and a reader on
    another instance gets exactly the bytes kept, from the segments or, where there are
    none, from the stream's entries."""
    cap = 2 * SEGMENT_BYTES
    small = [b"data: %05d %s\n\n" % (index, b"y" * 900) for index in range(3500)]
    huge = b"data: " + b"z" * (cap + 1000) + b"\n\n"
    tail = [b"data: after %d\n\n" % index for index in range(100)]
    everything = b"".join(small) + huge + b"".join(tail)

    async def producer(writer: StreamWriter) -> None:
        for event in small:
            await writer.write(event)
        await writer.write(huge)
        for event in tail:
            await writer.write(event)

    async with two_stores(redis_server, max_bytes=cap) as (a, b):
        handle = await a.start("capped", producer)
        # A reader at the very end returns once the session is finalized.
        assert [chunk async for chunk in handle.read(len(everything))] == []
        [info] = await b.lookup(["capped"])
        assert info.is_done
        assert info.total_bytes == len(everything)
        dropped = len(everything) - cap
        assert info.dropped_prefix == dropped
        keys = await b.client.keys(f"trio-streams:bytes:{info.generation}:*")
        lengths = {int(key.split(b":")[3]): int(await b.client.strlen(key)) for key in keys}
        # Segments wholly before the kept bytes are gone; the one the huge append began
        # inside keeps only what it had before the gap (never zero padding up to the kept
        # bytes); every later one is whole from its start.
        first = dropped // SEGMENT_BYTES + 1
        last = len(everything) // SEGMENT_BYTES
        assert set(lengths) - {first - 1} == set(range(first, last + 1))
        assert lengths.get(first - 1, 0) <= dropped - (first - 1) * SEGMENT_BYTES
        assert [lengths[index] for index in range(first, last)] == [SEGMENT_BYTES] * (last - first)
        assert lengths[last] == len(everything) - last * SEGMENT_BYTES
        # Written again at their exact size (APPEND alone leaves up to twice allocated).
        for index in range(first, last + 1):
            key = f"trio-streams:bytes:{info.generation}:{index}:capped"
            assert await b.client.memory_usage(key) < lengths[index] + 4096
        for offset in (dropped, dropped + 1, first * SEGMENT_BYTES):
            handle = await b.open("capped", offset)
            assert handle is not None
            assert b"".join([chunk async for chunk in handle.read(offset)]) == everything[offset:]
