"""SSE event ids: every event's id is the byte offset just after it; Last-Event-ID resumes.

The stamper is checked as a property against httpx-sse's parser (random events, line
endings and write splits), then the whole thing over real Hypercorn: the demo stream's
ids, ``Last-Event-ID`` on both GET forms, its errors, and an httpx-sse client resuming.
"""

from __future__ import annotations

import itertools
import re

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from httpx_sse._decoders import SSELineDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli_options import serve_options
from tests.conftest import StartServer
from tests.helpers import assert_error, chat_body, chat_text, ends_with_done, http_client
from trio_streams.core.event_ids import EventIdStamper, id_line
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process

# -- a reference parser: httpx-sse's line splitting, WHATWG event dispatch -----------------


class Parsed:
    """What a browser's EventSource makes of a byte stream (WHATWG "interpret an event stream").

    httpx-sse splits the lines; dispatch follows the spec, which httpx-sse's own decoder
    does not quite (it dispatches events without data): an event's ``id`` sets
    ``last_event_id`` even when the event has no data and is not dispatched.
    """

    def __init__(self, raw: bytes) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.last_event_id = ""
        #: Every value ``last_event_id`` took, in order: where a reconnect would resume.
        self.ids: list[str] = []
        lines = SSELineDecoder()
        event_type, data, id_buffer = "", "", ""
        for line in [*lines.decode(raw.decode()), *lines.flush()]:
            if line == "":
                if id_buffer != self.last_event_id:
                    self.last_event_id = id_buffer
                    self.ids.append(id_buffer)
                if data:
                    self.events.append((event_type or "message", data[:-1], id_buffer))
                event_type, data = "", ""
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event_type = value
            elif name == "data":
                data += value + "\n"
            elif name == "id" and "\0" not in value:
                id_buffer = value


def event_ends(raw: bytes) -> dict[int, int]:
    """For an LF-only stream: the id each event carries -> the offset just after it."""
    ends = {}
    offset = 0
    for block in raw.split(b"\n\n")[:-1]:
        offset += len(block) + 2
        match = re.search(rb"^id: (?:[0-9a-f]{16}-)?([0-9]+)$", block, re.MULTILINE)
        if match:
            ends[int(match.group(1))] = offset
        else:
            assert all(line.startswith(b":") for line in block.split(b"\n")), block
    return ends


def assert_ids_are_offsets(raw: bytes) -> None:
    ends = event_ends(raw)
    assert ends, "no event carried an id"
    assert all(event_id == end for event_id, end in ends.items()), ends


# -- the stamper as a property ------------------------------------------------------------

_VALUE = st.text(alphabet='abc xyz:{}"0123456789', max_size=12)
_LINE = st.one_of(
    st.tuples(st.sampled_from(["data", "event", "id", "retry"]), _VALUE).map(
        lambda field: f"{field[0]}: {field[1]}"
    ),
    _VALUE.map(lambda text: f": {text}"),  # a comment
)
_EVENT = st.tuples(st.lists(_LINE, min_size=1, max_size=4), st.sampled_from(["\n", "\r\n", "\r"]))


def serialize(events: list[tuple[list[str], str]]) -> bytes:
    return b"".join(("".join(line + eol for line in lines) + eol).encode() for lines, eol in events)


def stamp_in_writes(raw: bytes, cuts: list[int]) -> bytes:
    stamper = EventIdStamper()
    out = b""
    bounds = [0, *sorted(cut % (len(raw) + 1) for cut in cuts), len(raw)]
    for start, end in itertools.pairwise(bounds):
        out += stamper.stamp(raw[start:end], len(out))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_EVENT, max_size=8), st.lists(st.integers(min_value=0), max_size=6))
def test_ids_are_the_offsets_after_their_events_and_data_is_unchanged(
    events: list[tuple[list[str], str]], cuts: list[int]
) -> None:
    raw = serialize(events)
    stamped = stamp_in_writes(raw, cuts)
    parsed = Parsed(stamped)
    # Only id lines were added: a client sees the same events with the same data.
    assert [event[:2] for event in parsed.events] == [event[:2] for event in Parsed(raw).events]
    # Each id N splits the stream exactly after its event: a client that got bytes [:N]
    # has N as its Last-Event-ID, and bytes [N:] hold exactly the events it lacks.
    for event_id in parsed.ids:
        end = int(event_id)
        before, after = Parsed(stamped[:end]), Parsed(stamped[end:])
        assert before.last_event_id == event_id
        assert before.events + after.events == parsed.events
    # Every event with a field got its id, ours and only ours: the producer's own id lines
    # are removed (an event of nothing but an id line is left empty, so it gets none);
    # comment-only events get none either.
    with_fields = sum(
        any(not line.startswith((":", "id")) for line in lines) for lines, _ in events
    )
    assert len(parsed.ids) == with_fields
    assert stamped.count(b"id:") == with_fields


