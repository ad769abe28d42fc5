"""Shared fixtures: a trio-streams server, real (Hypercorn, free port on 127.0.0.1) or in-process.

A module (or test) marked ``in_process`` gets the same fixtures from the test kit
(:mod:`trio_streams.testing`): the same app and settings, served without a socket, so its
tests can run on ``autojump_clock`` and do not wait for real sockets. Tests where a socket
or Hypercorn is the point keep the real server.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.serve_process import serve_process
from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings
from trio_streams.testing.fake_upstream import FakeUpstream
from trio_streams.testing.server import StreamsServer, serve_in_process
from trio_streams.testing.transport import HostRouter

StartServer = Callable[..., Awaitable[RunningServer]]


async def start_on_store(
    request: pytest.FixtureRequest, start_server: StartServer, **options: Any
) -> RunningServer:
    """A server with ``options`` on the store a ``params=["memory", "redis"]`` fixture's
    ``request.param`` names: ``redis`` is a private Redis-protocol server of the test kit
    (the test is marked ``redis``)."""
    if request.param != "memory":
        options["store"] = request.getfixturevalue("redis_server").url
    return await start_server(**options)


#: A real Redis-protocol server, for the Redis-store tests; pytester runs the test kit's
#: documented examples (tests/testing).
pytest_plugins = ["tests.redis_fixtures", "pytester"]

#: Fast enough for quick tests, slow enough that a test can act mid-stream.
TEST_TPS = 200.0


#: Modules whose tests take longest (real time, or another process's CPU), in that order:
#: collected first, so ``pytest -n auto`` starts them at once on different workers instead
#: of leaving one of them for the end of the run (xdist hands tests out in collection order).
#: Whole modules move, so module fixtures are still set up once.
LONGEST_FIRST = (
    "tests/durable_streams/test_conformance.py",  # the Node conformance suite: about 45 s
    "tests/http/test_fuzz_http.py",  # schemathesis
    "tests/deploy/test_reconnect_storm.py",
    "tests/client/test_client.py",
    "tests/core/test_manager_stateful.py",
)  # Not the soak: its 2 s TTL is real time, and beside schemathesis at the start a chaos
# client of a loaded machine once stayed away longer (a resume got 404).

#: Fixtures that start a Redis-protocol server: a test that uses one is marked ``redis``.
REDIS_FIXTURES = {"redis_server", "persistent_redis_server", "streams_redis"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the Redis and browser tests, so ``-m "not browser and not redis"`` is the quick run,
    and put the :data:`LONGEST_FIRST` modules first.

    A test marked ``in_process`` runs on ``autojump_clock`` (``in_process(autojump=False)``:
    on the real clock). A test is ``redis`` if it uses a Redis server fixture or is
    parametrized with a ``"redis"`` store, ``browser`` if its module is a ``test_browser*``
    one; tests that start either by themselves carry the mark themselves.
    """
    for item in items:
        # In-process servers run on trio's clock: their tests run on the autojump clock.
        # pytest-trio hands trio.run only a clock among the test function's own arguments,
        # so a test that does not ask for one gets it through the ``trio`` marker's runner.
        marker = item.get_closest_marker("in_process")
        marker = None if marker is None or marker.args[:1] == (False,) else marker
        fixtures = getattr(item, "fixturenames", None)
        clocked = fixtures is None or {"autojump_clock", "mock_clock"} & set(fixtures)
        if (
            marker is not None
            and marker.kwargs.get("autojump", True)
            and not clocked
            and inspect.iscoroutinefunction(getattr(item, "obj", None))
        ):
            item.add_marker(pytest.mark.trio(run=run_on_autojump_clock))
        params = getattr(getattr(item, "callspec", None), "params", {})
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())) or "redis" in params.values():
            item.add_marker(pytest.mark.redis)
        if item.path.name.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its order, the others theirs


def run_on_autojump_clock(
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    clock: trio.abc.Clock | None = None,
    **options: Any,
) -> Any:
    """``trio.run`` on a fresh autojump :class:`~trio.testing.MockClock` (what the
    ``autojump_clock`` fixture gives), unless the test brought a clock of its own."""
    if clock is None:
        clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(fn, *args, clock=clock, **options)


def in_process(request: pytest.FixtureRequest) -> bool:
    """Marked ``in_process`` (a test inside marks itself ``in_process(False)`` to opt out)."""
    marker = request.node.get_closest_marker("in_process")
    return marker is not None and marker.args[:1] != (False,)


@pytest.fixture(scope="session")
def serve_help() -> str:
    """What the real ``trio-streams serve --help`` prints: run once, read by every test of it
    (each start of the command costs about a second of CPU, for the same text)."""
    return subprocess.run(
        [sys.executable, "-m", "trio_streams", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


@pytest.fixture(scope="session")
def examples_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of one real ``trio-streams serve`` process (500 tokens/s), shared by the
    tests that run documented examples against a server and only read whole answers
    (each in its own conversation): one start-up for all of them."""
    log = tmp_path_factory.mktemp("examples-server") / "stderr.log"
    with serve_process(log, "--demo-tps", "500") as url:
        yield url


@pytest.fixture
def in_process_upstreams() -> HostRouter:
    """Where in-process servers reach the test's in-process fake upstreams (by host)."""
    return HostRouter()


@pytest.fixture
async def start_server(
    request: pytest.FixtureRequest, nursery: trio.Nursery, in_process_upstreams: HostRouter
) -> AsyncIterator[StartServer]:
    """Start servers on free ports (in-process when marked ``in_process``); each is
    stopped (gracefully) when the test ends."""
    stops: list[trio.Event] = []

    async def start(**overrides: Any) -> RunningServer:
        options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "demo_tps": TEST_TPS}
        options.update(overrides)
        stop = trio.Event()
        stops.append(stop)
        if in_process(request):
            served = partial(
                serve_in_process,
                Settings(**options),
                stop=stop,
                upstream_transport=in_process_upstreams,
            )
            kit_server: RunningServer = await nursery.start(served)
            return kit_server
        running: RunningServer = await nursery.start(partial(serve, Settings(**options), stop=stop))
        return running

    yield start
    for stop in stops:
        stop.set()


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    return await start_server()


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``server`` over its socket (never the in-process transport)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    if isinstance(server, StreamsServer):
        yield server.http(timeout=10)
        return
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture
async def upstream(
    request: pytest.FixtureRequest, nursery: trio.Nursery, in_process_upstreams: HostRouter
) -> AsyncIterator[FakeUpstream]:
    """A fake OpenAI-compatible model server the test can script (Hypercorn, free port; or
    in-process, served to ``start_server``'s servers, when marked ``in_process``)."""
    fake = FakeUpstream()
    if in_process(request):
        transport = fake.transport(nursery)
        in_process_upstreams.routes[httpx.URL(fake.url).host] = transport
        yield fake
        return
    stop = await fake.start(nursery)
    yield fake
    stop.set()
