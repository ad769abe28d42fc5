"""The kit's fixtures: the whole API in-process, faults on demand, virtual time.

Every test here but the Redis ones runs under ``autojump_clock``: minutes of the server's
time (TTL, pings, GC, the demo's pace, the clients' timeouts) in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_streams.client.streams_client import Backoff, StreamNotFoundError
from trio_streams.core.sse import PING
from trio_streams.testing import FakeUpstream, StreamsServer, chat_request, plugin
from trio_streams.testing.fake_upstream import numbered_events

CONV = {"X-Conversation-Id": "conv-1"}


@asynccontextmanager
async def started(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Stream ``conv-1`` with ``body`` until its first chunk has come: the rest of its
    bytes, for a test to act in the middle of the answer."""
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=CONV) as response:
        chunks = response.aiter_raw()
        await chunks.__anext__()
        yield chunks


def data_events(raw: bytes) -> list[str]:
    return [
        line[len("data: ") :]
        for block in raw.decode().split("\n\n")
        for line in block.split("\n")
        if line.startswith("data: ")
    ]


async def read_all(response: httpx.Response) -> bytes:
    return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_a_stream_is_served_whole_on_the_demo_models_pace(
    streams_http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    async with streams_http.stream(
        "POST", "/v1/chat/completions", json=chat_request("hello"), headers=CONV
    ) as response:
        assert response.status_code == 200
        raw = await read_all(response)
    assert data_events(raw)[-1] == "[DONE]"
    # 200 tokens/s: the answer took its time, in virtual seconds.
    assert trio.current_time() >= len(data_events(raw)) / 200 - 0.01
    again = await streams_http.get("/v1/stream", params={"conv_id": "conv-1"})
    assert again.content == raw


@pytest.mark.streams_settings(session_ttl=300, gc_interval=60)
async def test_a_finished_session_expires_after_its_ttl_in_virtual_time(
    streams_server: StreamsServer,
    streams_http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    await streams_http.post("/v1/chat/completions", json=chat_request(), headers=CONV)
    await trio.sleep(299)
    assert (await streams_http.get("/v1/stream/conv-1")).status_code == 200
    await trio.sleep(2 + 60)  # past the TTL, and one GC round later
    assert (await streams_http.get("/v1/stream/conv-1")).status_code == 404
    assert len(streams_server.manager) == 0  # collected, not only hidden


@pytest.mark.streams_settings(demo_prefill=12, ping_interval=5)
async def test_a_silent_stream_gets_a_ping_every_five_seconds(
    streams_http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    async with streams_http.stream(
        "POST", "/v1/chat/completions", json=chat_request(), headers=CONV
    ) as response:
        pings = []
        async for chunk in response.aiter_raw():
            if chunk == PING:
                pings.append(trio.current_time())
            else:
                break
    assert pings == pytest.approx([5, 10])


async def test_the_resuming_client_gets_every_byte_across_three_cuts(
    streams_server: StreamsServer, autojump_clock: trio.testing.MockClock
) -> None:
    for at_byte in (1000, 333, 2500):  # the first response and two resumed reads
        streams_server.network.cut(at_byte=at_byte)
    async with streams_server.streams_client(backoff=Backoff(first=0.5)) as client:
        raw = b"".join([chunk async for chunk in client.start_bytes("conv-1", chat_request())])
    whole = await streams_server.http().get("/v1/stream/conv-1")
    assert raw == whole.content
    assert streams_server.network.cuts == 3
    generation = whole.headers["x-stream-generation"]
    queries = [c.query for c in streams_server.network.connections if c.path == "/v1/stream"]
    prefix = f"conv_id=conv-1&generation={generation}&from="
    assert len(queries) == 3 and all(query.startswith(prefix) for query in queries)
    # The client resumes pinned to its generation, from the end of the last whole event
    # it had: at most where each cut fell, never past it, always further on.
    froms = [int(query[len(prefix) :]) for query in queries]
    assert 0 < froms[0] <= 1000 < froms[0] + 333
    assert froms[0] < froms[1] <= froms[0] + 333 and froms[1] < froms[2] <= froms[1] + 2500


async def test_a_stalled_reader_times_out_and_resumes(
    streams_server: StreamsServer, autojump_clock: trio.testing.MockClock
) -> None:
    streams_server.network.stall(after_events=5, path="/v1/chat/completions")
    async with streams_server.streams_client(read_timeout=3, backoff=Backoff(first=1)) as client:
        events = [event async for event in client.chat("conv-1", chat_request())]
    assert events[-1].data == "[DONE]"
    assert [c.ending for c in streams_server.network.connections] == ["stalled", "complete"]


async def test_a_failing_producer_ends_its_stream_with_an_error_event(
    streams_server: StreamsServer,
    streams_http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    streams_server.model.fail_next(after_events=3, message="out of memory")
    response = await streams_http.post("/v1/chat/completions", json=chat_request(), headers=CONV)
    events = data_events(response.content)
    assert len(events) == 4
    assert "out of memory" in json.loads(events[-1])["error"]["message"]
    assert streams_server.model.failed == 1


async def test_another_client_stops_the_stream_a_reader_follows(
    streams_server: StreamsServer,
    streams_http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with started(streams_http, chat_request()) as chunks:
        assert (await streams_server.stop("conv-1")).status_code == 204
        rest = b"".join([chunk async for chunk in chunks])  # the response ends
    assert b"[DONE]" not in rest
    with pytest.raises(StreamNotFoundError):
        async with streams_server.streams_client() as client:
            async for _ in client.iter_bytes("conv-1"):
                pass


async def test_another_client_replaces_the_stream(
    streams_server: StreamsServer,
    streams_http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with started(streams_http, chat_request("first")) as chunks:
        replaced = await streams_server.start("conv-1", chat_request("second"))
        assert replaced.status_code == 200
        async for _ in chunks:  # the first generation's readers reach their end
            pass
    assert streams_server.network.connections[0].ending == "complete"


async def test_a_shutdown_ends_every_reader_and_refuses_new_connections(
    streams_server: StreamsServer,
    streams_http: httpx.AsyncClient,
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with started(streams_http, chat_request()) as chunks:
        streams_server.shutdown()
        async for _ in chunks:
            pass
    with pytest.raises(httpx.ConnectError):
        await streams_http.get("/health")


@pytest.mark.streams_settings(upstream_read_timeout=30)
async def test_an_upstream_gone_silent_fails_the_stream_after_the_read_timeout(
    fake_upstream: FakeUpstream,
    streams_proxy: StreamsServer,
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake_upstream.script.events = numbered_events(5)
    fake_upstream.script.stall_after = 2
    response = await streams_proxy.http().post(
        "/v1/chat/completions", json=chat_request(), headers=CONV
    )
    events = data_events(response.content)
    assert len(events) == 3 and "error" in json.loads(events[-1])
    assert trio.current_time() == pytest.approx(30, abs=1)
    assert fake_upstream.streams[0].gone.is_set()


async def test_an_upstream_that_drops_mid_event_ends_the_stream_with_whole_events(
    fake_upstream: FakeUpstream,
    streams_proxy: StreamsServer,
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake_upstream.script.events = numbered_events(5)
    fake_upstream.script.piece_size = 50  # pieces that end in the middle of events
    fake_upstream.script.drop_after = 3
    response = await streams_proxy.http().post(
        "/v1/chat/completions", json=chat_request(), headers=CONV
    )
    assert response.content.endswith(b"\n\n")
    events = data_events(response.content)
    assert "error" in json.loads(events[-1])
    assert all(json.loads(event)["object"] == "chat.completion.chunk" for event in events[:-1])


@pytest.mark.parametrize("streams_server", ["memory", "redis"], indirect=True)
@pytest.mark.streams_settings(demo_tps=2000)  # real time: a whole answer in 0.13 s
async def test_the_same_fixture_runs_on_the_redis_store_in_real_time(
    streams_server: StreamsServer, streams_http: httpx.AsyncClient
) -> None:
    streams_server.network.cut(at_byte=700)
    async with streams_server.streams_client(backoff=Backoff(first=0.01)) as client:
        raw = b"".join([chunk async for chunk in client.start_bytes("conv-1", chat_request())])
    assert raw == (await streams_http.get("/v1/stream/conv-1")).content
    assert data_events(raw)[-1] == "[DONE]"


async def test_the_redis_store_refuses_the_autojump_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(pytest.UsageError, match="runs in real time"):
        plugin.refuse_autojump("streams_server on the Redis store")
