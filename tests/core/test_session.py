"""StreamSession: waking readers without polling, lost offsets, finalize, cancel."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_streams.core.session import OffsetLostError, StreamSession


async def collect(session: StreamSession, offset: int, into: list[bytes]) -> None:
    async for chunk in session.read(offset):
        into.append(chunk)


async def test_reader_wakes_on_append_and_ends_on_finalize(autojump_clock: trio.abc.Clock) -> None:
    session = StreamSession("c", max_bytes=1024)
    received: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, session, 0, received)
        await trio.testing.wait_all_tasks_blocked()
        assert received == []
        session.append(b"a")
        await trio.testing.wait_all_tasks_blocked()
        assert received == [b"a"]
        await trio.sleep(3600)  # a parked reader wakes for nothing but data or finalize
        assert received == [b"a"]
        session.append(b"b")
        session.append(b"c")
        await trio.testing.wait_all_tasks_blocked()
        assert received == [b"a", b"bc"]  # what piled up comes in one chunk
        session.finalize()
    assert session.reader_count == 0


async def test_reader_beyond_the_end_waits_for_those_bytes() -> None:
    session = StreamSession("c", max_bytes=1024)
    received: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect, session, 4, received)
        session.append(b"abc")
        await trio.testing.wait_all_tasks_blocked()
        assert received == []
        session.append(b"defg")
        await trio.testing.wait_all_tasks_blocked()
        assert received == [b"efg"]
        session.finalize()


async def test_finalize_is_idempotent_and_refuses_later_appends() -> None:
    session = StreamSession("c", max_bytes=1024)
    session.append(b"abc")
    session.finalize()
    first = (session.completed_at, session.completed_at_clock)
    assert first[0] > 0
    session.finalize()
    assert (session.completed_at, session.completed_at_clock) == first
    assert session.append(b"more") is False
    assert session.total_bytes == 3
    assert [chunk async for chunk in session.read(1)] == [b"bc"]
    assert session.info().is_done is True


async def test_cancelled_reader_ends_at_once(autojump_clock: trio.testing.MockClock) -> None:
    session = StreamSession("c", max_bytes=1024)
    received: list[bytes] = []
    with trio.move_on_after(1) as scope:
        await collect(session, 0, received)
    assert scope.cancelled_caught
    assert session.reader_count == 0


async def test_offsets_below_the_dropped_prefix_are_lost() -> None:
    session = StreamSession("c", max_bytes=4)
    session.append(b"abcdef")
    assert session.dropped_prefix == 2
    with pytest.raises(OffsetLostError) as info:
        await session.read(1).__anext__()
    assert (info.value.offset, info.value.dropped_prefix) == (1, 2)
    session.check_offset(2)


async def test_a_reader_overtaken_by_the_cap_gets_offset_lost() -> None:
    session = StreamSession("c", max_bytes=4)
    reader = session.read(0)
    session.append(b"ab")
    assert await reader.__anext__() == b"ab"
    session.append(b"cdefgh")  # bytes 2..3 drop before the reader asks again
    with pytest.raises(OffsetLostError):
        await reader.__anext__()


async def test_cancel_is_idempotent_and_cancels_the_scope_before_it_is_entered() -> None:
    session = StreamSession("c", max_bytes=16)
    session.cancel()
    session.cancel()
    assert session.is_cancelled
    ran_past_checkpoint = False
    with session.cancel_scope:
        await trio.lowlevel.checkpoint()
        ran_past_checkpoint = True
    assert not ran_past_checkpoint
    assert not session.is_done  # cancel alone does not finalize


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(min_size=1, max_size=24)),
        st.tuples(st.just("reader"), st.integers(min_value=0, max_value=200)),
        st.tuples(st.just("settle"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(cap=st.integers(min_value=1, max_value=64), operations=ops)
def test_readers_get_exactly_the_model_bytes(
    cap: int, operations: list[tuple[str, object]]
) -> None:
    """Random appends, readers at random offsets, finalize: each reader's bytes are exactly
    the model's bytes from its offset, unless the cap overtook it, which it is told."""

    async def scenario() -> None:
        session = StreamSession("prop", max_bytes=cap)
        everything = bytearray()
        readers: list[tuple[int, list[bytes], list[BaseException]]] = []

        async def reader(offset: int, got: list[bytes], errors: list[BaseException]) -> None:
            try:
                await collect(session, offset, got)
            except OffsetLostError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for op, arg in operations:
                if op == "append":
                    assert isinstance(arg, bytes)
                    session.append(arg)
                    everything += arg
                elif op == "reader":
                    assert isinstance(arg, int)
                    entry: tuple[int, list[bytes], list[BaseException]] = (arg, [], [])
                    readers.append(entry)
                    nursery.start_soon(reader, *entry)
                else:
                    await trio.testing.wait_all_tasks_blocked()
            session.finalize()

        for offset, got, errors in readers:
            data = b"".join(got)
            expected = bytes(everything[offset:])
            if errors:
                assert expected.startswith(data)
                assert offset + len(data) < session.dropped_prefix
            else:
                assert data == expected
        assert session.total_bytes == len(everything)
        assert session.reader_count == 0

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