def test_the_id_line_uses_the_events_own_line_ending_and_is_its_last_line() -> None:
    stamper = EventIdStamper()
    first = stamper.stamp(b"data: a\r\n\r\n", 0)
    assert first == b"data: a\r\nid: 19\r\n\r\n" and len(first) == 19
    assert stamper.stamp(b": ping\r\r", 19) == b": ping\r\r"  # comment-only: no id
    # The producer's own id is replaced by ours: an event never has two.
    third = stamper.stamp(b"id: theirs\rdata: b\r\r", 27)
    assert third == b"data: b\rid: 43\r\r" and 27 + len(third) == 43


def test_an_upstreams_id_line_is_replaced_even_split_across_writes() -> None:
    """A proxied server that numbers its events (``id: 53412``) gets one id per event."""
    stamper = EventIdStamper(b"0123456789abcdef-")
    out = stamper.stamp(b"data: a\nid: 534", 0)
    out += stamper.stamp(b"12\n\nid: 9\r", len(out))
    out += stamper.stamp(b"\ndata: b\r\n\r\ndata: c\ni", len(out))
    out += stamper.stamp(b"dle: 1\n\n", len(out))
    assert out == (
        b"data: a\nid: 0123456789abcdef-33\n\n"
        b"data: b\r\nid: 0123456789abcdef-69\r\n\r\n"
        b"data: c\nidle: 1\nid: 0123456789abcdef-111\n\n"
    )
    assert len(out) == 111


def test_the_id_line_carries_the_generation_prefix_and_stays_a_fixed_point() -> None:
    prefix = b"0123456789abcdef-"
    line = id_line(99_990, b"\n", b"\n", prefix)
    assert line == b"id: 0123456789abcdef-100019\n" and 99_990 + len(line) + 1 == 100_019
    stamper = EventIdStamper(prefix)
    assert stamper.stamp(b"data: x\n\n", 5) == b"data: x\nid: 0123456789abcdef-38\n\n"


def test_the_id_is_a_fixed_point_across_a_change_in_digit_count() -> None:
    # The line counts its own digits: from 2, "id: 9\n" + "\n" ends at 2 + 6 + 1 = 9.
    assert id_line(2, b"\n", b"\n") == b"id: 9\n"
    # From 3, one digit would give 10, which has two: "id: 11\n" + "\n" ends at 11.
    assert id_line(3, b"\n", b"\n") == b"id: 11\n"
    line = id_line(99_990, b"\r\n", b"\r\n")
    assert line == b"id: 100004\r\n" and 99_990 + len(line) + 2 == 100_004


@given(
    st.one_of(st.integers(0, 10**15), st.integers(1, 15).map(lambda k: 10**k - 12)),
    st.sampled_from([(b"\n", b"\n"), (b"\r\n", b"\r\n"), (b"\r", b"\r"), (b"\r", b"\n")]),
)
def test_every_id_line_names_the_offset_just_after_its_event(
    line_start: int, endings: tuple[bytes, bytes]
) -> None:
    eol, blank_eol = endings
    line = id_line(line_start, eol, blank_eol)
    assert line.startswith(b"id: ") and line.endswith(eol)
    assert int(line[4 : -len(eol)]) == line_start + len(line) + len(blank_eol)


# -- over real Hypercorn ----------------------------------------------------------------------


async def start_chat(
    client: httpx.AsyncClient, conversation_id: str, prompt: str, **extra: object
) -> bytes:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(prompt, **extra),
        headers={"X-Conversation-Id": conversation_id},
    )
    assert response.status_code == 200
    return response.content


