"""What the Redis store costs per append and per follower, counted on a real server.

- one flusher per instance: many sessions appending at once share round trips;
- readers on the producing instance read its local log, with no Redis command at all;
- readers on another instance share one pub/sub connection: the connections of an
  instance (Redis's own ``CLIENT LIST``) do not grow with the sessions it follows;
- a finished session's backlog comes back in reads of exactly 256 KiB;
- a producer cannot run ahead of a stalled Redis by more than its outbox.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.testing

from tests.redis_fixtures import RedisServer
from tests.stores.test_redis_store import command_calls, two_stores
from tests.stores.test_store_contract import Ticker, read_all, ticks
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import MAX_READ_CHUNK
from trio_streams.stores.redis.keys import SEGMENT_BYTES
from trio_streams.stores.redis.outbox import OUTBOX_BYTES
from trio_streams.stores.redis.store import RedisStore


async def calls_now(store: RedisStore) -> dict[str, int]:
    return command_calls(await store.client.info("commandstats"))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {name: count - before.get(name, 0) for name, count in after.items()}


async def test_many_sessions_appending_at_once_share_round_trips(
    redis_server: RedisServer,
) -> None:
    sessions, events = 100, 20
    go, finish, all_written = trio.Event(), trio.Event(), trio.Event()
    written = 0

    async def producer(writer: StreamWriter) -> None:
        nonlocal written
        await go.wait()
        for index in range(events):
            await writer.write(f"data: {index}\n\n".encode())
            written += 1
            await trio.lowlevel.checkpoint()  # the other producers write in between
        if written == sessions * events:
            all_written.set()
        await finish.wait()

    async with two_stores(redis_server, lease_seconds=30) as (a, b):
        for index in range(sessions):
            await a.start(f"c{index}", producer)
        before = await calls_now(a)
        go.set()
        with trio.fail_after(10):
            await all_written.wait()
            for local in a._producing.running.values():
                await a._producing.flusher.drained(local)  # Redis has every byte
        spent = delta(await calls_now(a), before)
        finish.set()
        # 2,000 appends; one script call carries the waiting bytes of every session.
        assert spent["evalsha"] <= sessions * events / 20, spent
        for index in (0, sessions // 2, sessions - 1):
            handle = await b.open(f"c{index}", 0)
            assert handle is not None
            with trio.fail_after(5):
                assert await read_all(handle) == ticks(events)


async def test_readers_on_the_producing_instance_send_redis_nothing(
    redis_server: RedisServer,
) -> None:
    async with two_stores(redis_server, lease_seconds=30, event_ids=True) as (a, b):
        go = trio.Event()

        async def producer(writer: StreamWriter) -> None:
            await go.wait()
            for index in range(30):
                await writer.write(f"data: {index}\n\n".encode())
                await trio.sleep(0.002)

        handle = await a.start("c1", producer)
        flusher = a._producing.flusher
        outputs: list[bytes] = []

        async def follow(offset: int) -> None:
            reader = handle if offset == 0 else await a.open("c1", offset)
            assert reader is not None
            outputs.append(await read_all(reader, offset))

        before, round_trips = await calls_now(a), flusher.round_trips
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(follow, 0)
            await trio.sleep(0.1)
            go.set()
        spent = delta(await calls_now(a), before)
        whole = outputs[0]
        assert outputs == [whole] * 50
        # The appends' round trips and the one FINALIZE: nothing for 50 readers.
        assert spent["evalsha"] == flusher.round_trips - round_trips + 1, spent
        assert all(spent.get(name, 0) == 0 for name in ("subscribe", "xread", "xrevrange")), spent
        # FINALIZE drops the entries (the segments hold every byte): nothing to compact.
        assert spent.get("xrange", 0) == 0, spent
        # The ids stamped here are the offsets Redis stores: another instance serves
        # the same bytes, and every event's id is the offset just after it.
        assert await read_all(await opened_on(b, "c1")) == whole
        events = whole.split(b"\n\n")[:-1]
        ends = itertools.accumulate(len(event) + 2 for event in events)
        prefix = handle.generation.encode()
        assert all(
            event.endswith(b"\nid: %s-%d" % (prefix, end))
            for event, end in zip(events, ends, strict=True)
        )
        # A resume at an offset, here and there, from inside an event: the same bytes.
        middle = len(whole) // 2 + 3
        here = await a.open("c1", middle)
        there = await b.open("c1", middle)
        assert here is not None and there is not None
        assert await read_all(here, middle) == await read_all(there, middle) == whole[middle:]


async def opened_on(store: RedisStore, conversation_id: str, offset: int = 0) -> Any:
    handle = await store.open(conversation_id, offset)
    assert handle is not None
    return handle


async def test_an_instance_following_200_sessions_holds_a_few_connections(
    redis_server: RedisServer,
) -> None:
    sessions, limit = 200, 8
    async with two_stores(redis_server) as (a, b):
        tickers = [Ticker(count=20, interval=0.05, prefill=0.5) for _ in range(sessions)]
        received: dict[int, bytes] = {}

        async def follow(index: int) -> None:
            handle = await opened_on(b, f"c{index}")
            received[index] = await read_all(handle)

        most: dict[str, int] = {}
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for index, ticker in enumerate(tickers):
                    await a.start(f"c{index}", ticker)
                    nursery.start_soon(follow, index)
                for _ in range(8):  # while every session is followed, and streams
                    await trio.sleep(0.2)
                    clients = await b.client.client_list()
                    for store in (a, b):
                        count = sum(1 for c in clients if c.get("name") == store.client_name)
                        most[store.client_name] = max(most.get(store.client_name, 0), count)
        assert received == {index: ticks(20) for index in range(sessions)}
        assert 0 < most[b.client_name] <= limit, most
        assert 0 < most[a.client_name] <= limit, most


TOKEN = b"data: " + b"x" * 690 + b"\n\n"


async def token_sized_log(
    store: RedisStore,
    conversation_id: str,
    count: int,
    generation: str = "b" * 32,
    *,
    segments: bool = True,
) -> bytes:
    """A finished log of ``count`` one-event entries (one APPEND each, as a slow stream
    leaves them), written straight through the scripts. Without ``segments`` they are
    deleted before the finalize, as if an older version had written the log: it then
    keeps its entries."""
    await store.commands.run("START", conversation_id, generation, "x", 0, 60_000, 60, "")
    for index in range(count):
        at = index * len(TOKEN)
        end = await store.commands.run("APPEND", conversation_id, generation, TOKEN, 4 << 20, at)
        assert end == at + len(TOKEN)
    if not segments:
        for key in await store.client.keys(f"trio-streams:bytes:{generation}:*"):
            await store.client.delete([key])
    await store.commands.run("FINALIZE", conversation_id, generation, 0, 60, "", 4 << 20)
    return TOKEN * count


async def test_a_finished_backlog_comes_back_in_segments_else_in_reads_of_256_kib(
    redis_server: RedisServer,
) -> None:
    """A backlog is one ``GETRANGE`` per byte segment (to the segment's end), from an
    entry's start or from inside one. Without segments (a log written before they
    existed), every read but the last is exactly ``MAX_READ_CHUNK``, one ``RANGE`` call
    each, however many entries it spans."""
    async with two_stores(redis_server, max_bytes=4 << 20) as (a, b):
        everything = await token_sized_log(a, "long", 1400)  # 0.98 MiB in 1,400 entries
        longer = await token_sized_log(a, "longer", 1600, "e" * 32)  # 1.1 MiB
        # Finalized with whole segments, a log keeps only its terminal marker entry.
        for generation, name in (("b" * 32, "long"), ("e" * 32, "longer")):
            assert await a.client.xlen(f"trio-streams:log:{generation}:{name}") == 1
        # Without segments, the log is compacted: entries end at every multiple of the
        # chunk (then the last byte, then the terminal marker), the offsets unchanged.
        await token_sized_log(a, "long-old", 1400, "c" * 32, segments=False)
        entries = await a.client.xrange("trio-streams:log:" + "c" * 32 + ":long-old")
        ends = [int(entry.identifier.split(b"-")[0]) for entry in entries]
        chunk_ends = list(range(MAX_READ_CHUNK, len(everything), MAX_READ_CHUNK))
        assert ends == [*chunk_ends, len(everything), len(everything)]
        # Past 1 MiB (or 2,048 entries) a log stays as it is, so that no finalize holds
        # Redis for long; its replay is cut the same way from the token-sized entries.
        await token_sized_log(a, "longer-old", 1600, "f" * 32, segments=False)
        assert await a.client.xlen("trio-streams:log:" + "f" * 32 + ":longer-old") == 1601
        for segments in (True, False):
            suffix = "" if segments else "-old"
            cases = ((b, "long", 0), (b, "long", 12_345), (a, "long", 0), (b, "longer", 0))
            cases += ((b, "longer", 12_345),)
            for store, base, offset in cases:
                name = base + suffix
                expected = (everything if base == "long" else longer)[offset:]
                before = await calls_now(store)
                handle = await opened_on(store, name, offset)
                chunks = [chunk async for chunk in handle.read(offset)]
                assert b"".join(chunks) == expected
                spent = delta(await calls_now(store), before)
                # Each read tries the segment first.
                assert spent["getrange"] == len(chunks)
                if segments:
                    ends = [*range(SEGMENT_BYTES, offset + len(expected), SEGMENT_BYTES)]
                    assert [len(chunk) for chunk in chunks[:-1]] == [
                        end - start for start, end in itertools.pairwise([offset, *ends])
                    ]
                    assert spent["evalsha"] == 1  # the OPEN only
                else:
                    assert {len(chunk) for chunk in chunks[:-1]} == {MAX_READ_CHUNK}
                    # One script call per chunk: the entries are joined inside Redis.
                    assert spent["evalsha"] == len(chunks) + 1  # and the OPEN


async def test_a_replay_reads_its_next_chunk_while_the_reader_writes_this_one(
    redis_server: RedisServer,
) -> None:
    """Between two chunks the reader is away writing to its client: by then the next
    chunk is read (or being read) already, and no chunk is read twice."""
    async with two_stores(redis_server, max_bytes=4 << 20) as (a, b):
        everything = await token_sized_log(a, "long", 3100)  # 2.06 MiB: 3 segments
        before = await calls_now(b)
        handle = await opened_on(b, "long")
        follower = None
        received = b""
        async for chunk in handle.read(0):
            received += chunk
            # The client's write: every other task runs meanwhile.
            await trio.testing.wait_all_tasks_blocked()
            follower = follower or next(iter(b._reading._followers.values()))
            if len(received) < len(everything):
                assert follower.holds(len(received))
        assert received == everything
        spent = delta(await calls_now(b), before)
        assert spent["getrange"] == 3  # one read per segment
        assert spent["evalsha"] == 1  # the OPEN


async def test_readers_replaying_together_share_their_reads(redis_server: RedisServer) -> None:
    readers = 30
    async with two_stores(redis_server, max_bytes=4 << 20) as (a, b):
        everything = await token_sized_log(a, "long", 1600)
        chunks = -(-len(everything) // SEGMENT_BYTES)
        outputs: list[bytes] = []

        async def replay() -> None:
            outputs.append(await read_all(await opened_on(b, "long")))

        before = await calls_now(b)
        async with trio.open_nursery() as nursery:
            for _ in range(readers):
                nursery.start_soon(replay)
        spent = delta(await calls_now(b), before)
        assert outputs == [everything] * readers
        assert spent["evalsha"] == readers, spent  # each reader's OPEN
        reads = spent["getrange"]
        assert reads <= 2 * chunks, spent  # not one replay per reader (30 x 2 reads)
        assert spent["xrevrange"] <= 2 and spent["subscribe"] <= 2, spent


class Repeating:
    """A producer writing ``event`` 300 times as fast as the store lets it, counting."""

    def __init__(self, event: bytes) -> None:
        self.event = event
        self.written = 0

    async def __call__(self, writer: StreamWriter) -> None:
        for _ in range(300):
            await writer.write(self.event)
            self.written += 1


async def stall_redis_while_producing(
    redis_server: RedisServer, producer: Repeating, **options: Any
) -> tuple[bytes, int]:
    """Start ``producer`` on a Redis store, read its first chunk, pause Redis for 0.8 s
    (the producer writes until its outbox is full, then waits), then read the rest.
    Returns what the reader got, and the outbox's size while Redis was paused."""
    async with RedisStore(
        redis_server.url, ping_interval=None, event_ids=False, lease_seconds=30, **options
    ) as store:
        handle = await store.start("c1", producer)
        reader = handle.read(0)
        first = await reader.__anext__()
        redis_server.pause()
        try:
            await trio.sleep(0.5)
            stalled_at = producer.written
            await trio.sleep(0.3)
            assert producer.written == stalled_at < 300
            [local] = store._producing.running.values()
            # What it wrote ahead is not in anyone's hands: readers have what Redis has.
            assert local.session.total_bytes + len(local.pending) == stalled_at * len(
                producer.event
            )
            queued = len(local.pending)
        finally:
            redis_server.resume()
        with trio.fail_after(10):
            rest = b"".join([chunk async for chunk in reader])  # no OffsetLostError
    return first + rest, queued


async def test_a_producer_runs_ahead_of_a_stalled_redis_by_its_outbox_at_most(
    redis_server: RedisServer,
) -> None:
    producer = Repeating(b"data: " + b"y" * 1000 + b"\n\n")
    read, queued = await stall_redis_while_producing(redis_server, producer)
    assert OUTBOX_BYTES <= queued < OUTBOX_BYTES + len(producer.event)
    assert read == producer.event * 300


async def test_a_small_cap_bounds_the_outbox_so_no_flush_overtakes_a_reader(
    redis_server: RedisServer,
) -> None:
    """With a log capped below two outboxes, a producer waits at half the cap: one flush
    never appends more than the cap holds, so a reader that had caught up keeps up."""
    cap, producer = 4000, Repeating(b"data: " + b"z" * 92 + b"\n\n")
    read, queued = await stall_redis_while_producing(redis_server, producer, max_bytes=cap)
    assert cap // 2 <= queued < cap // 2 + len(producer.event)
    assert read == producer.event * 300
