"""The trio-streams benchmark server: the library embedded in a small program.

It serves trio-streams' whole HTTP API (``create_app``, so ``GET /v1/stream/…`` replays
work as in production) plus bench routes whose producers emit timestamped OpenAI chunks at
``rate`` tokens per second (see ``bench_common``):

- ``GET /bench/session/<id>``: a resumable session started through the session store
  (``--store``: ``memory``, or a ``redis://`` URL for the Redis store); the response is a
  reader of the session's log, exactly as ``/v1/chat/completions`` does it;
- ``POST /bench/start/<id>``: the same session started but not read here: its readers
  are on another instance (``GET /v1/stream/<id>`` there, the cross-instance scenario);
- ``GET /bench/anon``: the same without a conversation id (an unregistered session);
- ``GET /bench/direct``: no session at all. The producer runs in its own task, as a
  session's does, but writes straight into a memory channel that the response drains
  (everything queued goes out in one write, as a session reader's catch-up does), so the
  ratio session/direct is what the log costs, nothing else;
- ``POST /bench/reset``: stop every session started so far (their producers keep running
  after their clients leave, which would load the next measurement);
- ``POST /bench/fill/<id>?bytes=N``: a finished session holding just under ``N`` bytes
  (nothing dropped), for replays through ``GET /v1/stream/<id>?from=0``.

``anon`` and ``direct`` share nothing between instances, so they never touch Redis: with
the Redis store, ``anon`` runs in its in-memory manager as plain streams do in production.

Every route takes ``tokens`` and ``rate``, and ``batch=0`` for one token per write however
late the producer is. It prints one JSON line ``{"port": …, "pid": …}`` once it listens and
stops on SIGTERM. With ``--workers N`` (a Redis store) the app runs in N Hypercorn worker
processes on trio sharing the socket, as ``trio-streams serve --workers N`` does; ``pid`` is
then their parent's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import trio
from bench_common import DONE, sse_event
from bench_pacing import Metronome, Schedule
from hypercorn.run import run as hypercorn_run
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio

from trio_streams import SessionManager, StreamWriter
from trio_streams.core.generations import GENERATION_LENGTH
from trio_streams.core.session import OffsetLostError
from trio_streams.http.app import create_app
from trio_streams.http.routes.streams import STREAM_HEADERS, stream_response
from trio_streams.producers.demo import DemoModel
from trio_streams.server import hypercorn_config
from trio_streams.settings import Settings
from trio_streams.store_config import build_store
from trio_streams.stores.protocol import SessionStore
from trio_streams.stores.url import MEMORY, check_store

Produce = Callable[[StreamWriter], Awaitable[None]]


def paced(tokens: int, rate: float, metronome: Metronome, *, batch: bool = True) -> Produce:
    """A producer writing ``tokens`` timestamped events at ``rate`` per second, then DONE.

    It models a model: tokens fall due on a fixed schedule whether or not the server keeps
    up, and a producer that wakes late writes every token due by then in one write, as a
    proxy writes what one read of the upstream brought (see ``bench_pacing``). Without
    ``batch`` it writes one token per write however late it is: a saturated server then
    delivers what it can, not what was due (the workers' saturated events/s).
    """

    async def produce(writer: StreamWriter) -> None:
        schedule = Schedule(metronome, tokens, rate, batch=batch)
        while (events := await schedule.next_due()) is not None:
            await writer.write(events)
        await writer.write(DONE)

    return produce


#: The longest ``id: <generation>-<offset>`` line (with its LF) the writer adds to an event
#: of a log under 100 MB (an offset of at most 9 digits).
ID_LINE_BOUND = len("id: ") + GENERATION_LENGTH + len("-") + 9 + len("\n")


def filling(size: int, written_all: trio.Event) -> Produce:
    """A producer writing events as fast as it can until the log nearly holds ``size`` bytes.

    It stops a little short, never beyond (the log would drop its oldest bytes and
    ``from=0`` would be lost). A store's log is not readable from the producer (Redis holds
    it), so it counts what it wrote plus a bound on each event's ``id:`` line.
    """

    async def produce(writer: StreamWriter) -> None:
        index = written = 0
        while True:
            event = sse_event(index, time.monotonic_ns())
            if written + 2 * (len(event) + ID_LINE_BOUND + 32) > size:
                break
            await writer.write(event)
            written += len(event) + ID_LINE_BOUND
            index += 1
        await writer.write(DONE)
        written_all.set()

    return produce


async def fill(store: SessionStore, conversation_id: str, size: int) -> dict[str, int]:
    """Start a :func:`filling` session and wait until it is finished and readable from 0.

    ``dropped`` is 0 when ``from=0`` still answers (the store raises
    :class:`OffsetLostError` otherwise), else the offset it would have to start at.
    """
    written_all = trio.Event()
    await store.start(conversation_id, filling(size, written_all))
    await written_all.wait()
    total_bytes = 0
    with trio.fail_after(10):  # the store finalizes the session just after the producer
        while True:
            found = await store.lookup([conversation_id])
            if found and found[0].is_done:
                total_bytes = found[0].total_bytes
                break
            await trio.sleep(0.01)
    try:
        await store.open(conversation_id, 0)
    except OffsetLostError as lost:
        return {"total_bytes": total_bytes, "dropped": lost.dropped_prefix}
    return {"total_bytes": total_bytes, "dropped": 0}


class ChannelWriter:
    """A :class:`StreamWriter` straight into a memory channel: no log, no replay."""

    __slots__ = ("_send",)

    def __init__(self, send: trio.MemorySendChannel[bytes]) -> None:
        self._send = send

    async def write(self, data: bytes) -> None:
        self._send.send_nowait(data)
        await trio.lowlevel.checkpoint()


def query_int(name: str, default: int) -> int:
    return int(request.args.get(name, default))


def add_bench_routes(
    app: QuartTrio,
    store: SessionStore,
    manager: SessionManager,
    nursery: trio.Nursery,
    metronome: Metronome,
) -> None:
    """The ``/bench/…`` routes on ``app``; producers and direct streams run in ``nursery``."""
    started: list[str] = []

    def requested_producer() -> Produce:
        """The paced producer the request's ``tokens``, ``rate`` and ``batch`` ask for."""
        tokens, rate = query_int("tokens", 100), float(request.args.get("rate", 20))
        return paced(tokens, rate, metronome, batch=request.args.get("batch") != "0")

    @app.get("/bench/session/<path:conversation_id>")
    async def bench_session(conversation_id: str) -> Response:
        produce = requested_producer()
        session = await store.start(conversation_id, produce)
        started.append(conversation_id)
        return stream_response(session, 0)

    @app.post("/bench/start/<path:conversation_id>")
    async def bench_start(conversation_id: str) -> Response:
        """Start a session without reading it: its readers are on another instance."""
        produce = requested_producer()
        await store.start(conversation_id, produce)
        started.append(conversation_id)
        return Response(json.dumps({"started": 1}), content_type="application/json")

    @app.get("/bench/anon")
    async def bench_anon() -> Response:
        produce = requested_producer()
        return stream_response(manager.start(None, produce), 0, owns_producer=True)

    @app.get("/bench/direct")
    async def bench_direct() -> Response:
        produce = requested_producer()
        send, receive = trio.open_memory_channel[bytes](math.inf)
        scope = trio.CancelScope()

        async def run() -> None:
            # BrokenResourceError: the response is gone, so the stream is over.
            with scope, send, contextlib.suppress(trio.BrokenResourceError):
                await produce(ChannelWriter(send))

        nursery.start_soon(run)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in receive:
                    # Drain what piled up into one write, as a session reader does:
                    # otherwise this baseline falls behind under load for a reason
                    # that has nothing to do with the log.
                    chunks = [chunk]
                    with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                        while True:
                            chunks.append(receive.receive_nowait())
                    yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
            finally:
                scope.cancel()
                receive.close()

        response = Response(
            body(), status=200, content_type="text/event-stream", headers=STREAM_HEADERS
        )
        response.timeout = None
        return response

    @app.post("/bench/reset")
    async def bench_reset() -> Response:
        ids = started.copy()
        started.clear()  # before the awaits: a session started meanwhile is the next run's
        stopped = await stop_all(store, ids)
        return Response(json.dumps({"stopped": stopped}), content_type="application/json")

    @app.post("/bench/fill/<path:conversation_id>")
    async def bench_fill(conversation_id: str) -> Response:
        body = await fill(store, conversation_id, query_int("bytes", 4 << 20))
        return Response(json.dumps(body), content_type="application/json")


