"""Run the app under Hypercorn's trio worker, with a deterministic shutdown.

Shutdown order matters: sessions are finalized first (every reader, including the
responses Hypercorn is still sending, reaches its end), then Hypercorn stops, so it never
has to wait out its graceful timeout on a reader that would otherwise wait forever.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from trio_streams.core.manager import SessionManager
from trio_streams.http.app import create_app
from trio_streams.http.loop_guard import UpstreamLoopError, refuse_self_upstreams
from trio_streams.producers.demo import DemoModel
from trio_streams.producers.upstream.client import UpstreamClient, UpstreamOptions
from trio_streams.producers.upstream.routes import UpstreamRoutes
from trio_streams.settings import Settings
from trio_streams.store_config import build_store
from trio_streams.stores.protocol import SessionStore

logger = logging.getLogger("trio_streams")


@dataclass(frozen=True, slots=True)
class RunningServer:
    """What :func:`serve` reports once it listens: its addresses, its session store and
    the in-memory manager behind it (with the Redis store: plain streams only)."""

    urls: list[str]
    manager: SessionManager
    store: SessionStore

    @property
    def url(self) -> str:
        return self.urls[0]


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = settings.graceful_timeout
    # Hypercorn's access log would print request paths, which contain conversation ids.
    config.accesslog = None
    # Log through the standard logging tree (stderr, configured by the CLI), not a second handler.
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve(
    settings: Settings,
    *,
    stop: trio.Event | None = None,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM with ``handle_signals``).

    Reports a :class:`RunningServer` (bound ``http://host:port`` addresses and the session
    manager) through ``task_status``, for embedding applications and tests.
    """
    stop = trio.Event() if stop is None else stop
    store, manager = build_store(settings)
    model = DemoModel(settings.demo_tps, settings.demo_prefill)

    async def shutdown_trigger() -> None:
        await stop.wait()
        count = store.local_session_count()
        logger.info("shutting down: finalizing %d session%s", count, "" if count == 1 else "s")
        store.shutdown()

    # The upstream client outlives the store: producers still use it until they end.
    async with open_upstream(settings) as upstream, store, trio.open_nursery() as nursery:
        app = create_app(
            store,
            model,
            max_body_bytes=settings.max_body_bytes,
            api_keys=settings.api_keys,
            max_lookup_ids=settings.max_lookup_ids,
            upstream=upstream,
            cors_origins=settings.cors_origins,
        )
        if handle_signals:
            nursery.start_soon(_set_on_signal, stop)
        binds = await nursery.start(
            partial(
                hypercorn_serve,
                app,
                hypercorn_config(settings),
                shutdown_trigger=shutdown_trigger,
            )
        )
        refused = await _refusal(app, upstream)
        if refused is not None:  # nothing was served: stop every task at once, then raise
            nursery.cancel_scope.cancel()
        else:
            for bind in binds:
                logger.info("serving on %s", bind)
            task_status.started(RunningServer(urls=binds, manager=manager, store=store))
            await stop.wait()
    if refused is not None:
        raise refused
    logger.info("stopped")


async def _refusal(app: QuartTrio, upstream: UpstreamClient | None) -> UpstreamLoopError | None:
    """Why the server must not serve: an upstream that is this server itself (if any)."""
    if upstream is None:
        return None
    try:
        await refuse_self_upstreams(app, upstream)
    except UpstreamLoopError as exc:
        return exc
    return None


@asynccontextmanager
async def open_upstream(settings: Settings) -> AsyncIterator[UpstreamClient | None]:
    """The pooled upstream client for ``--upstream`` (``None``: serve the demo model)."""
    if not settings.upstreams:
        yield None
        return
    options = UpstreamOptions(
        routes=UpstreamRoutes.parse(settings.upstreams),
        api_key=settings.upstream_api_key or None,
        api_keys=dict(settings.upstream_api_keys),
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        # With trio-streams' own API keys on, a client's key is ours, never the upstream's.
        forward_client_auth=not settings.api_keys,
    )
    async with UpstreamClient.open(options) as client:
        for upstream in options.routes.upstreams:
            logger.info("proxying to upstream %s", upstream)
        yield client


async def _set_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s", signal.Signals(signum).name)
            stop.set()
            return
