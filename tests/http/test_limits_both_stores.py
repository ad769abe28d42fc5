"""An instance's limits hold whichever store its sessions live in.

``--max-producers`` protects the model server behind an instance, and ``--max-total-bytes``
bounds the memory its logs take. On the Redis store, a shared session produced here runs
its producer here and keeps a local log of up to ``--session-max-bytes`` for this
instance's readers, so both limits count it as they count a session of the memory store:
the same ``429``, the same ``/metrics``, room made at once by a stop or a replacement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, start_on_store
from tests.helpers import assert_error, chat_body
from tests.http.test_safety_http import scrape
from trio_streams.server import RunningServer

#: Each runs two slow streams at most: by producer count, or by the byte budget (a running
#: session reserves its whole cap).
LIMITS: dict[str, dict[str, Any]] = {
    "producers": {"max_producers": 2},
    "bytes": {"session_max_bytes": 64 * 1024, "max_total_bytes": 128 * 1024},
}


@pytest.fixture(params=["memory", "redis"])
def start(request: pytest.FixtureRequest, start_server: StartServer) -> StartServer:
    """``start_server`` on the memory store, or on a private Redis server of the kit."""
    return partial(start_on_store, request, start_server)


@pytest.fixture
async def streams() -> AsyncIterator[AsyncExitStack]:
    """Streaming responses left open by a test, closed at its end."""
    async with AsyncExitStack() as stack:
        yield stack


async def open_stream(
    stack: AsyncExitStack, client: httpx.AsyncClient, conversation_id: str | None
) -> httpx.Response:
    """POST a long, slow stream; its response once the head has come (the body stays open)."""
    headers = {"X-Conversation-Id": conversation_id} if conversation_id else {}
    request = client.stream(
        "POST", "/v1/chat/completions", json=chat_body(max_tokens=1000), headers=headers
    )
    return await stack.enter_async_context(request)


async def refusals(client: httpx.AsyncClient, limit: str) -> float:
    metrics = scrape((await client.get("/metrics")).text)
    return metrics[("trio_streams_rejections_total", (("limit", limit),))]


@pytest.mark.parametrize("limit", LIMITS)
async def test_an_instance_runs_no_more_streams_than_its_limits_allow(
    start: StartServer, limit: str, streams: AsyncExitStack
) -> None:
    server = await start(demo_tps=5.0, **LIMITS[limit])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for conversation_id in ("a", "b"):
            assert (await open_stream(streams, client, conversation_id)).status_code == 200
        metrics = scrape((await client.get("/metrics")).text)
        assert metrics[("trio_streams_producers", ())] == 2

        refused = await open_stream(streams, client, "c")
        await refused.aread()
        assert_error(refused, 429, "Server is at capacity", "rate_limit_error")
        assert int(refused.headers["retry-after"]) >= 1
        anonymous = await open_stream(streams, client, None)  # a plain stream counts too
        assert anonymous.status_code == 429
        assert await refusals(client, limit) == 2

        # Stopping one makes room at once.
        assert (await client.delete("/v1/stream/b")).status_code == 204
        assert (await open_stream(streams, client, "c")).status_code == 200
        assert await refusals(client, limit) == 2


async def test_replacing_a_stream_produced_here_takes_its_room(
    start: StartServer, streams: AsyncExitStack
) -> None:
    server = await start(demo_tps=5.0, max_producers=1)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        assert (await open_stream(streams, client, "a")).status_code == 200
        assert (await open_stream(streams, client, "a")).status_code == 200  # replaced
        assert (await open_stream(streams, client, "b")).status_code == 429
        metrics = scrape((await client.get("/metrics")).text)
        assert metrics[("trio_streams_producers", ())] == 1


async def test_starts_answered_together_do_not_overshoot_the_limit(
    start: StartServer, streams: AsyncExitStack
) -> None:
    """On the Redis store a start waits for Redis before its producer runs: starts in
    flight together are counted from their admission on, so only one of ten gets in."""
    server: RunningServer = await start(demo_tps=5.0, max_producers=1)
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def start_one(index: int) -> None:
            statuses.append((await open_stream(streams, client, f"together-{index}")).status_code)

        async with trio.open_nursery() as nursery:
            for index in range(10):
                nursery.start_soon(start_one, index)
        assert sorted(statuses) == [200] + [429] * 9
        assert await refusals(client, "producers") == 9
