"""The trio-streams benchmark server: the library embedded in a small program.

It serves trio-streams' whole HTTP API (``create_app``, so ``GET /v1/stream/…`` replays
work as in production) plus bench routes whose producers emit timestamped OpenAI chunks at
``rate`` tokens per second (see ``bench_common``):

- ``GET /bench/session/<id>``: a resumable session started through the session store
  (``--store``: ``memory``, or a ``redis://`` URL for the Redis store); the response is a
  reader of the session's log, exactly as ``/v1/chat/completions`` does it;
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

It prints one JSON line ``{"port": …, "pid": …}`` once it listens and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial

import trio
from bench_common import DONE, sse_event
from bench_pacing import Metronome, Schedule
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request

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


def paced(tokens: int, rate: float, metronome: Metronome) -> Produce:
    """A producer writing ``tokens`` timestamped events at ``rate`` per second, then DONE.

    It models a model: tokens fall due on a fixed schedule whether or not the server keeps
    up, and a producer that wakes late writes every token due by then in one write, as a
    proxy writes what one read of the upstream brought (see ``bench_pacing``).
    """

    async def produce(writer: StreamWriter) -> None:
        schedule = Schedule(metronome, tokens, rate)
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


async def main(args: argparse.Namespace) -> None:
    settings = Settings(host="127.0.0.1", port=0, ping_interval=args.ping_interval)
    store, manager = open_store(settings, args.store)
    app = create_app(store, DemoModel())
    started: list[str] = []
    stop = trio.Event()
    metronome, metronome_scope = Metronome(), trio.CancelScope()

    async def keep_time() -> None:
        with metronome_scope:
            await metronome.run()

    def requested_producer() -> Produce:
        """The paced producer the request's ``tokens`` and ``rate`` ask for."""
        return paced(query_int("tokens", 100), float(request.args.get("rate", 20)), metronome)

    async with store, trio.open_nursery() as nursery:
        nursery.start_soon(keep_time)

        @app.get("/bench/session/<path:conversation_id>")
        async def bench_session(conversation_id: str) -> Response:
            produce = requested_producer()
            session = await store.start(conversation_id, produce)
            started.append(conversation_id)
            return stream_response(session, 0)

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

        config = hypercorn_config(settings)
        config.backlog = 8192
        binds = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)
        )
        port = int(binds[0].rsplit(":", 1)[1])
        print(json.dumps({"port": port, "pid": _pid()}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        store.shutdown()
        stop.set()
        metronome_scope.cancel()


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
    raise_fd_limit()
    trio.run(main, parser.parse_args())
