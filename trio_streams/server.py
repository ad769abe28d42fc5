"""Run the app under Hypercorn's trio worker, with a deterministic shutdown.

:func:`open_service` wires the store, the upstream client and the app, for :func:`serve`
and for the ``hypercorn`` command's app (:mod:`trio_streams.asgi`) alike;
:func:`hypercorn_config` turns the settings (and Hypercorn's own config file) into
Hypercorn's config.

Shutdown order matters: sessions are finalized first (every reader, including the
responses Hypercorn is still sending, reaches its end), then Hypercorn stops, so it never
has to wait out its graceful timeout on a reader that would otherwise wait forever.
"""

from __future__ import annotations

import logging
import os
import signal
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import httpx
import trio
from hypercorn.config import Config
from hypercorn.middleware import ProxyFixMiddleware
from hypercorn.run import run as hypercorn_run
from hypercorn.trio import serve as hypercorn_serve
from quart_trio import QuartTrio

from trio_streams.core.manager import SessionManager
from trio_streams.http.app import create_app
from trio_streams.http.connection_close import ShieldFinalSend
from trio_streams.http.loop_guard import UpstreamLoopError, refuse_self_upstreams
from trio_streams.producers.demo import DemoModel
from trio_streams.producers.upstream.client import UpstreamClient, UpstreamOptions
from trio_streams.producers.upstream.routes import UpstreamRoutes
from trio_streams.settings import DEFAULT_BACKLOG, SETTINGS_VARIABLE, Settings
from trio_streams.store_config import build_store
from trio_streams.stores.protocol import SessionStore

logger = logging.getLogger("trio_streams")

E = TypeVar("E", bound=BaseException)

#: An ASGI application, loosely (Quart's precise types add nothing to the wiring).
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


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
    """Hypercorn's config: its TOML file if one is named, with every setting we hold over it.

    Unset settings (``None``, no ``bind``) leave the file's values; without a file, ours
    apply (``host:port``, :data:`DEFAULT_BACKLOG`).
    """
    path = settings.hypercorn_config
    config = Config.from_toml(path) if path else Config()
    file_values = _toml(path) if path else {}
    if settings.bind:
        config.bind = list(settings.bind)
    elif "bind" not in file_values:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        config.bind = [f"{host}:{settings.port}"]
    if settings.backlog is not None:
        config.backlog = settings.backlog
    elif "backlog" not in file_values:
        config.backlog = DEFAULT_BACKLOG
    if settings.graceful_timeout is not None:
        config.graceful_timeout = settings.graceful_timeout
    if settings.certfile is not None and settings.keyfile is not None:
        config.certfile, config.keyfile = settings.certfile, settings.keyfile
    # Hypercorn's access log would print request paths, which contain conversation ids:
    # ours (trio_streams.access) redacts them. Off unless the file asks for it.
    if "accesslog" not in file_values:
        config.accesslog = None
    # Log through the standard logging tree (stderr, configured by the CLI), not a second handler.
    if "errorlog" not in file_values:
        config.errorlog = logging.getLogger("hypercorn.error")
    return config


#: What each worker process of ``serve --workers N`` runs (:mod:`trio_streams.asgi`).
WORKER_APP = "trio_streams.asgi:create_app()"


def serve_workers(settings: Settings) -> int:
    """Serve with ``settings.workers`` Hypercorn worker processes on trio; the exit code.

    Hypercorn's parent process binds the sockets and spawns the workers, which share them;
    each runs the app of the ``hypercorn`` command (:mod:`trio_streams.asgi`) with these
    settings, handed over in ``TRIO_STREAMS_SETTINGS``. SIGTERM or SIGINT to the parent
    stops every worker gracefully: each finalizes its sessions, so every reader ends.
    The caller checks that the store is shared: processes share no memory.
    """
    config = hypercorn_config(settings)
    config.worker_class = "trio"
    config.workers = settings.workers
    config.application_path = WORKER_APP
    os.environ[SETTINGS_VARIABLE] = settings.to_json()
    logger.info("serving on %s with %d workers", " ".join(config.bind), settings.workers)
    exit_code: int = hypercorn_run(config)
    logger.info("stopped")
    return exit_code


def _toml(path: str) -> dict[str, Any]:
    with open(path, "rb") as file:
        return tomllib.load(file)


