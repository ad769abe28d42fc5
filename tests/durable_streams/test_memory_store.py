"""The in-process Durable Streams store, on trio's clock (``autojump_clock``): expiry,
waiting readers, forks and their references, owners, shutdown.

The tests that do not run on trio's clock run on the Redis store too (``store`` is
parametrized; its ``redis`` param is a :class:`~trio_streams.stores.redis.store.RedisStore`'s
Durable Streams on the test kit's private Redis, in real time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.redis_fixtures import RedisServer
from trio_streams.core.durable.errors import (
    BadRequestError,
    ConflictError,
    ShuttingDownError,
    StoreFullError,
    StreamGoneError,
    StreamNotFoundError,
    StreamTooLargeError,
)
from trio_streams.core.durable.headers import Expiry
from trio_streams.core.durable.model import AppendRequest, CreateRequest, ForkRequest
from trio_streams.core.durable.producers import ProducerClaim
from trio_streams.core.manager import SessionManager
from trio_streams.stores.durable import durable_store_of
from trio_streams.stores.durable.memory import APPEND_COST, PRODUCER_COST, MemoryDurableStore
from trio_streams.stores.durable.protocol import DurableStore, DurableStreamsUnsupportedError
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.redis.store import RedisStore

TEXT = "text/plain"


@pytest.fixture
async def clocked_store() -> AsyncIterator[MemoryDurableStore]:
    """The memory store, for the tests on trio's (autojump) clock."""
    async with MemoryDurableStore(max_stream_bytes=100, gc_interval=5.0) as opened:
        yield opened


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[DurableStore]:
    """Each store, with the same limits."""
    if request.param == "memory":
        async with MemoryDurableStore(max_stream_bytes=100, gc_interval=5.0) as opened:
            yield opened
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with RedisStore(server.url, ds_max_stream_bytes=100, gc_interval=5.0) as shared:
        yield shared.durable_streams


async def append(store: DurableStore, name: str, data: bytes) -> int:
    return (await store.append(name, AppendRequest(data, TEXT))).tail


async def test_create_append_read(store: DurableStore) -> None:
    created = await store.create("a/b", CreateRequest(TEXT, body=b"he"))
    assert created.created and created.meta.tail == 2
    assert await append(store, "a/b", b"llo") == 5
    read = await store.read("a/b", 1)
    assert (read.data, read.start, read.end, read.up_to_date) == (b"ello", 1, 5, True)
    assert (await store.read("a/b", 0, limit=2)).data == b"he"
    assert (await store.read("a/b", None)).data == b""
    with pytest.raises(BadRequestError):
        await store.read("a/b", 6)
    again = await store.create("a/b", CreateRequest("TEXT/PLAIN"))
    assert not again.created
    with pytest.raises(ConflictError):
        await store.create("a/b", CreateRequest(TEXT, closed=True))


async def test_the_size_limit_counts_the_whole_stream(store: DurableStore) -> None:
    await store.create("s", CreateRequest(TEXT, body=b"x" * 60))
    with pytest.raises(StreamTooLargeError):
        await append(store, "s", b"y" * 41)
    assert await append(store, "s", b"y" * 40) == 100
    with pytest.raises(StreamTooLargeError):
        await store.create("t", CreateRequest(TEXT, body=b"z" * 101))


async def test_a_ttl_is_idle_time_and_head_does_not_count(
    clocked_store: MemoryDurableStore, autojump_clock: trio.testing.MockClock
) -> None:
    store = clocked_store
    await store.create("s", CreateRequest(TEXT, Expiry(ttl_seconds=10)))
    await trio.sleep(8)
    await store.read("s", 0)  # slides the TTL to 18
    await trio.sleep(8)
    await store.head("s")  # does not
    await trio.sleep(3)
    with pytest.raises(StreamNotFoundError):
        await store.head("s")
    assert (await store.create("s", CreateRequest(TEXT))).created  # the name is free again


async def test_an_absolute_expiry_does_not_slide(
    clocked_store: MemoryDurableStore, autojump_clock: trio.testing.MockClock
) -> None:
    store = clocked_store
    import time

    expires = Expiry(expires_at="soon", expires_at_unix=time.time() + 10)
    await store.create("s", CreateRequest(TEXT, expires))
    await trio.sleep(6)
    await append(store, "s", b"x")
    await trio.sleep(6)
    with pytest.raises(StreamNotFoundError):
        await store.read("s", 0)


