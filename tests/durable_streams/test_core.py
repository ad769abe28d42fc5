"""The pure logic of the Durable Streams protocol (``trio_streams.core.durable``)."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.core.durable import cursor, json_mode, sse
from trio_streams.core.durable.appends import plan_append
from trio_streams.core.durable.errors import (
    BadRequestError,
    ConflictError,
    StaleEpochError,
    StreamTooLargeError,
)
from trio_streams.core.durable.headers import (
    MAX_TOKEN_LENGTH,
    closed,
    expiry,
    fork_source,
    producer_claim,
    rfc3339,
    stream_content_type,
    stream_seq,
)
from trio_streams.core.durable.lifecycle import deadline, message_ends, slid, sub_offset_bytes
from trio_streams.core.durable.model import AppendRequest, AppendStatus, StreamMeta
from trio_streams.core.durable.offsets import (
    InvalidOffsetError,
    format_offset,
    parse_offset,
    parse_stream_offset,
)
from trio_streams.core.durable.producers import (
    ProducerClaim,
    ProducerState,
    Verdict,
    decide,
)

# -- offsets ------------------------------------------------------------------------------


@given(st.integers(0, 10**16 - 1), st.integers(0, 10**16 - 1))
def test_offsets_sort_as_their_positions(a: int, b: int) -> None:
    assert (format_offset(a) < format_offset(b)) == (a < b)
    assert parse_offset(format_offset(a)).position == a


def test_sentinels_and_generation_offsets_parse() -> None:
    assert parse_offset(None).start and parse_offset("-1").start
    assert parse_offset("now").now
    parsed = parse_offset("0123456789abcdef_0000000000000042")
    assert (parsed.prefix, parsed.position) == ("0123456789abcdef", 42)
    assert parse_stream_offset("0000000000000000_0000000000000007") == 7


@pytest.mark.parametrize(
    "raw", ["", "0", "-2", "NOW", "0000000000000000_1", "00000000000000000_0000000000000000",
            "0123456789ABCDEF_0000000000000000", "0000000000000000_000000000000000a", "../x"],
)  # fmt: skip
def test_anything_else_is_not_an_offset(raw: str) -> None:
    with pytest.raises(InvalidOffsetError):
        parse_offset(raw)


def test_a_session_offset_is_not_a_generic_stream_offset() -> None:
    with pytest.raises(InvalidOffsetError):
        parse_stream_offset("0123456789abcdef_0000000000000000")


# -- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["03600", "+3600", "3600.0", "3.6e3", "-1", " 1", ""])
def test_a_ttl_is_a_plain_decimal(raw: str) -> None:
    with pytest.raises(BadRequestError):
        expiry({"Stream-TTL": raw})


def test_ttl_and_expires_at_are_exclusive() -> None:
    assert expiry({"Stream-TTL": "0"}).ttl_seconds == 0
    both = {"Stream-TTL": "1", "Stream-Expires-At": "2030-01-01T00:00:00Z"}
    with pytest.raises(BadRequestError):
        expiry(both)


def test_expires_at_is_rfc3339_with_a_zone() -> None:
    assert rfc3339("2030-01-01T00:00:00Z") == rfc3339("2030-01-01T01:00:00+01:00")
    assert rfc3339("2030-01-01t00:00:00.250z") == rfc3339("2030-01-01T00:00:00Z") + 0.25
    for bad in ("2030-01-01", "2030-01-01T00:00:00", "tomorrow", "2030-13-01T00:00:00Z"):
        with pytest.raises(BadRequestError):
            rfc3339(bad)


def test_producer_headers_come_all_together_as_safe_integers() -> None:
    claim = producer_claim({"Producer-Id": "p", "Producer-Epoch": "2", "Producer-Seq": "9"})
    assert claim == ProducerClaim("p", 2, 9)
    assert producer_claim({}) is None
    bad = [
        {"Producer-Id": "p", "Producer-Epoch": "0"},
        {"Producer-Id": "", "Producer-Epoch": "0", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "1e3", "Producer-Seq": "0"},
        {"Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": str(2**53)},
        {"Producer-Id": "p" * (MAX_TOKEN_LENGTH + 1), "Producer-Epoch": "0", "Producer-Seq": "0"},
    ]
    for headers in bad:
        with pytest.raises(BadRequestError):
            producer_claim(headers)
    longest = "p" * MAX_TOKEN_LENGTH
    claim = producer_claim({"Producer-Id": longest, "Producer-Epoch": "0", "Producer-Seq": "0"})
    assert claim == ProducerClaim(longest, 0, 0)


def test_stream_seq_is_opaque_but_bounded() -> None:
    assert stream_seq({}) is None
    assert stream_seq({"Stream-Seq": "s" * MAX_TOKEN_LENGTH}) == "s" * MAX_TOKEN_LENGTH
    with pytest.raises(BadRequestError, match="Stream-Seq"):
        stream_seq({"Stream-Seq": "s" * (MAX_TOKEN_LENGTH + 1)})


def test_content_types_and_closure() -> None:
    assert stream_content_type(None) == "application/octet-stream"
    assert stream_content_type("not a type") == "application/octet-stream"
    assert stream_content_type("Text/Plain; charset=utf-8") == "Text/Plain; charset=utf-8"
    assert closed({"Stream-Closed": "TRUE"}) and not closed({"Stream-Closed": "yes"})


def test_a_fork_source_is_a_stream_path_below_the_mount() -> None:
    source = fork_source(
        {"Stream-Forked-From": "/ds/v1/stream/a/b", "Stream-Fork-Sub-Offset": "0"}, "/ds"
    )
    assert source is not None and (source.name, source.position) == ("a/b", None)
    offset = {"Stream-Fork-Offset": "0000000000000000_0000000000000003"}
    source = fork_source({"Stream-Forked-From": "/v1/stream/x", **offset}, "/ds")
    assert source is not None and source.position == 3
    # The path as it stands in the source's URL: percent-decoded, as routing decodes it.
    source = fork_source({"Stream-Forked-From": "/ds/v1/stream/100%25/a%2Fb"}, "/ds")
    assert source is not None and source.name == "100%/a/b"
    assert fork_source({}, "/ds") is None
    for headers in (
        {"Stream-Fork-Sub-Offset": "0"},  # without a source, even 0
        {"Stream-Forked-From": "/elsewhere/x"},
        {"Stream-Forked-From": "/v1/stream/x", "Stream-Fork-Sub-Offset": "1"},  # no offset
        {"Stream-Forked-From": "/v1/stream/x", "Stream-Fork-Sub-Offset": "05", **offset},
    ):
        with pytest.raises(BadRequestError):
            fork_source(headers, "/ds")


# -- producers ----------------------------------------------------------------------------


def test_the_producer_state_machine() -> None:
    state = ProducerState(epoch=1, last_seq=4)
    assert decide(None, ProducerClaim("p", 0, 0)).verdict is Verdict.ACCEPTED
    assert decide(None, ProducerClaim("p", 0, 1)).verdict is Verdict.SEQUENCE_GAP
    assert decide(state, ProducerClaim("p", 0, 5)).verdict is Verdict.STALE_EPOCH
    assert decide(state, ProducerClaim("p", 2, 1)).verdict is Verdict.EPOCH_SEQ
    assert decide(state, ProducerClaim("p", 2, 0)).state == ProducerState(2, 0)
    duplicate = decide(state, ProducerClaim("p", 1, 2))
    assert (duplicate.verdict, duplicate.known) == (Verdict.DUPLICATE, 4)
    assert decide(state, ProducerClaim("p", 1, 5)).state == ProducerState(1, 5)
    gap = decide(state, ProducerClaim("p", 1, 7))
    assert (gap.verdict, gap.known) == (Verdict.SEQUENCE_GAP, 5)


# -- JSON mode ----------------------------------------------------------------------------


def test_json_messages_are_compact_and_separated() -> None:
    assert json_mode.frame(b'{ "a" : 1 }') == b'{"a":1},'
    assert json_mode.frame(b"[1, [2, 3], {}]") == b"1,[2,3],{},"
    assert json_mode.frame(b'"\\udc00"') == b'"\\udc00",'  # a lone surrogate stays escaped
    assert json_mode.frame(b"[]", initial=True) == b""
    assert json_mode.as_array(b"1,[2,3],") == b"[1,[2,3]]" and json_mode.as_array(b"") == b"[]"
    for bad in (b"[]", b"{", b"NaN", b"\xff", b"[" * 100_000, b"1e999", b'[{"a": -1e400}]'):
        with pytest.raises(BadRequestError):
            json_mode.frame(bad)


def test_json_nested_near_the_recursion_limit_is_framed_or_refused() -> None:
    """Python's parser takes a nesting one level deeper than its writer can write back:
    whatever the depth, the answer is the framed body or a ``400``, never a 500."""
    limit = sys.getrecursionlimit()
    for depth in range(limit - 200, limit + 20):
        with contextlib.suppress(BadRequestError):
            json_mode.frame(b"[" * depth + b"]" * depth)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False,
    allow_infinity=False), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=8,
)  # fmt: skip


@given(st.lists(json_values, min_size=1, max_size=5))
def test_framed_messages_read_back_as_the_array_and_their_boundaries(values: list[object]) -> None:
    framed = json_mode.frame(json.dumps(values).encode())
    assert json.loads(json_mode.as_array(framed)) == values
    ends = message_ends(framed)
    assert len(ends) == len(values) and ends[-1] == len(framed)
    assert json.loads(json_mode.as_array(framed[: ends[0]])) == values[:1]


# -- appends ------------------------------------------------------------------------------

META = StreamMeta(name="s", content_type="text/plain", tail=10)


def plan(request: AppendRequest, meta: StreamMeta = META, **state: object):  # type: ignore[no-untyped-def]
    options: dict[str, object] = {"producer_state": None, "last_seq": None, "closed_by": None}
    options.update(state)
    return plan_append(meta, request, **options)  # type: ignore[arg-type]


def test_an_append_needs_a_matching_content_type_and_a_body() -> None:
    assert plan(AppendRequest(b"x", "TEXT/plain; charset=utf-8")).result.tail == 11
    with pytest.raises(ConflictError):
        plan(AppendRequest(b"x", "application/json"))
    with pytest.raises(BadRequestError):
        plan(AppendRequest(b"x", None))
    with pytest.raises(BadRequestError):
        plan(AppendRequest(b"", "text/plain"))
    with pytest.raises(StreamTooLargeError):
        plan(AppendRequest(b"xx", "text/plain"), max_bytes=11)


def test_stream_seq_must_increase_bytewise() -> None:
    assert plan(AppendRequest(b"x", "text/plain", "b"), last_seq="a").stream_seq == "b"
    with pytest.raises(ConflictError):
        plan(AppendRequest(b"x", "text/plain", "a"), last_seq="a")
    with pytest.raises(ConflictError):
        plan(AppendRequest(b"x", "text/plain", "10"), last_seq="9")


def test_a_producer_retry_is_a_duplicate_before_stream_seq_is_checked() -> None:
    claim = ProducerClaim("p", 0, 3)
    retry = plan(
        AppendRequest(b"x", "text/plain", "a", claim),
        producer_state=ProducerState(0, 3),
        last_seq="a",
    )
    assert retry.result.status is AppendStatus.DUPLICATE and not retry.data
    assert retry.result.producer == ProducerClaim("p", 0, 3)


def test_a_closed_stream_refuses_appends_but_not_the_retry_that_closed_it() -> None:
    closed_meta = StreamMeta(name="s", content_type="text/plain", tail=10, closed=True)
    closer = ProducerClaim("p", 0, 1)
    retry = plan(AppendRequest(b"y", "text/plain", producer=closer, close=True), closed_meta,
                 closed_by=closer)  # fmt: skip
    assert retry.result.status is AppendStatus.DUPLICATE and retry.result.closed
    assert plan(AppendRequest(b"", close=True), closed_meta).result.status is AppendStatus.CLOSED
    with pytest.raises(ConflictError) as refused:
        plan(AppendRequest(b"y", "text/plain"), closed_meta)
    assert refused.value.headers["Stream-Closed"] == "true"
    with pytest.raises(StaleEpochError) as stale:
        plan(AppendRequest(b"y", "text/plain", producer=ProducerClaim("p", 0, 2)), closed_meta,
             producer_state=ProducerState(3, 0))  # fmt: skip
    assert stale.value.headers["Producer-Epoch"] == "3"


def test_close_only_ignores_the_content_type() -> None:
    closing = plan(AppendRequest(b"", "application/json", close=True))
    assert closing.close and closing.result.status is AppendStatus.CLOSED and not closing.data


# -- lifecycle ----------------------------------------------------------------------------


def test_a_ttl_slides_and_an_absolute_expiry_does_not() -> None:
    ttl = expiry({"Stream-TTL": "10"})
    assert deadline(ttl, now=100.0, now_unix=5_000.0) == 110.0
    absolute = expiry({"Stream-Expires-At": "1970-01-01T01:30:00Z"})  # Unix 5400
    assert deadline(absolute, now=100.0, now_unix=5_000.0) == 500.0
    meta = StreamMeta(name="s", content_type="x", tail=0, ttl_seconds=10)
    assert slid(meta, 110.0, now=105.0) == 115.0
    assert slid(StreamMeta(name="s", content_type="x", tail=0), 500.0, now=105.0) == 500.0


def test_a_sub_offset_counts_bytes_or_json_messages_of_one_append() -> None:
    assert sub_offset_bytes(b"hello", 3, "text/plain") == 3
    assert sub_offset_bytes(b'{"a":1},{"b":2},{"c":3},', 2, "application/json") == 16
    assert sub_offset_bytes(None, 0, "text/plain") == 0
    for append, sub, kind in ((b"hi", 3, "text/plain"), (b"1,2,", 3, "application/json"),
                              (None, 1, "text/plain")):  # fmt: skip
        with pytest.raises(BadRequestError):
            sub_offset_bytes(append, sub, kind)


# -- cursors and SSE ----------------------------------------------------------------------


def test_cursors_never_repeat_nor_go_back() -> None:
    now = cursor.EPOCH_UNIX + 20 * 1000 + 5
    assert cursor.response_cursor(None, now) == "1000"
    assert cursor.response_cursor("999", now) == "1000"
    rng = random.Random(1)
    for echoed in ("1000", "5000"):
        assert int(cursor.response_cursor(echoed, now, rng)) > int(echoed)
    assert cursor.response_cursor("x", now) == "1000"


def test_sse_payload_lines_cannot_inject_events() -> None:
    event = sse.event("data", "a\r\nevent: control\rdata: x\nb")
    assert event == b"event: data\ndata:a\ndata:event: control\ndata:data: x\ndata:b\n\n"
    encoded = sse.data_event(b"\x00\xff", base64_encoded=True)
    assert base64.b64decode(encoded.split(b"data:")[1].strip()) == b"\x00\xff"
    closing = sse.control_event("o", cursor="7", up_to_date=True, closed=True)
    assert b'"streamClosed":true' in closing and b"streamCursor" not in closing


@given(st.text(max_size=20), st.integers(0, 80))
def test_utf8_complete_never_splits_a_character(text: str, cut: int) -> None:
    data = text.encode()[:cut]
    whole = sse.utf8_complete(data)
    data[:whole].decode()
    assert len(data) - whole < 4