@dataclass(frozen=True, slots=True)
class Service:
    """The app and what it serves from, open: see :func:`open_service`."""

    #: The ASGI app to serve (behind ``ProxyFixMiddleware`` with ``proxy_headers``).
    app: ASGIApp
    store: SessionStore
    manager: SessionManager
    #: The Quart app inside ``app`` (its loop guard probes the upstreams once listening).
    quart: QuartTrio
    #: The client of ``--upstream`` (``None``: the demo model).
    upstream: UpstreamClient | None


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    model: DemoModel | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Service]:
    """Open the session store and the upstream client, and build the app on them.

    One wiring for :func:`serve`, for the ``hypercorn`` command's app
    (:mod:`trio_streams.asgi`) and for the in-process test server
    (:mod:`trio_streams.testing`), which passes its own demo ``model`` (one that can be
    made to fail) and ``upstream_transport`` (the upstreams served in-process). On exit
    every session is finalized and the store closed; callers that want readers to end
    before the HTTP server drains (``serve`` does) call ``store.shutdown()`` earlier
    themselves.
    """
    store, manager = build_store(settings)
    if model is None:
        model = DemoModel(settings.demo_tps, settings.demo_prefill)
    # The upstream client outlives the store: producers still use it until they end.
    async with open_upstream(settings, upstream_transport) as upstream, store:
        app = create_app(
            store,
            model,
            max_body_bytes=settings.max_body_bytes,
            api_keys=settings.api_keys,
            max_lookup_ids=settings.max_lookup_ids,
            upstream=upstream,
            cors_origins=settings.cors_origins,
            page_choice=settings.page,
            page_dir=settings.page_dir,
            ds_long_poll_timeout=settings.ds_long_poll_timeout,
        )
        yield Service(
            with_proxy_headers(ShieldFinalSend(app), settings), store, manager, app, upstream
        )


def with_proxy_headers(app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` behind Hypercorn's ProxyFixMiddleware when ``proxy_headers`` is set.

    It replaces the client address (and scheme, host) in the request scope with what the
    trusted proxies say, before the access log (inside the app) reads it.
    """
    if settings.proxy_headers is None:
        return app
    fixed: ASGIApp = ProxyFixMiddleware(
        app, mode=settings.proxy_headers, trusted_hops=settings.trusted_hops
    )
    return fixed


class ListenError(Exception):
    """Hypercorn could not open an address (in use, no permission, no such directory)."""


def first_leaf(error: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` exception in ``error`` or, for a group, in its tree."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := first_leaf(inner, kind)) is not None:
                return found
    return None


def finalize_sessions(store: SessionStore) -> None:
    """End every session (producers cancelled, readers reach their end), and say so."""
    count = store.local_session_count()
    logger.info("shutting down: finalizing %d session%s", count, "" if count == 1 else "s")
    store.shutdown()


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
    config = hypercorn_config(settings)

    async with open_service(settings) as service, trio.open_nursery() as nursery:

        async def shutdown_trigger() -> None:
            await stop.wait()
            finalize_sessions(service.store)

        if handle_signals:
            nursery.start_soon(_set_on_signal, stop)
        try:
            binds = await nursery.start(
                partial(hypercorn_serve, service.app, config, shutdown_trigger=shutdown_trigger)
            )
        except (OSError, BaseExceptionGroup) as error:
            cause = first_leaf(error, OSError)
            if cause is None:
                raise
            raise ListenError(f"cannot listen on {' '.join(config.bind)}: {cause}") from error
        refused = await _refusal(service.quart, service.upstream)
        if refused is not None:  # nothing was served: stop every task at once, then raise
            nursery.cancel_scope.cancel()
        else:
            for bind in binds:
                logger.info("serving on %s", bind)
            task_status.started(
                RunningServer(urls=binds, manager=service.manager, store=service.store)
            )
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
async def open_upstream(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[UpstreamClient | None]:
    """The pooled upstream client for ``--upstream`` (``None``: serve the demo model).

    ``transport`` replaces the network (tests serve the upstreams in-process).
    """
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
    async with UpstreamClient.open(options, transport) as client:
        for upstream in options.routes.upstreams:
            logger.info("proxying to upstream %s", upstream)
        yield client


async def _set_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s", signal.Signals(signum).name)
            stop.set()
            return
