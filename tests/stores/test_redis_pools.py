"""The Redis store's connection pool: followed sessions hold no connection of their own.

These tests, on a real server, size the pool small (4 connections, two of them the
pub/sub connections) and follow many more sessions than that on one instance: producers,
lease renewals, lookups and stops must go on at once, and every reader gets every byte.
Others check that the pool does not shrink when reads are cancelled or Redis restarts
(coredis 6.9 lost a place each time).
"""

from __future__ import annotations

import trio

from tests.redis_fixtures import RedisServer
from tests.stores.test_store_contract import Ticker, read_all, ticks
from trio_streams.core.producer import StreamWriter
from trio_streams.stores.redis.commands import ORPHAN_MESSAGE
from trio_streams.stores.redis.pool import command_client
from trio_streams.stores.redis.store import RedisStore

POOL = 4
SESSIONS = 5 * POOL
#: Short, so that a renewal held up for a while lets the lease lapse.
LEASE = 1.5
#: A command that waits for a connection waits for a long time; one that does not takes
#: a few milliseconds, even on a busy 2-core machine.
PROMPT = 0.5


class TimedTicker(Ticker):
    """A :class:`Ticker` that records its slowest append (the time ``write`` took)."""

    slowest = 0.0

    async def __call__(self, writer: StreamWriter) -> None:
        ticker = self

        class Timed:
            async def write(self, data: bytes) -> None:
                begin = trio.current_time()
                await writer.write(data)
                ticker.slowest = max(ticker.slowest, trio.current_time() - begin)

        await super().__call__(Timed())


def small_store(server: RedisServer) -> RedisStore:
    return RedisStore(
        server.url,
        lease_seconds=LEASE,
        ping_interval=None,
        event_ids=False,
        command_connections=POOL,
    )


async def test_many_more_followed_sessions_than_connections_hold_up_no_writer(
    redis_server: RedisServer,
) -> None:
    count = 20
    async with small_store(redis_server) as store:
        # A quiet start: every follower is waiting in XREAD BLOCK when the appends begin.
        tickers = [TimedTicker(count=count, interval=0.05, prefill=0.3) for _ in range(SESSIONS)]
        received: dict[str, bytes] = {}

        async def follow(conversation_id: str) -> None:
            handle = await store.open(conversation_id, 0)
            assert handle is not None
            received[conversation_id] = await read_all(handle)

        slowest_lookup = slowest_stop = 0.0
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                for index, ticker in enumerate(tickers):
                    await store.start(f"c{index}", ticker)
                    nursery.start_soon(follow, f"c{index}")
                # One more followed session, stopped (DELETE) while the others stream.
                doomed = Ticker(count=1000, interval=0.05)
                await store.start("doomed", doomed)
                nursery.start_soon(follow, "doomed")
                for _ in range(4):
                    await trio.sleep(0.25)
                    begin = trio.current_time()
                    infos = await store.lookup([f"c{index}" for index in range(SESSIONS)])
                    slowest_lookup = max(slowest_lookup, trio.current_time() - begin)
                    assert len(infos) == SESSIONS
                begin = trio.current_time()
                assert await store.stop("doomed") is True
                await doomed.cancelled.wait()
                slowest_stop = trio.current_time() - begin
        slowest_append = max(ticker.slowest for ticker in tickers)
        assert slowest_append < PROMPT, f"an append waited {slowest_append:.2f} s"
        assert slowest_lookup < PROMPT, f"a lookup waited {slowest_lookup:.2f} s"
        assert slowest_stop < PROMPT, f"a stop waited {slowest_stop:.2f} s"
        # No lease lapsed: every producer ran to its end, no session ended as an orphan,
        # and every reader got every byte.
        assert all(ticker.finished and not ticker.cancelled.is_set() for ticker in tickers)
        for index in range(SESSIONS):
            assert ORPHAN_MESSAGE.encode() not in received[f"c{index}"]
            assert received[f"c{index}"] == ticks(count), index
        assert ORPHAN_MESSAGE.encode() not in received["doomed"]
        infos = await store.lookup([f"c{index}" for index in range(SESSIONS)])
        assert all(info.is_done for info in infos)
        assert {info.total_bytes for info in infos} == {len(ticks(count))}


