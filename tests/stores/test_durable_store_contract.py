"""The Durable Streams store contract, run against both stores: in memory and in Redis.

Each test gets two store instances, ``a`` and ``b``: for Redis, two
:class:`~trio_streams.stores.redis.store.RedisStore` instances on one Redis (what two
servers behind a load balancer are); for memory, the same store twice. What one writes,
the other reads, waits on, forks and deletes.

Redis in real time, short intervals: the Redis store waits on sockets, which trio's
autojump clock would skip over. Memory on the autojump clock: its expiry and GC run on
trio's clock, so the same sleeps take no real time (and a ``sleep`` that lets a reader
start waiting returns only once every task is blocked).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest
import trio

from tests.conftest import run_on_autojump_clock
from tests.redis_fixtures import RedisServer
from trio_streams.core.durable.errors import (
    BadRequestError,
    ConflictError,
    ShuttingDownError,
    StaleEpochError,
    StreamGoneError,
    StreamNotFoundError,
    StreamTooLargeError,
)
from trio_streams.core.durable.headers import Expiry
from trio_streams.core.durable.json_mode import as_array
from trio_streams.core.durable.model import (
    AppendRequest,
    AppendStatus,
    CreateRequest,
    ForkRequest,
)
from trio_streams.core.durable.producers import ProducerClaim
from trio_streams.stores.durable.memory import MemoryDurableStore
from trio_streams.stores.durable.protocol import DurableStore
from trio_streams.stores.redis.store import RedisStore

TEXT = "text/plain"
JSON = "application/json"
MAX_BYTES = 4096


@dataclass
class Pair:
    """Two instances of one store (the same one twice, for memory)."""

    a: DurableStore
    b: DurableStore


@pytest.fixture(
    params=[pytest.param("memory", marks=pytest.mark.trio(run=run_on_autojump_clock)), "redis"]
)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            store = MemoryDurableStore(max_stream_bytes=MAX_BYTES, gc_interval=0.2)
            await stack.enter_async_context(store)
            yield Pair(store, store)
            return
        server: RedisServer = request.getfixturevalue("redis_server")
        stores = [
            await stack.enter_async_context(
                RedisStore(server.url, ds_max_stream_bytes=MAX_BYTES, gc_interval=0.2)
            )
            for _ in range(2)
        ]
        yield Pair(stores[0].durable_streams, stores[1].durable_streams)


def text(data: str) -> AppendRequest:
    return AppendRequest(data.encode(), content_type=TEXT)


def produced(data: str, producer: str, epoch: int, seq: int, **options: object) -> AppendRequest:
    return AppendRequest(
        data.encode(),
        content_type=TEXT,
        producer=ProducerClaim(producer, epoch, seq),
        **options,  # type: ignore[arg-type]
    )


async def read_all(store: DurableStore, name: str, position: int = 0) -> bytes:
    return (await store.read(name, position)).data


async def test_create_is_idempotent_with_the_same_config_and_conflicts_otherwise(
    pair: Pair,
) -> None:
    created = await pair.a.create("s", CreateRequest(TEXT, body=b"hello"))
    assert (created.created, created.meta.tail, created.meta.content_type) == (True, 5, TEXT)
    again = await pair.b.create("s", CreateRequest(TEXT, body=b"ignored"))
    assert (again.created, again.meta.tail) == (False, 5)
    with pytest.raises(ConflictError):
        await pair.b.create("s", CreateRequest(JSON))
    with pytest.raises(ConflictError):
        await pair.b.create("s", CreateRequest(TEXT, expiry=Expiry(ttl_seconds=60)))
    with pytest.raises(ConflictError):
        await pair.b.create("s", CreateRequest(TEXT, closed=True))
    assert await read_all(pair.b, "s") == b"hello"


async def test_appends_from_either_instance_make_one_log_read_at_any_position(
    pair: Pair,
) -> None:
    await pair.a.create("s", CreateRequest(TEXT))
    first = await pair.a.append("s", text("abc"))
    second = await pair.b.append("s", text("defg"))
    assert (first.status, first.tail, second.tail) == (AppendStatus.APPENDED, 3, 7)
    assert await read_all(pair.a, "s") == b"abcdefg"
    chunk = await pair.b.read("s", 2, limit=3)
    assert (chunk.data, chunk.start, chunk.end, chunk.up_to_date) == (b"cde", 2, 5, False)
    tail = await pair.a.read("s", None)
    assert (tail.data, tail.start, tail.up_to_date) == (b"", 7, True)
    with pytest.raises(BadRequestError):
        await pair.a.read("s", 8)
    head = await pair.b.head("s")
    assert (head.tail, head.closed, head.content_type) == (7, False, TEXT)


async def test_json_streams_keep_messages_and_read_to_a_message_boundary(pair: Pair) -> None:
    await pair.a.create("j", CreateRequest(JSON, body=b'[{"a": 1}, {"b": "x,y"}]'))
    await pair.b.append("j", AppendRequest(b'{"c": [1, 2]}', content_type=JSON))
    whole = await pair.a.read("j", 0, limit=3)  # a JSON read is never cut mid-message
    assert as_array(whole.data) == b'[{"a":1},{"b":"x,y"},{"c":[1,2]}]'
    with pytest.raises(BadRequestError):
        await pair.a.append("j", AppendRequest(b"[]", content_type=JSON))
    with pytest.raises(BadRequestError):
        await pair.a.append("j", AppendRequest(b"{nope", content_type=JSON))
    with pytest.raises(ConflictError):
        await pair.a.append("j", AppendRequest(b"plain", content_type=TEXT))


async def test_idempotent_producers_dedupe_fence_and_detect_gaps_across_instances(
    pair: Pair,
) -> None:
    await pair.a.create("p", CreateRequest(TEXT))
    assert (await pair.a.append("p", produced("a", "w", 0, 0))).status is AppendStatus.APPENDED
    retry = await pair.b.append("p", produced("a", "w", 0, 0))
    assert retry.status is AppendStatus.DUPLICATE
    assert retry.producer == ProducerClaim("w", 0, 0)
    with pytest.raises(ConflictError) as gap:
        await pair.b.append("p", produced("c", "w", 0, 2))
    assert gap.value.headers == {"Producer-Expected-Seq": "1", "Producer-Received-Seq": "2"}
    await pair.b.append("p", produced("b", "w", 0, 1))
    with pytest.raises(BadRequestError):
        await pair.a.append("p", produced("x", "w", 1, 3))
    await pair.a.append("p", produced("C", "w", 1, 0))
    with pytest.raises(StaleEpochError) as stale:
        await pair.b.append("p", produced("zombie", "w", 0, 2))
    assert stale.value.headers == {"Producer-Epoch": "1"}
    assert await read_all(pair.a, "p") == b"abC"


async def test_stream_seq_must_grow_bytewise_and_a_producer_retry_is_checked_first(
    pair: Pair,
) -> None:
    await pair.a.create("q", CreateRequest(TEXT))
    await pair.a.append("q", AppendRequest(b"1", content_type=TEXT, stream_seq="009"))
    await pair.b.append("q", AppendRequest(b"2", content_type=TEXT, stream_seq="010"))
    with pytest.raises(ConflictError):
        await pair.a.append("q", AppendRequest(b"3", content_type=TEXT, stream_seq="010"))
    with pytest.raises(ConflictError):
        await pair.a.append("q", AppendRequest(b"3", content_type=TEXT, stream_seq="01"))
    await pair.a.append("q", produced("4", "w", 0, 0, stream_seq="011"))
    duplicate = await pair.b.append("q", produced("4", "w", 0, 0, stream_seq="011"))
    assert duplicate.status is AppendStatus.DUPLICATE
    assert await read_all(pair.b, "q") == b"124"


async def test_closing_is_final_idempotent_and_remembers_the_producer_that_closed(
    pair: Pair,
) -> None:
    await pair.a.create("c", CreateRequest(TEXT, body=b"x"))
    await pair.a.append("c", produced("y", "w", 1, 0))
    closing = await pair.a.append("c", produced("last", "w", 1, 1, close=True))
    assert (closing.status, closing.closed, closing.tail) == (AppendStatus.APPENDED, True, 6)
    retry = await pair.b.append("c", produced("last", "w", 1, 1, close=True))
    assert (retry.status, retry.closed) == (AppendStatus.DUPLICATE, True)
    again = await pair.b.close("c")
    assert (again.status, again.closed, again.tail) == (AppendStatus.CLOSED, True, 6)
    with pytest.raises(ConflictError) as refused:
        await pair.b.append("c", text("more"))
    assert refused.value.headers["Stream-Closed"] == "true"
    with pytest.raises(ConflictError):
        await pair.a.append("c", produced("next", "w", 1, 2))
    with pytest.raises(StaleEpochError):  # a zombie is fenced before it is told "closed"
        await pair.a.append("c", produced("old", "w", 0, 0))
    assert await read_all(pair.a, "c") == b"xylast"


async def test_the_size_limit_counts_every_byte(pair: Pair) -> None:
    await pair.a.create("big", CreateRequest(TEXT, body=b"x" * (MAX_BYTES - 1)))
    with pytest.raises(StreamTooLargeError):
        await pair.b.append("big", text("yz"))
    await pair.b.append("big", text("y"))
    with pytest.raises(StreamTooLargeError):
        await pair.a.create("too-big", CreateRequest(TEXT, body=b"x" * (MAX_BYTES + 1)))


async def test_a_waiting_reader_wakes_on_an_append_made_through_the_other_instance(
    pair: Pair,
) -> None:
    await pair.a.create("w", CreateRequest(TEXT, body=b"ab"))
    woke: list[bool] = []

    async def waiter() -> None:
        woke.append(await pair.b.wait("w", 2, 30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.2)  # the reader is waiting (and subscribed, for Redis)
        assert woke == []
        await pair.a.append("w", text("c"))
    assert woke == [True]
    assert await read_all(pair.b, "w", 2) == b"c"


async def test_a_waiting_reader_wakes_on_close_and_on_delete(pair: Pair) -> None:
    await pair.a.create("x", CreateRequest(TEXT))
    await pair.a.create("y", CreateRequest(TEXT))
    woke: dict[str, bool] = {}

    async def waiter(name: str) -> None:
        woke[name] = await pair.b.wait(name, 0, 30)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "x")
        nursery.start_soon(waiter, "y")
        await trio.sleep(0.2)
        await pair.a.close("x")
        await pair.a.delete("y")
    assert woke == {"x": True, "y": True}
    assert (await pair.b.head("x")).closed
    with pytest.raises(StreamNotFoundError):
        await pair.b.read("y", 0)


async def test_a_wait_with_nothing_new_times_out_and_a_missing_stream_raises(
    pair: Pair,
) -> None:
    await pair.a.create("quiet", CreateRequest(TEXT, body=b"z"))
    assert await pair.b.wait("quiet", 1, 0.3) is False
    assert await pair.b.wait("quiet", 0, 0.3) is True  # already has bytes past 0
    with pytest.raises(StreamNotFoundError):
        await pair.b.wait("nothing", 0, 0.3)


async def test_forks_copy_their_source_up_to_the_fork_point_and_sub_offsets(
    pair: Pair,
) -> None:
    await pair.a.create("src", CreateRequest(TEXT, body=b"first"))
    await pair.a.append("src", text("second"))
    fork = await pair.b.fork("f1", ForkRequest("src", position=5))
    assert (fork.created, fork.meta.tail, fork.meta.forked_from) == (True, 5, "src")
    await pair.b.append("f1", text("!"))
    assert await read_all(pair.a, "f1") == b"first!"
    assert await read_all(pair.a, "src") == b"firstsecond"
    # Three bytes of the append that starts at 5 ("second").
    await pair.a.fork("f2", ForkRequest("src", position=5, sub_offset=3, body=b"XY"))
    assert await read_all(pair.b, "f2") == b"firstsecXY"
    with pytest.raises(BadRequestError):
        await pair.a.fork("f3", ForkRequest("src", position=5, sub_offset=7))
    with pytest.raises(BadRequestError):
        await pair.a.fork("f3", ForkRequest("src", position=3, sub_offset=1))  # no append at 3
    with pytest.raises(BadRequestError):
        await pair.a.fork("f3", ForkRequest("src", position=12))
    with pytest.raises(StreamNotFoundError):
        await pair.a.fork("f3", ForkRequest("nowhere"))
    with pytest.raises(ConflictError):
        await pair.a.fork("f3", ForkRequest("src", content_type=JSON))
    # Forks of forks: a sub-offset inside an append that the fork inherited, clipped.
    await pair.b.fork("f4", ForkRequest("f2", position=5, sub_offset=3))
    assert await read_all(pair.a, "f4") == b"firstsec"
    with pytest.raises(BadRequestError):
        await pair.b.fork("f5", ForkRequest("f2", position=5, sub_offset=4))
    again = await pair.a.fork("f1", ForkRequest("src", position=5))
    assert again.created is False
    with pytest.raises(ConflictError):
        await pair.a.fork("f1", ForkRequest("src", position=4))


async def test_json_forks_count_messages(pair: Pair) -> None:
    await pair.a.create("js", CreateRequest(JSON, body=b'[{"a":1},{"b":2},{"c":3}]'))
    await pair.b.fork("jf", ForkRequest("js", position=0, sub_offset=2))
    assert as_array(await read_all(pair.a, "jf")) == b'[{"a":1},{"b":2}]'
    with pytest.raises(BadRequestError):
        await pair.b.fork("jg", ForkRequest("js", position=0, sub_offset=4))


async def test_a_deleted_source_is_soft_deleted_while_forks_hold_it_then_goes(
    pair: Pair,
) -> None:
    await pair.a.create("l0", CreateRequest(TEXT, body=b"A"))
    await pair.a.fork("l1", ForkRequest("l0"))
    await pair.a.append("l1", text("B"))
    await pair.b.fork("l2", ForkRequest("l1"))
    await pair.b.append("l2", text("C"))
    await pair.a.delete("l0")
    await pair.b.delete("l1")
    for name in ("l0", "l1"):
        with pytest.raises(StreamGoneError):
            await pair.a.head(name)
        with pytest.raises(StreamGoneError):
            await pair.b.append(name, text("x"))
        with pytest.raises(StreamGoneError):
            await pair.b.delete(name)
        with pytest.raises(ConflictError):
            await pair.a.create(name, CreateRequest(TEXT))
        with pytest.raises(ConflictError):
            await pair.a.fork("other", ForkRequest(name))
    assert await read_all(pair.a, "l2") == b"ABC"
    await pair.a.delete("l2")  # the last fork: the whole chain goes
    for name in ("l0", "l1", "l2"):
        with pytest.raises(StreamNotFoundError):
            await pair.b.head(name)
    await pair.b.create("l0", CreateRequest(JSON))  # the name is free again


async def test_a_fork_refused_holds_nothing(pair: Pair) -> None:
    await pair.a.create("solo", CreateRequest(TEXT, body=b"s"))
    with pytest.raises(ConflictError):
        await pair.b.fork("nope", ForkRequest("solo", content_type=JSON))
    await pair.a.delete("solo")
    with pytest.raises(StreamNotFoundError):
        await pair.b.head("solo")


async def test_a_ttl_expires_an_idle_stream_and_any_access_but_head_slides_it(
    pair: Pair,
) -> None:
    await pair.a.create("idle", CreateRequest(TEXT, expiry=Expiry(ttl_seconds=1)))
    await pair.a.create("busy", CreateRequest(TEXT, expiry=Expiry(ttl_seconds=1)))
    await trio.sleep(0.5)
    await pair.b.head("idle")  # does not slide its TTL
    for _ in range(3):
        await pair.b.read("busy", 0)
        await trio.sleep(0.5)
    with pytest.raises(StreamNotFoundError):
        await pair.a.head("idle")
    assert (await pair.a.head("busy")).ttl_seconds == 1
    await pair.a.create("idle", CreateRequest(JSON))  # an expired name is free again


async def test_an_expired_source_that_forks_hold_is_soft_deleted(pair: Pair) -> None:
    await pair.a.create("old", CreateRequest(TEXT, body=b"kept", expiry=Expiry(ttl_seconds=1)))
    await pair.b.fork("young", ForkRequest("old", expiry=Expiry(ttl_seconds=60)))
    await trio.sleep(1.3)
    with pytest.raises(StreamGoneError):
        await pair.a.head("old")
    assert await read_all(pair.b, "young") == b"kept"
    await pair.b.delete("young")
    with pytest.raises(StreamNotFoundError):
        await pair.a.head("old")


async def test_a_fork_inherits_its_source_s_expiry_unless_it_has_its_own(pair: Pair) -> None:
    await pair.a.create("src", CreateRequest(TEXT, expiry=Expiry(ttl_seconds=3600)))
    inherited = await pair.b.fork("f", ForkRequest("src"))
    assert inherited.meta.ttl_seconds == 3600
    own = await pair.b.fork("g", ForkRequest("src", expiry=Expiry(ttl_seconds=7200)))
    assert own.meta.ttl_seconds == 7200


async def test_streams_belong_to_their_owner(pair: Pair) -> None:
    await pair.a.create("mine", CreateRequest(TEXT, body=b"secret"), owner="k1")
    with pytest.raises(StreamNotFoundError):
        await pair.b.read("mine", 0, owner="k2")
    with pytest.raises(StreamNotFoundError):
        await pair.b.append("mine", text("x"), owner=None)
    with pytest.raises(ConflictError):
        await pair.b.create("mine", CreateRequest(TEXT), owner="k2")
    with pytest.raises(StreamNotFoundError):
        await pair.b.fork("theirs", ForkRequest("mine"), owner="k2")
    assert (await pair.b.read("mine", 0, owner="k1")).data == b"secret"


async def test_shutdown_wakes_waiting_readers_with_an_error(pair: Pair) -> None:
    await pair.a.create("s", CreateRequest(TEXT))
    raised: list[BaseException] = []

    async def waiter() -> None:
        try:
            await pair.b.wait("s", 0, 30)
        except ShuttingDownError as exc:
            raised.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(0.2)
        pair.b.shutdown()
    assert len(raised) == 1


async def test_producers_retrying_through_both_instances_append_each_message_once(
    pair: Pair,
) -> None:
    """Two producers, each sending every message through both instances at once (a retry
    racing its original): every message lands once, each producer's in its order."""
    await pair.a.create("race", CreateRequest(TEXT))
    count = 40

    async def producer(name: str) -> None:
        for seq in range(count):
            request = produced(f"{name}{seq:02d};", name, 0, seq)
            async with trio.open_nursery() as nursery:
                for store in (pair.a, pair.b, pair.a):
                    nursery.start_soon(store.append, "race", request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer, "p")
        nursery.start_soon(producer, "q")
    messages = (await read_all(pair.b, "race")).decode().split(";")[:-1]
    assert len(messages) == 2 * count
    for name in ("p", "q"):
        assert [m for m in messages if m[0] == name] == [f"{name}{seq:02d}" for seq in range(count)]


async def test_a_follower_on_the_other_instance_reads_exactly_the_log(pair: Pair) -> None:
    """An SSE-like follower (wait, then read, again and again) on one instance while the
    other appends chunks of every size: it reads the log byte for byte, and ends at the
    close."""
    await pair.a.create("follow", CreateRequest(TEXT))
    chunks = [bytes([65 + index % 26]) * (1 + (index * 37) % 47) for index in range(120)]
    received = bytearray()

    async def follower() -> None:
        position = 0
        while True:
            await pair.b.wait("follow", position, 30)
            read = await pair.b.read("follow", position, limit=50)
            received.extend(read.data)
            position = read.end
            if read.closed_at_end:
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower)
        for index, chunk in enumerate(chunks):
            await pair.a.append("follow", AppendRequest(chunk, content_type=TEXT))
            if index % 10 == 0:
                await trio.sleep(0.01)  # now and then the follower catches up
        await pair.a.close("follow")
    assert bytes(received) == b"".join(chunks)
