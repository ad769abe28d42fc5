"""The ASGI app for the ``hypercorn`` command::

    hypercorn --worker-class trio 'trio_streams.asgi:create_app()'

Settings come from the same ``TRIO_STREAMS_*`` variables as ``trio-streams serve``, parsed
by the same code. The session store and the upstream client cannot exist before the trio
run Hypercorn starts in each worker, so the app opens them in its ASGI lifespan startup and
closes them at lifespan shutdown, which finalizes every session first.

Hypercorn tells an app of its shutdown (lifespan ``shutdown``) only after its graceful
timeout, when the responses still streaming have been cut. In a worker process that the
``hypercorn`` command spawned, the app also watches the event Hypercorn's parent sets on
SIGTERM/SIGINT, and finalizes every session at once: readers end, and Hypercorn need not
wait out its timeout, as with ``trio-streams serve``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any

import click
import trio

from trio_streams.cli import configure_logging, settings_from_environment
from trio_streams.server import ASGIApp, Service, finalize_sessions, first_leaf, open_service
from trio_streams.settings import SETTINGS_VARIABLE, Settings

__all__ = ["TrioStreamsApp", "create_app"]


def create_app(settings: Settings | None = None) -> TrioStreamsApp:
    """The app, with ``settings`` or (by default) the ``TRIO_STREAMS_*`` variables.

    A variable with a bad value stops the worker at import with ``serve``'s own message.
    """
    if settings is None and SETTINGS_VARIABLE in os.environ:
        # A worker of ``trio-streams serve --workers N``: its parent parsed the options.
        configure_logging(os.environ.get("TRIO_STREAMS_LOG_LEVEL", "info"), root=False)
        settings = Settings.from_json(os.environ[SETTINGS_VARIABLE])
    if settings is None:
        try:
            settings = settings_from_environment()
        except click.ClickException as error:
            raise SystemExit(f"trio-streams: {error.format_message()}") from None
    return TrioStreamsApp(settings)


class TrioStreamsApp:
    """An ASGI app whose lifespan opens the store and builds the Quart app on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: Service | None = None
        self._finalized = False

    @property
    def service(self) -> Service:
        """The open store and app (between lifespan startup and shutdown)."""
        if self._service is None:
            raise RuntimeError("trio_streams.asgi needs a server that runs the ASGI lifespan")
        return self._service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.service.app(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        startup = await receive()
        if not _on_trio():
            await send(
                {
                    "type": "lifespan.startup.failed",
                    "message": "trio-streams runs on trio: hypercorn --worker-class trio",
                }
            )
            return
        started = False
        try:
            async with open_service(self.settings) as service, trio.open_nursery() as nursery:
                self._service = service
                if (stopping := hypercorn_shutdown_event()) is not None:
                    nursery.start_soon(self._finalize_when_set, stopping)
                started = await _run_app_lifespan(
                    service, scope, startup, receive, send, self._finalize
                )
                nursery.cancel_scope.cancel()
        except Exception as error:
            failed = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
            cause = first_leaf(error, Exception) or error  # not "Exceptions from Trio nursery"
            await send({"type": failed, "message": f"{type(cause).__name__}: {cause}"})
            return
        if started:
            # Only now: Hypercorn ends the lifespan task once it reads this.
            await send({"type": "lifespan.shutdown.complete"})

    def _finalize(self) -> None:
        if not self._finalized:
            self._finalized = True
            finalize_sessions(self.service.store)

    async def _finalize_when_set(self, stopping: Event) -> None:
        while not stopping.is_set():  # noqa: ASYNC110 (another process sets it)
            await trio.sleep(0.1)  # as often as Hypercorn's worker itself looks
        self._finalize()


def hypercorn_shutdown_event() -> Event | None:
    """In a worker the ``hypercorn`` command spawned, the event its parent sets to stop it.

    Hypercorn hands it to its worker function only (``trio_worker(shutdown_event=...)``);
    the worker's process object keeps the arguments it was started with. ``None`` elsewhere
    (``trio-streams serve``, ``--workers 0``, tests), where the lifespan shutdown does it.
    """
    arguments = getattr(multiprocessing.current_process(), "_kwargs", None)
    event = arguments.get("shutdown_event") if isinstance(arguments, dict) else None
    return event if isinstance(event, Event) else None


async def _run_app_lifespan(
    service: Service,
    scope: Any,
    startup: dict[str, Any],
    receive: Any,
    send: Any,
    finalize: Callable[[], None],
) -> bool:
    """Relay the lifespan to the Quart app (its own startup and shutdown run too).

    Sessions are finalized when the shutdown arrives, before the app's own shutdown; the
    app's ``shutdown.complete`` is held back until the store is closed. Returns whether the
    startup completed.
    """
    pending: list[dict[str, Any]] = [startup]
    started = False

    async def app_receive() -> dict[str, Any]:
        message: dict[str, Any] = pending.pop() if pending else await receive()
        if message["type"] == "lifespan.shutdown":
            finalize()
        return message

    async def app_send(message: dict[str, Any]) -> None:
        nonlocal started
        if message["type"] == "lifespan.startup.complete":
            started = True
        if message["type"] != "lifespan.shutdown.complete":
            await send(message)

    app: ASGIApp = service.app
    await app(scope, app_receive, app_send)
    return started


def _on_trio() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True