async def test_readers_leaving_mid_read_do_not_use_up_the_pools(
    redis_server: RedisServer,
) -> None:
    """A reader leaving cancels its follower mid-read: coredis may then drop that
    connection, and its pool must open another rather than shrink by one for good."""
    async with small_store(redis_server) as store:
        for index in range(3 * POOL):
            handle = await store.start(f"c{index}", Ticker(count=1000, interval=0.2))
            reader = handle.read(0)
            with trio.fail_after(2):
                await reader.__anext__()
                await trio.sleep(0.05)  # its follower is now waiting for pushes
                await reader.aclose()  # ...and is cancelled there
                await trio.sleep(0.05)
                [info] = await store.lookup([f"c{index}"])
                assert not info.is_done
                assert await store.stop(f"c{index}") is True
        # The followers' pool is whole too: a new reader follows a live stream to its end.
        handle = await store.start("last", Ticker(count=5))
        with trio.fail_after(5):
            assert await read_all(handle) == ticks(5)


async def test_redis_restarts_mid_read_do_not_use_up_the_pools(
    persistent_redis_server: RedisServer,
) -> None:
    """A restart drops every connection, both pub/sub ones among them: the pool must
    open new ones, however many restarts there are, and the reader must get the bytes
    published while its subscription was down."""
    redis = persistent_redis_server
    restarts = 2 * POOL
    steps = trio.Semaphore(0)

    async def producer(writer: StreamWriter) -> None:
        for index in range(restarts + 1):
            await steps.acquire()
            await writer.write(f"data: {index}\n\n".encode())

    async with small_store(redis) as store, small_store(redis) as other:
        local = (await store.start("c1", producer)).read(0)
        handle = await other.open("c1", 0)
        assert handle is not None
        remote = handle.read(0)
        received = {"local": b"", "remote": b""}
        for index in range(restarts + 1):
            if index:
                await trio.sleep(0.1)  # the follower is waiting for pushes
                redis.stop()
                redis.start()
            steps.release()
            with trio.fail_after(5):
                for name, reader in (("local", local), ("remote", remote)):
                    while len(received[name]) < len(ticks(index + 1)):
                        received[name] += await reader.__anext__()
                if index < restarts:
                    [info] = await store.lookup(["c1"])
                    assert not info.is_done
        assert received == {"local": ticks(restarts + 1), "remote": ticks(restarts + 1)}
        with trio.fail_after(5):
            for reader in (local, remote):
                assert b"".join([chunk async for chunk in reader]) == b""  # the end, no error
        [info] = await other.lookup(["c1"])
        assert info.is_done  # the producer's last write ended it


async def test_reads_cancelled_at_any_moment_use_up_no_place_in_a_pool(
    redis_server: RedisServer,
) -> None:
    """Cancelled while its connection opens, while it is sent, or while it blocks: a
    read gives its place in the pool back every time."""
    async with command_client(redis_server.url, connections=2, connect_timeout=2) as reads:
        for step in range(40):  # 0 to 4 ms: every stage of a read, many times over
            with trio.move_on_after(step / 10_000):
                await reads.xread({"k": "0-0"}, count=1, block=1000)
            await trio.sleep(0.001)

        # Both places are there: two reads block in Redis at once.
        async def block() -> None:
            await reads.xread({"k": "0-0"}, count=1, block=500)

        async with command_client(redis_server.url, connections=2, connect_timeout=2) as other:
            with trio.fail_after(2):
                async with trio.open_nursery() as nursery:
                    for _ in range(2):
                        nursery.start_soon(block)
                    await trio.sleep(0.2)
                    assert (await other.info("clients"))["blocked_clients"] == 2


def test_the_follower_connections_option_is_accepted_and_opens_nothing() -> None:
    """``--store-follower-connections`` is deprecated: still accepted, without effect."""
    store = RedisStore("redis://127.0.0.1:1/0", follower_connections=50)
    assert store.follower_connections == 50
    assert not hasattr(store, "follower_reads")
