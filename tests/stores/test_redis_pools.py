"""The Redis store's two connection pools: blocked reads never hold up writes.

Each followed session holds one connection in a blocking ``XREAD``. These tests, on a
real server, size both pools small (4 connections) and follow more sessions than that on
one instance: producers, lease renewals, lookups and stops must go on at once, and the
readers take turns on the followers' pool until each has every byte. Others check that
neither pool shrinks when reads are cancelled or Redis restarts (coredis 6.9 lost a
place each time), and that a quiet session's read gives way to waiting followers.
"""

from __future__ import annotations

from functools import partial

import trio

from tests.redis_fixtures import RedisServer
from tests.stores.test_store_contract import Ticker, read_all, ticks
from trio_streams.core.producer import StreamWriter
from trio_streams.stores.redis.commands import ORPHAN_MESSAGE
from trio_streams.stores.redis.pool import FollowerReads, command_client
from trio_streams.stores.redis.store import RedisStore

POOL = 4
SESSIONS = 2 * POOL
#: Short, so that a renewal held up for about a block period lets the lease lapse.
LEASE = 1.5
#: A command that waits behind the blocked reads waits for up to a block (``LEASE``);
#: one that does not takes a few milliseconds, even on a busy 2-core machine.
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
        follower_connections=POOL,
    )


async def test_more_followed_sessions_than_connections_hold_up_no_writer(
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
        most_waiting = 0  # followers waiting for a turn: the followers' pool was full
        with trio.fail_after(15):  # the readers' turns: slower than a free pool, but bounded
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
                    most_waiting = max(most_waiting, store.follower_reads.waiting)
                    begin = trio.current_time()
                    infos = await store.lookup([f"c{index}" for index in range(SESSIONS)])
                    slowest_lookup = max(slowest_lookup, trio.current_time() - begin)
                    assert len(infos) == SESSIONS
                begin = trio.current_time()
                assert await store.stop("doomed") is True
                await doomed.cancelled.wait()
                slowest_stop = trio.current_time() - begin
        assert most_waiting > 0
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
    """A reader leaving cancels its follower's blocking read: coredis then drops that
    connection, and its pool must open another rather than shrink by one for good."""
    async with small_store(redis_server) as store:
        for index in range(3 * POOL):
            handle = await store.start(f"c{index}", Ticker(count=1000, interval=0.2))
            reader = handle.read(0)
            with trio.fail_after(2):
                await reader.__anext__()
                await trio.sleep(0.05)  # its follower is now waiting in XREAD BLOCK
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
    """A restart drops every connection, the subscriber's and the followers' blocked
    reads among them: each pool must open new ones, however many restarts there are."""
    redis = persistent_redis_server
    restarts = 2 * POOL
    steps = trio.Semaphore(0)

    async def producer(writer: StreamWriter) -> None:
        for index in range(restarts + 1):
            await steps.acquire()
            await writer.write(f"data: {index}\n\n".encode())

    async with small_store(redis) as store:
        reader = (await store.start("c1", producer)).read(0)
        received = b""
        for index in range(restarts + 1):
            if index:
                await trio.sleep(0.1)  # the follower is waiting in XREAD BLOCK
                redis.stop()
                redis.start()
            steps.release()
            with trio.fail_after(5):
                while len(received) < len(ticks(index + 1)):
                    received += await reader.__anext__()
                [info] = await store.lookup(["c1"])
            assert info.is_done == (index == restarts)  # the producer's last append ends it
        assert received == ticks(restarts + 1)
        with trio.fail_after(5):
            assert b"".join([chunk async for chunk in reader]) == b""  # the end, no error


async def test_reads_cancelled_at_any_moment_use_up_no_place_in_a_pool(
    redis_server: RedisServer,
) -> None:
    """Cancelled while its connection opens, while it is sent, or while it blocks: a
    read gives its place in the pool back every time."""
    reads = FollowerReads(redis_server.url, connections=2, connect_timeout=2)
    async with reads.client:
        for step in range(40):  # 0 to 4 ms: every stage of a read, many times over
            with trio.move_on_after(step / 10_000):
                await reads.xread("k", "0-0", count=1, block_ms=1000)
            await trio.sleep(0.001)
        # Both places are there: two reads block in Redis at once.
        async with command_client(redis_server.url, connections=2, connect_timeout=2) as other:
            with trio.fail_after(2):
                async with trio.open_nursery() as nursery:
                    for _ in range(2):
                        nursery.start_soon(partial(reads.xread, "k", "0-0", count=1, block_ms=500))
                    await trio.sleep(0.2)
                    assert (await other.info("clients"))["blocked_clients"] == 2


async def test_a_quiet_session_holds_a_turn_for_a_second_while_others_wait(
    redis_server: RedisServer,
) -> None:
    """One connection, two followers: a quiet log's read gives way within
    ``CONTENDED_BLOCK_MS``, not its whole block, so a busy log's reader gets bytes every
    second or so rather than once per lease period."""
    block_ms = 10_000  # a lease period: a read alone waits this long
    reads = FollowerReads(redis_server.url, connections=1, connect_timeout=2)
    async with (
        reads.client,
        command_client(redis_server.url, connections=2, connect_timeout=2) as writer,
    ):
        await writer.xadd("busy", {"d": "x"})
        replies: list[float] = []
        two_replies = trio.Event()

        async def follow(log: str) -> None:
            last = "0-0"
            while True:
                reply, _ = await reads.xread(log, last, count=10, block_ms=block_ms)
                for entries in reply.values() if reply else ():
                    last = entries[-1].identifier.decode()
                    replies.append(trio.current_time())
                    if len(replies) == 2:
                        two_replies.set()

        async def append() -> None:
            while True:
                await trio.sleep(0.1)
                await writer.xadd("busy", {"d": "x"})

        begin = trio.current_time()
        async with trio.open_nursery() as nursery:
            # A read of another log holds the one connection briefly, so that the quiet
            # log's follower and the busy one's both wait, then take turns.
            nursery.start_soon(partial(reads.xread, "other", "0-0", count=1, block_ms=200))
            await trio.sleep(0.05)
            nursery.start_soon(follow, "quiet")
            await trio.sleep(0.05)
            nursery.start_soon(follow, "busy")
            nursery.start_soon(append)
            with trio.fail_after(5):
                await two_replies.wait()
            nursery.cancel_scope.cancel()
        # Turns of CONTENDED_BLOCK_MS (1 s): the second reply comes after two quiet turns
        # (about 2.2 s in), where whole blocks would have made it wait 10 s for the first.
        assert replies[1] - begin < 3.0, [round(at - begin, 2) for at in replies]


def test_the_followers_take_as_many_turns_as_their_pool_has_connections() -> None:
    """``?max_connections=N`` in the URL wins in coredis: the turns follow it, so that no
    follower waits inside coredis' pool (whose wait is not safe to cancel)."""
    store = RedisStore("redis://127.0.0.1:1/0?max_connections=3", follower_connections=50)
    assert store.follower_reads.connections == 3
    assert RedisStore("redis://127.0.0.1:1/0").follower_reads.connections == 1000
