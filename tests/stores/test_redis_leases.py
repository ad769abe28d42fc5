"""Lease renewals: one script call renews every producer of an instance, and stops those
whose session moved on."""

from __future__ import annotations

import trio

from tests.redis_fixtures import RedisServer
from tests.stores.test_redis_batching import calls_now, delta
from tests.stores.test_redis_store import two_stores
from trio_streams.core.producer import StreamWriter
from trio_streams.stores.redis.keys import lease_key, meta_key


async def test_one_call_renews_every_producer_s_lease_and_stops_the_moved_on(
    redis_server: RedisServer,
) -> None:
    sessions = 50
    finish = trio.Event()

    async def producer(writer: StreamWriter) -> None:
        await writer.write(b"data: start\n\n")
        await finish.wait()

    # A long lease: the instance's own renewal task stays asleep; the test runs a round.
    async with two_stores(redis_server, lease_seconds=60) as (a, _):
        handles = [await a.start(f"c{index}", producer) for index in range(sessions)]
        client = a.client
        for index in range(sessions):
            await client.pexpire(lease_key(f"c{index}"), 5_000)
        # c7 moved on behind this instance's back (as a replacement elsewhere would
        # leave it, with its cancel message lost): only the renewal can tell its producer.
        await client.hset(meta_key("c7"), {"gen": "0" * 32})
        running = dict(a._producing.running)
        before = await calls_now(a)
        await a._control.renew_all()
        calls = delta(await calls_now(a), before)
        assert calls.get("evalsha", 0) == 1, calls  # one RENEW_MANY for all 50
        for index in range(sessions):
            left = await client.pttl(lease_key(f"c{index}"))
            if index == 7:
                assert left <= 5_000  # not renewed
            else:
                assert left > 5_000  # back to the 60 s lease
        cancelled = {
            local.conversation_id for local in running.values() if local.cancel_scope.cancel_called
        }
        assert cancelled == {"c7"}
        finish.set()
        for handle in handles:
            handle.cancel()


async def test_renewals_keep_short_leases_alive_while_producers_run(
    redis_server: RedisServer,
) -> None:
    """With a 0.6 s lease, renewed every 0.2 s by one task: no session of a live
    instance is taken for an orphan, however long it runs."""
    finish = trio.Event()

    async def producer(writer: StreamWriter) -> None:
        await writer.write(b"data: start\n\n")
        await finish.wait()
        await writer.write(b"data: end\n\n")

    async with two_stores(redis_server, lease_seconds=0.6) as (a, b):
        for index in range(20):
            await a.start(f"c{index}", producer)
        await trio.sleep(2.4)  # four lease periods
        # An expired lease would let this instance finalize them as orphans here.
        found = await b.lookup([f"c{index}" for index in range(20)])
        assert [info.is_done for info in found] == [False] * 20
        assert len(a._producing.running) == 20
        finish.set()
