"""The pytest plugin (entry point ``pytest11``): trio-streams fixtures for any project.

Installed with the package; pytest loads it in every project where trio-streams is
installed, so this module imports nothing but pytest at load time: the kit (Quart, httpx,
the stores) is imported by a fixture when a test asks for one. ``-p no:trio_streams``
turns it off.

Fixtures (async ones need pytest-trio: ``trio_mode = true`` or ``@pytest.mark.trio``):

- ``streams_server``: a :class:`~trio_streams.testing.server.StreamsServer`, the whole API
  in-process on the memory store. ``@pytest.mark.streams_settings(session_ttl=60, ...)``
  sets ``serve``'s settings; parametrize it indirectly with ``"redis"`` to run the same
  test on the Redis store (real time: no ``autojump_clock`` then).
- ``streams_http``: an :class:`httpx.AsyncClient` to it; ``streams_client``: a resuming
  :class:`~trio_streams.client.StreamsClient`.
- ``fake_upstream`` and ``streams_proxy``: a scriptable model server in-process, and a
  trio-streams server in front of it (``--upstream``; ``"redis"`` works here too).
- ``streams_redis``: a private Redis-protocol server process, for the Redis store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx

    from trio_streams.client.streams_client import StreamsClient
    from trio_streams.testing.fake_upstream import FakeUpstream
    from trio_streams.testing.redis import RedisServer
    from trio_streams.testing.server import StreamsServer

SETTINGS_MARKER = "streams_settings"
#: The stores ``streams_server`` can be parametrized with (indirectly).
STORES = ("memory", "redis")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SETTINGS_MARKER}(**settings): trio-streams `serve` settings for the streams_server "
        "and streams_proxy fixtures (e.g. session_ttl=60, demo_tps=50)",
    )


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The marker's settings, the closest marker winning for each name."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(SETTINGS_MARKER))):
        overrides.update(marker.kwargs)
    return overrides


def _overrides(request: pytest.FixtureRequest, fixture: str) -> dict[str, Any]:
    """The marker's settings, and the store the fixture is parametrized with (if any)."""
    store = getattr(request, "param", "memory")
    if store not in STORES:
        raise pytest.UsageError(f"{fixture}: unknown store {store!r}, not one of {STORES}")
    overrides = _settings(request)
    if store == "redis":
        refuse_autojump(f"{fixture} on the Redis store")
        redis: RedisServer = request.getfixturevalue("streams_redis")
        overrides["store"] = redis.url
    return overrides


def refuse_autojump(what: str) -> None:
    """A real socket cannot run on a clock that jumps whenever every task waits."""
    import trio.testing

    clock = trio.lowlevel.current_clock()
    if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold != float("inf"):
        raise pytest.UsageError(
            f"{what} talks to a real Redis server and runs in real time: "
            "it cannot be used with autojump_clock"
        )


@pytest.fixture
def streams_redis() -> Iterator[RedisServer]:
    """A private Redis-protocol server (valkey-server), real time; killed at the end."""
    from trio_streams.testing.redis import RedisServer, RedisUnavailableError

    try:
        server = RedisServer().start()
    except RedisUnavailableError as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def streams_server(request: pytest.FixtureRequest) -> AsyncIterator[StreamsServer]:
    """The whole HTTP API in-process; the memory store unless parametrized ``"redis"``."""
    from trio_streams.testing.server import open_streams_server

    store = getattr(request, "param", "memory")
    if store not in STORES:
        raise pytest.UsageError(f"streams_server: unknown store {store!r}, not one of {STORES}")
    overrides = _settings(request)
    if store == "redis":
        refuse_autojump("streams_server on the Redis store")
        redis: RedisServer = request.getfixturevalue("streams_redis")
        overrides["store"] = redis.url
    async with open_streams_server(**overrides) as server:
        yield server


@pytest.fixture
async def streams_http(streams_server: StreamsServer) -> httpx.AsyncClient:
    """An httpx client of the ``streams_server`` (``base_url`` set; closed at the end)."""
    return streams_server.http()


@pytest.fixture
async def streams_client(streams_server: StreamsServer) -> AsyncIterator[StreamsClient]:
    """A resuming :class:`~trio_streams.client.StreamsClient` of the ``streams_server``."""
    async with streams_server.streams_client() as client:
        yield client


@pytest.fixture
def fake_upstream() -> FakeUpstream:
    """A scriptable OpenAI-compatible model server (``streams_proxy`` serves it)."""
    from trio_streams.testing.fake_upstream import FakeUpstream

    return FakeUpstream()


@pytest.fixture
async def streams_proxy(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream
) -> AsyncIterator[StreamsServer]:
    """trio-streams in front of ``fake_upstream`` (``--upstream``), all in-process."""
    import trio

    from trio_streams.testing.server import open_streams_server

    async with trio.open_nursery() as nursery:
        transport = fake_upstream.transport(nursery)
        overrides = {"upstreams": (fake_upstream.url,), **_overrides(request, "streams_proxy")}
        async with open_streams_server(upstream_transport=transport, **overrides) as server:
            yield server
        nursery.cancel_scope.cancel()
