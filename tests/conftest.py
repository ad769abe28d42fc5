"""Shared fixtures: a real trio-streams server (Hypercorn, free port on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings
from trio_streams.testing.fake_upstream import FakeUpstream

StartServer = Callable[..., Awaitable[RunningServer]]

#: A real Redis-protocol server, for the Redis-store tests; pytester runs the test kit's
#: documented examples (tests/testing).
pytest_plugins = ["tests.redis_fixtures", "pytester"]

#: Fast enough for quick tests, slow enough that a test can act mid-stream.
TEST_TPS = 200.0


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> AsyncIterator[StartServer]:
    """Start servers on free ports; each is stopped (gracefully) when the test ends."""
    stops: list[trio.Event] = []

    async def start(**overrides: Any) -> RunningServer:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "demo_tps": TEST_TPS}
        options.update(overrides)
        stop = trio.Event()
        stops.append(stop)
        running: RunningServer = await nursery.start(partial(serve, Settings(**options), stop=stop))
        return running

    yield start
    for stop in stops:
        stop.set()


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture
async def upstream(nursery: trio.Nursery) -> AsyncIterator[FakeUpstream]:
    """A fake OpenAI-compatible model server (Hypercorn, free port) the test can script."""
    fake = FakeUpstream()
    stop = await fake.start(nursery)
    yield fake
    stop.set()
