"""The Redis log against a trivial model: random appends, caps and reader offsets."""

from __future__ import annotations

import itertools

import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.redis_fixtures import RedisServer
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import OffsetBeyondEndError, OffsetLostError
from trio_streams.stores.redis.store import RedisStore

_ids = itertools.count()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cap=st.integers(min_value=1, max_value=48),
    appends=st.lists(st.binary(min_size=1, max_size=30), max_size=25),
    offsets=st.lists(st.integers(min_value=0, max_value=400), min_size=1, max_size=6),
)
# An append larger than the cap keeps its last bytes: the tail has a gap before it.
@example(cap=1, appends=[b"\x00", b"\x00\x01"], offsets=[0])
def test_every_reader_gets_exactly_the_model_bytes(
    redis_server: RedisServer, cap: int, appends: list[bytes], offsets: list[int]
) -> None:
    everything = b"".join(appends)
    dropped = max(0, len(everything) - cap)  # what ByteLog would have dropped
    conversation_id = f"prop-{next(_ids)}"

    async def scenario() -> None:
        async with RedisStore(
            redis_server.url, max_bytes=cap, ping_interval=None, event_ids=False
        ) as store:
            live: list[tuple[int, list[bytes], list[OffsetLostError]]] = []
            go_on = trio.Event()

            async def producer(writer: StreamWriter) -> None:
                await go_on.wait()
                for data in appends:
                    await writer.write(data)

            handle = await store.start(conversation_id, producer)

            async def follow(offset: int, got: list[bytes], lost: list[OffsetLostError]) -> None:
                try:
                    async for chunk in handle.read(offset):
                        got.append(chunk)
                except OffsetLostError as exc:
                    lost.append(exc)

            async with trio.open_nursery() as nursery:
                for offset in offsets:  # live readers, following while the appends land
                    entry: tuple[int, list[bytes], list[OffsetLostError]] = (offset, [], [])
                    live.append(entry)
                    nursery.start_soon(follow, *entry)
                go_on.set()
            for offset, got, lost in live:
                data = b"".join(got)
                assert everything[offset:].startswith(data)
                if not lost:
                    assert data == everything[offset:]
            # Live readers may all have been overtaken: wait for the finalize itself.
            assert [chunk async for chunk in handle.read(len(everything))] == []
            [info] = await store.lookup([conversation_id])
            assert info.total_bytes == len(everything) and info.is_done
            for offset in offsets:  # resumes after the end, through open()
                try:
                    resumed = await store.open(conversation_id, offset)
                except OffsetLostError as exc:
                    assert offset < dropped and exc.dropped_prefix == dropped
                    continue
                except OffsetBeyondEndError as exc:  # past the end of a finished stream
                    assert offset > len(everything) == exc.total_bytes
                    continue
                assert offset >= dropped and resumed is not None
                chunks = [chunk async for chunk in resumed.read(offset)]
                assert b"".join(chunks) == everything[offset:]

    trio.run(scenario)
