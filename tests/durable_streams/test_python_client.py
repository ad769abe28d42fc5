"""The official Durable Streams Python client (PyPI ``durable-streams``) follows an LLM
session through ``/ds/v1/session/<id>`` on a real server, on each store: it reads the
answer live with long-polls, stops part-way, and resumes from its offset over SSE; what it
read is exactly the session's log.

The client is synchronous (its async one runs on asyncio): it runs in a thread while the
server answers on this test's trio loop.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from durable_streams import stream

from tests.conftest import StartServer, start_on_store
from trio_streams.server import RunningServer

CONVERSATION = "ds-client/chat"
#: Events read live before the client "leaves".
FIRST_EVENTS = 3


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, start_server: StartServer) -> RunningServer:
    # Slow enough that the first reads happen while the answer is still being written.
    return await start_on_store(request, start_server, demo_tps=40.0)


def read_live(url: str) -> tuple[bytes, str, bool]:
    """Long-poll from the start; leave after a few events: the bytes, where to resume,
    and whether the last event was at the tail of the stream."""
    received = b""
    with stream(url, offset="-1", live="long-poll", timeout=30) as response:
        for count, event in enumerate(response.iter_events(mode="bytes"), start=1):
            received += event.data
            if count == FIRST_EVENTS:
                return received, event.next_offset, event.up_to_date
    raise AssertionError("the session ended before the client left")


def resume(url: str, offset: str) -> bytes:
    """SSE from ``offset`` to the end of the generation: the server ends the SSE answer
    after the control event that says ``streamClosed``."""
    received = b""
    with stream(url, offset=offset, live="sse", timeout=30) as response:
        for event in response.iter_events(mode="text"):
            received += event.data.encode()
    return received


async def test_the_client_reads_a_session_live_and_resumes_it_by_offset(
    server: RunningServer,
) -> None:
    url = f"{server.url}/ds/v1/session/{CONVERSATION}"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"X-Conversation-Id": CONVERSATION},
            json={
                "model": "demo",
                "stream": True,
                "max_tokens": 80,
                "messages": [{"role": "user", "content": "Tell me about durable streams"}],
            },
        ) as started:
            assert started.status_code == 200
        # The starting request has left; the session goes on without it.
        first, offset, _ = await trio.to_thread.run_sync(read_live, url)
        rest = await trio.to_thread.run_sync(resume, url, offset)
        log = (await http.get(f"/v1/stream/{CONVERSATION}")).content
        catch_up = await http.get(f"/ds/v1/session/{CONVERSATION}", params={"offset": "-1"})
    assert first and rest
    assert first + rest == log
    assert catch_up.content == log and catch_up.headers["Stream-Closed"] == "true"
    # The offset the client resumed from names the session's generation.
    assert offset == f"{catch_up.headers['X-Stream-Generation']}_{len(first):016d}"