async def test_the_collector_frees_expired_streams_nobody_touches(
    clocked_store: MemoryDurableStore, autojump_clock: trio.testing.MockClock
) -> None:
    store = clocked_store
    await store.create("s", CreateRequest(TEXT, Expiry(ttl_seconds=1)))
    await store.create("kept", CreateRequest(TEXT))
    assert len(store) == 2
    await trio.sleep(6)  # past the TTL and one collection
    assert len(store) == 1


async def test_a_waiting_reader_wakes_on_append_close_and_delete(
    clocked_store: MemoryDurableStore, autojump_clock: trio.testing.MockClock
) -> None:
    store = clocked_store
    await store.create("s", CreateRequest(TEXT))
    woken: list[bool] = []

    async def wait() -> None:
        woken.append(await store.wait("s", 0, 60))

    for action in (
        lambda: store.append("s", AppendRequest(b"x", TEXT)),
        lambda: store.close("s"),
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.sleep(1)
            assert woken == [] or woken[-1]
            await action()
        assert woken[-1] is True
    # Closed, or data past the position: no wait at all.
    assert await store.wait("s", 0, 60) and await store.wait("s", 1, 60)
    await store.create("t", CreateRequest(TEXT))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for, store, "t", woken)
        await trio.sleep(1)
        await store.delete("t")
    assert woken[-1] is True
    with pytest.raises(StreamNotFoundError):
        await store.read("t", 0)


async def wait_for(store: DurableStore, name: str, woken: list[bool]) -> None:
    woken.append(await store.wait(name, 0, 60))


async def test_a_wait_times_out_on_trios_clock(
    clocked_store: MemoryDurableStore, autojump_clock: trio.testing.MockClock
) -> None:
    store = clocked_store
    await store.create("s", CreateRequest(TEXT, body=b"abc"))
    started = trio.current_time()
    assert await store.wait("s", 3, 20) is False
    assert trio.current_time() - started == pytest.approx(20)


async def test_shutdown_ends_waiting_readers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryDurableStore()
    await store.create("s", CreateRequest(TEXT))
    outcome: list[str] = []

    async def reader() -> None:
        try:
            await store.wait("s", 0, 3600)
        except ShuttingDownError:
            outcome.append("ended")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        store.shutdown()
    assert outcome == ["ended"]
    with pytest.raises(ShuttingDownError):
        await store.head("s")


async def test_a_fork_reads_its_source_up_to_the_fork_then_its_own(
    store: DurableStore,
) -> None:
    await store.create("src", CreateRequest(TEXT, body=b"one"))
    await append(store, "src", b"two")
    fork = await store.fork("f", ForkRequest("src", position=3))
    assert fork.created and fork.meta.tail == 3
    await append(store, "f", b"FORK")
    await append(store, "src", b"three")
    assert (await store.read("f", 0)).data == b"oneFORK"
    assert (await store.read("f", 2)).data == b"eFORK"
    assert (await store.read("src", 0)).data == b"onetwothree"
    # A sub-offset takes part of the append at the fork point.
    assert (await store.fork("g", ForkRequest("src", 3, sub_offset=2))).meta.tail == 5
    assert (await store.read("g", 0)).data == b"onetw"
    with pytest.raises(BadRequestError):
        await store.fork("h", ForkRequest("src", 3, sub_offset=4))
    with pytest.raises(BadRequestError):
        await store.fork("h", ForkRequest("src", 99))
    with pytest.raises(ConflictError):
        await store.fork("h", ForkRequest("src", content_type="application/json"))
    with pytest.raises(StreamNotFoundError):
        await store.fork("h", ForkRequest("nothing"))


