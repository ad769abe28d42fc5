"""The whole HTTP API in-process: the app ``serve`` runs, without a socket or Hypercorn.

:func:`open_streams_server` wires the app exactly as ``trio-streams serve`` does
(:func:`trio_streams.server.open_service`: the same settings, store, routes and
middleware), runs its ASGI lifespan, and serves it through a
:class:`~trio_streams.testing.transport.StreamingASGITransport`. Everything runs in the
test's trio run, so with the memory store and pytest-trio's ``autojump_clock`` the
session TTL, keep-alive pings, garbage collection, the demo model's pace and the clients'
timeouts and backoff all run on virtual time: minutes in milliseconds, the same on every
run.

With the Redis store (``store="redis://..."``) the app talks to a real Redis server over
real sockets: such a test must run in real time (no ``autojump_clock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import trio

from trio_streams.client.streams_client import CONVERSATION_HEADER, StreamsClient
from trio_streams.core.manager import SessionManager
from trio_streams.server import ASGIApp, Service, finalize_sessions, open_service
from trio_streams.settings import Settings
from trio_streams.stores.protocol import SessionStore
from trio_streams.testing.faults import Network
from trio_streams.testing.model import FaultyDemoModel
from trio_streams.testing.transport import StreamingASGITransport

#: The base URL of the in-process server (nothing listens there: the transport serves it).
URL = "http://trio-streams.test"
#: The kit's demo pace: fast enough in real time (Redis tests), a pace a test can act
#: within under ``autojump_clock``. ``serve``'s own default is 20.
KIT_DEMO_TPS = 200.0


class StreamsServer:
    """A trio-streams server in this trio run: its app, store, network and clients.

    Made by :func:`open_streams_server` (or the ``streams_server`` fixture).
    """

    def __init__(
        self,
        settings: Settings,
        service: Service,
        transport: StreamingASGITransport,
        model: FaultyDemoModel,
        exits: AsyncExitStack,
    ) -> None:
        self.settings = settings
        self.service = service
        self.transport = transport
        #: The demo model; ``model.fail_next(...)`` makes the next streams fail.
        self.model = model
        self.url = URL
        self._exits = exits
        self._stopped = False

    @property
    def store(self) -> SessionStore:
        return self.service.store

    @property
    def manager(self) -> SessionManager:
        """The in-memory manager (with the Redis store: plain streams only)."""
        return self.service.manager

    @property
    def network(self) -> Network:
        """Faults to apply (``network.cut(...)``) and every connection served."""
        return self.transport.network

    @property
    def app(self) -> ASGIApp:
        return self.service.app

    def http(self, **options: Any) -> httpx.AsyncClient:
        """A new :class:`httpx.AsyncClient` to this server (closed with the server).

        Each client is "another client" to the others: a tab, a second device.
        """
        options.setdefault("timeout", httpx.Timeout(10.0, read=30.0))
        client = httpx.AsyncClient(base_url=self.url, transport=self.transport, **options)
        self._exits.push_async_callback(client.aclose)
        return client

    def streams_client(self, **options: Any) -> StreamsClient:
        """A resuming :class:`~trio_streams.client.StreamsClient` to this server.

        ``options`` are :class:`StreamsClient`'s (``backoff``, ``read_timeout``, ...).
        """
        read_timeout = options.get("read_timeout", 30.0)
        http = self.http(timeout=httpx.Timeout(10.0, read=read_timeout))
        return StreamsClient(self.url, http=http, **options)

    # -- "another client" ------------------------------------------------------------------

    async def stop(
        self, conversation_id: str, *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """DELETE the stream from another client (a second tab's Stop); its answer."""
        async with httpx.AsyncClient(base_url=self.url, transport=self.transport) as other:
            return await other.delete(
                "/v1/stream", params={"conv_id": conversation_id}, headers=headers
            )

    async def start(
        self,
        conversation_id: str,
        body: dict[str, Any] | None = None,
        *,
        path: str = "/v1/chat/completions",
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Start, or replace, a stream from another client that reads nothing of it.

        Returns the response once its head has arrived (status and headers; the body is
        not read, and the stream goes on without this reader).
        """
        body = body if body is not None else chat_request("start")
        all_headers = {CONVERSATION_HEADER: conversation_id, **(headers or {})}
        async with httpx.AsyncClient(base_url=self.url, transport=self.transport) as other:
            request = other.build_request("POST", path, json=body, headers=all_headers)
            response = await other.send(request, stream=True)
            await response.aclose()
        return response

    # -- the server ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Shut the server down as SIGTERM does: every session is finalized, so every
        reader's response ends, and new connections are refused."""
        if not self._stopped:
            self._stopped = True
            finalize_sessions(self.store)
            self.transport.refuse()


def chat_request(prompt: str = "tell me about streams", **extra: Any) -> dict[str, Any]:
    """A streaming chat completion body for the demo model."""
    return {
        "model": "demo",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


@asynccontextmanager
async def open_streams_server(
    settings: Settings | None = None,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    **overrides: Any,
) -> AsyncIterator[StreamsServer]:
    """A :class:`StreamsServer` for the ``async with`` block; shut down at its end.

    ``settings`` (or :class:`~trio_streams.settings.Settings` with ``overrides``, at the
    kit's demo pace of 200 tokens/s unless ``demo_tps`` is given) are ``serve``'s.
    ``upstream_transport`` serves ``--upstream`` URLs in-process (see
    :class:`~trio_streams.testing.fake_upstream.FakeUpstream`).
    """
    if settings is None:
        settings = Settings(**{"demo_tps": KIT_DEMO_TPS, **overrides})
    elif overrides:
        raise TypeError("pass either settings or keyword overrides, not both")
    model = FaultyDemoModel(settings.demo_tps, settings.demo_prefill)
    async with AsyncExitStack() as exits:
        service = await exits.enter_async_context(
            open_service(settings, model=model, upstream_transport=upstream_transport)
        )
        nursery = await exits.enter_async_context(trio.open_nursery())
        exits.callback(nursery.cancel_scope.cancel)
        lifespan = _Lifespan(service.app)
        await nursery.start(lifespan.run)
        exits.push_async_callback(lifespan.shutdown)
        transport = StreamingASGITransport(service.app, nursery)
        server = StreamsServer(settings, service, transport, model, exits)
        exits.callback(server.shutdown)
        yield server


async def serve_in_process(
    settings: Settings,
    *,
    stop: trio.Event,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    task_status: trio.TaskStatus[StreamsServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """:func:`trio_streams.server.serve`'s twin: serve in-process until ``stop`` is set.

    Reports the :class:`StreamsServer` through ``task_status`` (``await
    nursery.start(...)``), for tests that start servers from a nursery, as with ``serve``.
    """
    async with open_streams_server(settings, upstream_transport=upstream_transport) as server:
        task_status.started(server)
        await stop.wait()


class _Lifespan:
    """The app's ASGI lifespan, driven as Hypercorn drives it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app, self._app_receives = trio.open_memory_channel[dict[str, Any]](1)
        self._done = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = trio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()
            elif message["type"] == "lifespan.shutdown.complete":
                self._done.set()
            elif message["type"].endswith(".failed"):
                raise RuntimeError(f"the app's lifespan failed: {message.get('message')}")

        async with trio.open_nursery() as nursery:
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
            nursery.start_soon(self._app, scope, self._app_receives.receive, send)
            await self._to_app.send({"type": "lifespan.startup"})
            await started.wait()
            task_status.started()
            await self._done.wait()
            nursery.cancel_scope.cancel()

    async def shutdown(self) -> None:
        await self._to_app.send({"type": "lifespan.shutdown"})
        with trio.move_on_after(5):
            await self._done.wait()
