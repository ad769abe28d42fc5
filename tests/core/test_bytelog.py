"""The capped log's arithmetic, by example and against a trivially correct model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_streams.core.bytelog import ByteLog


def test_offsets_are_logical_and_the_oldest_bytes_drop() -> None:
    log = ByteLog(10)
    log.append(b"0123456")
    log.append(b"789ab")
    assert log.dropped_prefix == 2
    assert log.retained_bytes == 10
    assert log.total_bytes == 12
    assert log.read_from(2) == b"23456789ab"
    assert log.read_from(11) == b"b"
    assert log.read_from(12) == b""
    with pytest.raises(ValueError):
        log.read_from(1)


def test_single_append_larger_than_the_cap_keeps_its_tail() -> None:
    log = ByteLog(4)
    log.append(b"xy")
    log.append(b"abcdefgh")
    assert log.dropped_prefix == 2 + 4
    assert log.total_bytes == 10
    assert log.read_from(6) == b"efgh"


def test_append_exactly_the_cap() -> None:
    log = ByteLog(4)
    log.append(b"z")
    log.append(b"abcd")
    assert (log.dropped_prefix, log.read_from(1)) == (1, b"abcd")


def test_empty_append_and_compact_change_nothing() -> None:
    log = ByteLog(8)
    log.append(b"abcdefgh")
    log.append(b"ij")
    log.append(b"")
    log.compact()
    assert (log.dropped_prefix, log.total_bytes, log.read_from(2)) == (2, 10, b"cdefghij")


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ByteLog(0)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.binary(max_size=40)),
        st.tuples(st.just("read"), st.integers(min_value=0, max_value=400)),
        st.tuples(st.just("compact"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(cap=st.integers(min_value=1, max_value=64), ops=operations)
def test_matches_a_model_that_keeps_everything(cap: int, ops: list[tuple[str, object]]) -> None:
    """Whatever the sequence, the log equals the last ``cap`` bytes of everything appended."""
    log = ByteLog(cap)
    everything = b""
    for op, arg in ops:
        if op == "append":
            assert isinstance(arg, bytes)
            log.append(arg)
            everything += arg
        elif op == "compact":
            log.compact()
        else:
            assert isinstance(arg, int)
            dropped = max(0, len(everything) - cap)
            if arg < dropped:
                with pytest.raises(ValueError):
                    log.read_from(arg)
            else:
                assert log.read_from(arg) == everything[arg:]
        assert log.total_bytes == len(everything)
        assert log.dropped_prefix == max(0, len(everything) - cap)
        assert log.retained_bytes == min(cap, len(everything))
        retained = everything[len(everything) - log.retained_bytes :]
        assert log.tail(10) == retained[-10:]
