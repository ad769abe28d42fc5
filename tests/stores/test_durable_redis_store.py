"""What only the Redis Durable Streams store has: its watches on the instance's pub/sub
connection (warm, resynchronized after a Redis restart, unsubscribed when idle), Redis's
own key expiry, and outages answered as "store unavailable"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress

import coredis
import pytest
import trio

from tests.redis_fixtures import RedisServer
from trio_streams.core.durable.errors import ShuttingDownError, StreamNotFoundError
from trio_streams.core.durable.headers import Expiry
from trio_streams.core.durable.model import AppendRequest, CreateRequest, ForkRequest
from trio_streams.stores.durable import durable_store_of
from trio_streams.stores.durable.redis import RedisDurableStore, channel
from trio_streams.stores.protocol import StoreUnavailableError
from trio_streams.stores.redis.keys import PREFIX
from trio_streams.stores.redis.store import RedisStore

TEXT = "text/plain"


async def two_instances(
    stack: AsyncExitStack, server: RedisServer, gc_interval: float = 0.2
) -> tuple[RedisDurableStore, RedisDurableStore]:
    a = await stack.enter_async_context(RedisStore(server.url, gc_interval=gc_interval))
    b = await stack.enter_async_context(RedisStore(server.url, gc_interval=gc_interval))
    return a.durable_streams, b.durable_streams


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with coredis.Redis.from_url(redis_server.url) as client:
        yield client


async def script_calls(redis: coredis.Redis[bytes]) -> int:
    """Scripts Redis has run so far (every store operation is one)."""
    stats = await redis.info("commandstats")
    return sum(
        int(value["calls"])  # type: ignore[index]
        for key, value in stats.items()
        if key in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def test_a_warm_watch_answers_waiting_readers_without_asking_redis(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await two_instances(stack, redis_server, gc_interval=3600)  # no collector
        await a.create("warm", CreateRequest(TEXT, body=b"a"))
        await a.append("warm", AppendRequest(b"b", content_type=TEXT))  # Redis has the script
        assert await b.wait("warm", 2, 0.2) is False  # subscribes, checks once
        before = await script_calls(redis)
        got: list[bytes] = []

        async def reader() -> None:
            assert await b.wait("warm", 2, 30) is True
            read = await b.read("warm", 2)
            assert (read.start, read.end, read.up_to_date) == (2, 4, True)
            got.append(read.data)

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(reader)
            await trio.sleep(0.2)
            assert await b.wait("warm", 1, 30) is True  # bytes past 1: at once
            await a.append("warm", AppendRequest(b"cd", content_type=TEXT))
        assert got == [b"cd"] * 20
        # The append, and nothing for 21 waits and 20 reads: the append's message
        # carried what they needed.
        assert await script_calls(redis) - before == 1
        assert b.watched == 1
        assert (await b.read("warm", 0)).data == b"abcd"  # older bytes: from Redis


async def test_a_watch_answers_reads_only_when_it_can_answer_them_exactly(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await two_instances(stack, redis_server, gc_interval=3600)
        await a.create("mine", CreateRequest(TEXT, body=b"x"), owner="k1")
        await a.create("ttl", CreateRequest(TEXT, body=b"x", expiry=Expiry(ttl_seconds=60)))
        for name, owner in (("mine", "k1"), ("ttl", None)):
            assert await b.wait(name, 1, 0.2, owner=owner) is False  # warm watches
            await a.append(name, AppendRequest(b"y", content_type=TEXT), owner=owner)
            assert await b.wait(name, 1, 30, owner=owner) is True
        # Another key: not found, whatever the watch holds.
        with pytest.raises(StreamNotFoundError):
            await b.read("mine", 1, owner="k2")
        # A TTL stream's read slides its TTL in Redis.
        await redis.pexpire(f"{PREFIX}ds:meta:ttl", 5000)
        before = await script_calls(redis)
        assert (await b.read("ttl", 1)).data == b"y"
        assert await script_calls(redis) - before == 1
        assert await redis.pttl(f"{PREFIX}ds:meta:ttl") > 50_000
        # Deleted: the watch hears it, and the read goes to Redis (404).
        await a.delete("mine", owner="k1")
        with suppress(StreamNotFoundError):  # returns (or raises) once the watch heard it
            await b.wait("mine", 2, 30, owner="k1")
        with pytest.raises(StreamNotFoundError):
            await b.read("mine", 1, owner="k1")


async def test_idle_watches_are_unsubscribed(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await two_instances(stack, redis_server)
        await a.create("idle", CreateRequest(TEXT))
        assert await b.wait("idle", 0, 0.2) is False
        assert (await redis.pubsub_numsub(channel("idle")))[channel("idle")] == 1
        assert b.unwatch_idle(trio.current_time()) == 1
        await trio.sleep(0.1)
        assert (await redis.pubsub_numsub(channel("idle")))[channel("idle")] == 0
        assert b.watched == 0


async def test_waiting_readers_survive_a_redis_restart(
    persistent_redis_server: RedisServer,
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await two_instances(stack, persistent_redis_server)
        await a.create("outage", CreateRequest(TEXT, body=b"x"))
        woke: list[bool] = []

        async def waiter() -> None:
            woke.append(await b.wait("outage", 1, 30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.sleep(0.2)
            persistent_redis_server.stop()
            with pytest.raises(StoreUnavailableError):
                await a.append("outage", AppendRequest(b"y", content_type=TEXT))
            persistent_redis_server.start()
            # Appended while B's watch may still be reconnecting: it looks again once
            # subscribed anew, so the reader wakes either way.
            for _ in range(50):
                try:
                    await a.append("outage", AppendRequest(b"y", content_type=TEXT))
                    break
                except StoreUnavailableError:
                    await trio.sleep(0.1)
        assert woke == [True]
        assert (await b.read("outage", 0)).data == b"xy"


async def test_redis_expires_the_keys_of_a_stream_with_a_ttl(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, _ = await two_instances(stack, redis_server)
        await a.create("short", CreateRequest(TEXT, body=b"x", expiry=Expiry(ttl_seconds=30)))
        ttl_ms = await redis.pttl(f"{PREFIX}ds:data:short")
        assert 0 < ttl_ms <= 30_000
        assert 0 < await redis.pttl(f"{PREFIX}ds:meta:short") <= 30_000
        await a.create("forever", CreateRequest(TEXT, body=b"x"))
        assert await redis.pttl(f"{PREFIX}ds:data:forever") == -1
        # A source that forks hold keeps its keys (its expiry is the scripts' then).
        await a.fork("fork", ForkRequest("short"))
        assert await redis.pttl(f"{PREFIX}ds:meta:short") == -1
        assert 0 < await redis.pttl(f"{PREFIX}ds:meta:fork") <= 30_000
        await a.delete("fork")
        assert 0 < await redis.pttl(f"{PREFIX}ds:meta:short") <= 30_000


async def test_a_source_whose_forks_expired_silently_is_collected(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await two_instances(stack, redis_server)
        await a.create("parent", CreateRequest(TEXT, body=b"p"))
        await b.fork("child", ForkRequest("parent", expiry=Expiry(ttl_seconds=1)))
        await a.delete("parent")  # soft: the fork holds it
        assert await redis.exists([f"{PREFIX}ds:meta:parent"]) == 1
        await trio.sleep(1.5)  # Redis expires the fork's keys; nobody touches the parent
        assert await a.collect_garbage() >= 0
        assert await redis.exists([f"{PREFIX}ds:meta:parent"]) == 0
        assert await redis.zcard(f"{PREFIX}ds:held") == 0


async def test_the_collector_goes_round_every_held_source_in_batches(
    redis_server: RedisServer, redis: coredis.Redis[bytes]
) -> None:
    async with AsyncExitStack() as stack:
        a, _ = await two_instances(stack, redis_server, gc_interval=3600)
        for index in range(5):
            await a.create(f"p{index}", CreateRequest(TEXT, body=b"p"))
            await a.fork(f"c{index}", ForkRequest(f"p{index}", expiry=Expiry(ttl_seconds=1)))
            await a.delete(f"p{index}")
        await a.create("kept", CreateRequest(TEXT))
        await a.fork("kept-fork", ForkRequest("kept"))  # held, and stays so
        assert await redis.zcard(f"{PREFIX}ds:held") == 6
        await trio.sleep(1.5)  # the five forks expire
        a.sweep_batch = 2
        assert await a.collect_garbage() == 6
        assert list(await redis.zrange(f"{PREFIX}ds:held", 0, -1)) == [b"kept"]
        for index in range(5):
            assert await redis.exists([f"{PREFIX}ds:meta:p{index}"]) == 0


async def test_shutdown_wakes_a_reader_still_waiting_for_its_subscription(
    redis_server: RedisServer,
) -> None:
    """Redis is down, so the reader's watch cannot subscribe: a shutdown still ends its
    wait at once (``503``), as it does for readers of a subscribed watch, instead of
    leaving it until its own time is up."""
    async with AsyncExitStack() as stack:
        a, _ = await two_instances(stack, redis_server)
        await a.create("down", CreateRequest(TEXT, body=b"x"))
        redis_server.stop()
        outcome: list[object] = []

        async def reader() -> None:
            try:
                outcome.append(await a.wait("down", 1, 20))
            except ShuttingDownError:
                outcome.append("shutting down")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.3)  # the reader waits for a subscription that cannot come
            a.shutdown()
        assert outcome == ["shutting down"]


def test_the_redis_session_store_carries_its_durable_streams(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    assert durable_store_of(store) is store.durable_streams


async def test_an_unreachable_redis_is_a_store_outage(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        a, _ = await two_instances(stack, redis_server)
        redis_server.stop()
        with pytest.raises(StoreUnavailableError):
            await a.head("anything")
        with pytest.raises(StoreUnavailableError):
            await a.create("anything", CreateRequest(TEXT))