async def test_deleting_a_forked_source_soft_deletes_it_until_its_last_fork_goes(
    store: DurableStore,
) -> None:
    await store.create("src", CreateRequest(TEXT, body=b"data"))
    await store.fork("f1", ForkRequest("src"))
    await store.fork("f2", ForkRequest("f1"))
    await store.delete("src")
    for gone in (store.head("src"), store.read("src", 0), store.delete("src")):
        with pytest.raises(StreamGoneError):
            await gone
    with pytest.raises(ConflictError):
        await store.create("src", CreateRequest(TEXT))
    with pytest.raises(ConflictError):
        await store.fork("f3", ForkRequest("src"))
    assert (await store.read("f2", 0)).data == b"data"  # through two levels
    await store.delete("f1")  # f2 still reads through f1: soft-deleted too
    assert (await store.read("f2", 0)).data == b"data"
    await store.delete("f2")  # the last reference: the whole chain goes
    for name in ("src", "f1", "f2"):
        with pytest.raises(StreamNotFoundError):
            await store.head(name)
    if isinstance(store, MemoryDurableStore):
        assert len(store) == 0  # freed, not only unreachable
    assert (await store.create("src", CreateRequest(TEXT))).created


async def test_producers_and_closure(store: DurableStore) -> None:
    await store.create("s", CreateRequest(TEXT))
    claim = ProducerClaim("p", 0, 0)
    first = await store.append("s", AppendRequest(b"a", TEXT, producer=claim))
    retry = await store.append("s", AppendRequest(b"a", TEXT, producer=claim))
    assert first.tail == retry.tail == 1
    closing = await store.close("s", ProducerClaim("p", 0, 1))
    assert closing.closed and (await store.head("s")).closed
    assert (await store.close("s", ProducerClaim("p", 0, 1))).closed  # its retry
    with pytest.raises(ConflictError):
        await store.close("s", ProducerClaim("p", 0, 2))
    read = await store.read("s", 1)
    assert read.closed_at_end and read.up_to_date


async def test_another_owners_stream_is_not_there(store: DurableStore) -> None:
    await store.create("s", CreateRequest(TEXT), owner="key:a")
    with pytest.raises(StreamNotFoundError):
        await store.read("s", 0, owner="key:b")
    with pytest.raises(StreamNotFoundError):
        await store.fork("f", ForkRequest("s"), owner="key:b")
    with pytest.raises(ConflictError):
        await store.create("s", CreateRequest(TEXT), owner="key:b")
    assert (await store.head("s", owner="key:a")).name == "s"


async def test_the_memory_session_store_carries_its_durable_streams() -> None:
    store = MemoryStore(SessionManager())
    assert durable_store_of(store) is store.durable_streams
    with pytest.raises(DurableStreamsUnsupportedError, match="SessionManager"):
        durable_store_of(SessionManager())


async def test_the_stream_count_and_byte_budget_refuse_with_429() -> None:
    budget = 10 + 2 * APPEND_COST  # two appends of 5 bytes
    store = MemoryDurableStore(max_streams=2, max_total_bytes=budget)
    await store.create("a", CreateRequest(TEXT, body=b"12345"))
    await store.fork("b", ForkRequest("a"))  # shares a's bytes: costs none of its own
    with pytest.raises(StoreFullError) as full:
        await store.create("c", CreateRequest(TEXT))
    assert full.value.status == 429
    with pytest.raises(StoreFullError):
        await store.append("b", AppendRequest(b"123456", TEXT))
    await store.append("b", AppendRequest(b"12345", TEXT))
    assert store.total_bytes == budget
    await store.delete("a")  # soft-deleted: its bytes are still held for b
    assert store.total_bytes == budget
    await store.delete("b")  # the last fork: both go
    assert store.total_bytes == 0 and len(store) == 0
    await store.create("c", CreateRequest(TEXT, body=b"0123456789"))


async def test_the_byte_budget_counts_what_the_store_keeps_per_append_and_producer() -> None:
    """One-byte appends, each from a new producer with a long id, make the store keep far
    more than their bytes: the budget counts it, so they meet the 429 long before
    10,000 bytes were appended."""
    store = MemoryDurableStore(max_total_bytes=10_000)
    await store.create("s", CreateRequest(TEXT))
    appended = 0
    with pytest.raises(StoreFullError):
        for index in range(10_000):
            claim = ProducerClaim(f"{index:0200d}", 0, 0)
            await store.append("s", AppendRequest(b"x", TEXT, producer=claim))
            appended += 1
    assert appended * (1 + APPEND_COST + 200 + PRODUCER_COST) <= store.total_bytes <= 10_000
    await store.delete("s")
    assert store.total_bytes == 0