async def main(args: argparse.Namespace) -> None:
    settings = Settings(host="127.0.0.1", port=0, ping_interval=args.ping_interval)
    store, manager = open_store(settings, args.store)
    app = create_app(store, DemoModel())
    stop = trio.Event()
    metronome, metronome_scope = Metronome(), trio.CancelScope()

    async def keep_time() -> None:
        with metronome_scope:
            await metronome.run()

    async with store, trio.open_nursery() as nursery:
        nursery.start_soon(keep_time)
        add_bench_routes(app, store, manager, nursery, metronome)
        config = hypercorn_config(settings)
        config.backlog = 8192
        binds = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)
        )
        port = int(binds[0].rsplit(":", 1)[1])
        # The Redis store's connection name (CLIENT LIST): whose connections are whose.
        client = getattr(store, "client_name", None)
        print(json.dumps({"port": port, "pid": _pid(), "store_client": client}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        store.shutdown()
        stop.set()
        metronome_scope.cancel()


#: How ``--workers`` hands ``--store`` to the worker processes Hypercorn spawns.
STORE_VARIABLE = "TRIO_STREAMS_BENCH_STORE"


class WorkerApp:
    """What each worker process of ``--workers N`` serves (``bench_server:WorkerApp()``).

    As ``trio_streams.asgi`` does for ``serve --workers``: the store cannot exist before
    the worker's trio run, so the ASGI lifespan opens it, builds the bench app on it and
    relays the lifespan to that app; the store closes once the app's lifespan ends.
    """

    def __init__(self) -> None:
        self.app: QuartTrio | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            assert self.app is not None
            await self.app(scope, receive, send)
            return
        settings = Settings(host="127.0.0.1", port=0)
        store, manager = open_store(settings, os.environ[STORE_VARIABLE])
        async with store, trio.open_nursery() as nursery:
            metronome = Metronome()
            nursery.start_soon(metronome.run)
            app = create_app(store, DemoModel())
            add_bench_routes(app, store, manager, nursery, metronome)
            self.app = app
            await app(scope, receive, send)  # returns after the lifespan's shutdown
            store.shutdown()
            nursery.cancel_scope.cancel()


def serve_workers(store: str, workers: int) -> None:
    """The bench app in ``workers`` Hypercorn worker processes on trio, as ``serve
    --workers N`` runs trio-streams: the parent binds the socket, the workers share it.

    Prints ``{"port", "pid"}`` (the parent's pid: the workers are its children) once a
    worker answers, and returns when Hypercorn does (SIGTERM to the parent).
    """
    port = free_port()
    config = hypercorn_config(Settings(host="127.0.0.1", port=port))
    config.backlog = 8192
    config.graceful_timeout = 1.0
    config.worker_class = "trio"
    config.workers = workers
    config.application_path = "bench_server:WorkerApp()"
    os.environ[STORE_VARIABLE] = store

    def announce() -> None:
        url = f"http://127.0.0.1:{port}/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0)  # the other workers start alongside the first
        print(json.dumps({"port": port, "pid": _pid(), "workers": workers}), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    hypercorn_run(config)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def stop_all(store: SessionStore, conversation_ids: list[str]) -> int:
    """Stop these sessions (a few at a time: with Redis each stop is a round trip)."""
    stopped = 0

    async def stop_some(ids: list[str]) -> None:
        nonlocal stopped
        for conversation_id in ids:
            # Not ``stopped += await …``: that reads ``stopped`` before the await.
            was_there = await store.stop(conversation_id)
            stopped += was_there

    async with trio.open_nursery() as nursery:
        for first in range(8):
            nursery.start_soon(stop_some, conversation_ids[first::8])
    return stopped


def open_store(settings: Settings, store: str) -> tuple[SessionStore, SessionManager]:
    """The session store for ``--store`` (``memory`` or a Redis URL), and its manager.

    Built by ``store_config.build_store``, as the server's is, with one difference: the
    bench measures the engine, not the admission policy, so no global limits (the default
    of 256 producers would turn the sweep's upper points into 429s). With Redis, those
    limits only ever bound the plain streams of its in-memory manager anyway.
    """
    try:
        check_store(store)
    except ValueError as error:
        sys.exit(f"bench_server: --store: {error}")
    unlimited = replace(
        settings, store=store, max_total_bytes=None, max_sessions=None, max_producers=None
    )
    return build_store(unlimited)


def _pid() -> int:
    return os.getpid()


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=MEMORY, help="memory, or redis://HOST:PORT/DB")
    parser.add_argument("--ping-interval", type=float, default=5.0)
    parser.add_argument(
        "--workers", type=int, default=0, help="Hypercorn worker processes (a shared store)"
    )
    raise_fd_limit()
    arguments = parser.parse_args()
    if arguments.workers:
        serve_workers(arguments.store, arguments.workers)
    else:
        trio.run(main, arguments)