async def test_every_demo_event_carries_the_offset_after_it_pings_included(
    start_server: StartServer,
) -> None:
    server = await start_server(demo_prefill=0.35)
    async with http_client(server, timeout=10) as client:
        raw = await start_chat(client, "c-ids", "ids", max_tokens=20, sse_ping_interval=0.1)
    assert raw.startswith(b": ping\n\n")  # pings shift every later offset; ids follow
    assert_ids_are_offsets(raw)
    assert len(event_ends(raw)) == 1 + 20 + 1 + 1  # role, tokens, finish, [DONE]
    assert ends_with_done(raw)


@pytest.mark.parametrize("form", ["path", "query"])
async def test_last_event_id_resumes_after_that_event_and_wins_over_from(
    server: RunningServer, client: httpx.AsyncClient, form: str
) -> None:
    full = await start_chat(client, "c/last", "resume by id", max_tokens=12)
    url, params = (
        ("/v1/stream/c%2Flast", {}) if form == "path" else ("/v1/stream", {"conv_id": "c/last"})
    )
    for event_id in sorted(event_ends(full)):
        response = await client.get(
            url, params={**params, "from": "0"}, headers={"Last-Event-ID": str(event_id)}
        )
        assert response.status_code == 200
        assert response.content == full[event_id:]
    # An empty header is no header: `from` applies.
    response = await client.get(url, params={**params, "from": "5"}, headers={"Last-Event-ID": ""})
    assert response.content == full[5:]


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "+3", "1_000", "0x10"])
async def test_an_invalid_last_event_id_is_a_400(client: httpx.AsyncClient, bad: str) -> None:
    await start_chat(client, "c-bad", "x", max_tokens=2)
    response = await client.get("/v1/stream/c-bad", headers={"Last-Event-ID": bad})
    assert_error(response, 400, "Invalid 'Last-Event-ID'", "invalid_request_error")


async def test_a_lost_last_event_id_is_the_documented_400(start_server: StartServer) -> None:
    server = await start_server(session_max_bytes=2000)
    async with http_client(server, timeout=10) as client:
        full_size = len(await start_chat(client, "c-lost", "lose the start", max_tokens=40))
        session = server.manager.get("c-lost")
        assert session is not None and session.dropped_prefix == full_size - 2000
        lost = await client.get("/v1/stream/c-lost", headers={"Last-Event-ID": "10"})
        assert_error(lost, 400, "Stream offset lost, please restart", "invalid_request_error")
        unknown = await client.get("/v1/stream/nope", headers={"Last-Event-ID": "10"})
        assert_error(unknown, 404, "Stream not found or expired", "not_found_error")


async def test_an_httpx_sse_client_resumes_with_its_last_event_id_without_gap_or_duplicate(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    """What a browser EventSource does on a dropped connection, with httpx-sse."""
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("eventsource", max_tokens=80),
        headers={"X-Conversation-Id": "c-es"},
    ) as started:
        assert started.status_code == 200
    # The starting request is gone; read ~10 events at a time, dropping each connection.
    events: list[ServerSentEvent] = []
    last_event_id = ""
    while not events or events[-1].data != "[DONE]":
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        async with aconnect_sse(client, "GET", "/v1/stream/c-es", headers=headers) as source:
            received = 0
            async for event in source.aiter_sse():
                events.append(event)
                last_event_id = event.id
                received += 1
                if received == 10:
                    break
    session = server.manager.get("c-es")
    assert session is not None
    whole = b"".join([chunk async for chunk in session.read(0)])
    assert [event.data for event in events] == [event[1] for event in Parsed(whole).events]
    assert chat_text(whole) == "".join(answer_tokens("eventsource")[:80])


async def test_event_ids_can_be_turned_off_for_byte_identical_streams(
    start_server: StartServer,
) -> None:
    server = await start_server(event_ids=False)
    async with http_client(server, timeout=10) as client:
        raw = await start_chat(client, "c-off", "no ids", max_tokens=5)
    assert b"\nid:" not in raw and ends_with_done(raw)
    assert raw.count(b"\n\n") == 1 + 5 + 1 + 1


@pytest.mark.parametrize(
    ("args", "env"), [(("--no-event-ids",), {}), ((), {"TRIO_STREAMS_EVENT_IDS": "false"})]
)
async def test_the_command_line_turns_event_ids_off(
    args: tuple[str, ...], env: dict[str, str], start_server: StartServer
) -> None:
    server = await start_server(**serve_options(*args, env=env))
    async with http_client(server, timeout=10) as client:
        raw = await start_chat(client, "c-cli", "no ids", max_tokens=5)
    assert b"\nid:" not in raw and ends_with_done(raw)
