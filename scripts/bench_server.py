"""The trio-streams benchmark server: the library embedded in a small program.

It serves trio-streams' whole HTTP API (``create_app``, so ``GET /v1/stream/…`` replays
work as in production) plus bench routes whose producers emit timestamped OpenAI chunks at
``rate`` tokens per second (see ``bench_common``):

- ``GET /bench/session/<id>``: a resumable session through the ``SessionManager`` (the
  response is a reader of the session's log, exactly as ``/v1/chat/completions`` does it);
- ``GET /bench/anon``: the same without a conversation id (an unregistered session);
- ``GET /bench/direct``: no session at all. The producer runs in its own task, as a
  session's does, but writes straight into a memory channel that the response drains
  (everything queued goes out in one write, as a session reader's catch-up does), so the
  ratio session/direct is what the log costs, nothing else;
- ``POST /bench/reset``: stop every session started so far (their producers keep running
  after their clients leave, which would load the next measurement);
- ``POST /bench/fill/<id>?bytes=N``: a finished session holding just under ``N`` bytes
  (nothing dropped), for replays.

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
from functools import partial

import trio
from bench_common import DONE, sse_event
from bench_pacing import Metronome, due_count
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request

from trio_streams import SessionManager, StreamSession, StreamWriter
from trio_streams.app import create_app
from trio_streams.demo import DemoModel
from trio_streams.http_streams import STREAM_HEADERS, stream_response
from trio_streams.limits import Limits
from trio_streams.server import hypercorn_config
from trio_streams.settings import Settings

Produce = Callable[[StreamWriter], Awaitable[None]]
UNLIMITED = Limits(max_total_bytes=None, max_sessions=None, max_producers=None)


def paced(tokens: int, rate: float, metronome: Metronome) -> Produce:
    """A producer writing ``tokens`` timestamped events at ``rate`` per second, then DONE.

    It models a model: tokens fall due on a fixed schedule whether or not the server keeps
    up, and a producer that wakes late writes every token due by then in one write, as a
    proxy writes what one read of the upstream brought (see ``bench_pacing``).
    """

    async def produce(writer: StreamWriter) -> None:
        start, start_ns = trio.current_time(), time.monotonic_ns()
        interval = 1.0 / rate
        written = 0
        while written < tokens:
            await metronome.wait_until(start + written * interval)
            due = due_count(start, interval, trio.current_time(), written, tokens)
            await writer.write(
                b"".join(
                    sse_event(index, start_ns + round(index * interval * 1e9))
                    for index in range(written, due)
                )
            )
            written = due
        await writer.write(DONE)

    return produce


def filling(size: int, total_bytes: Callable[[], int], written_all: trio.Event) -> Produce:
    """A producer writing events as fast as it can until the log nearly holds ``size`` bytes.

    It stops a little short, never beyond (the log would drop its oldest bytes and
    ``from=0`` would be lost): ``total_bytes`` reads the session, since the writer adds each
    event's ``id:`` line.
    """

    async def produce(writer: StreamWriter) -> None:
        index = 0
        while True:
            event = sse_event(index, time.monotonic_ns())
            if total_bytes() + 2 * (len(event) + 32) > size:
                break
            await writer.write(event)
            index += 1
        await writer.write(DONE)
        written_all.set()

    return produce


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
    manager = open_manager(settings, args.store)
    app = create_app(manager, DemoModel())
    started: list[str] = []
    stop = trio.Event()
    metronome, metronome_scope = Metronome(), trio.CancelScope()

    async def keep_time() -> None:
        with metronome_scope:
            await metronome.run()

    def requested_producer() -> Produce:
        """The paced producer the request's ``tokens`` and ``rate`` ask for."""
        return paced(query_int("tokens", 100), float(request.args.get("rate", 20)), metronome)

    async with manager, trio.open_nursery() as nursery:
        nursery.start_soon(keep_time)

        @app.get("/bench/session/<path:conversation_id>")
        async def bench_session(conversation_id: str) -> Response:
            produce = requested_producer()
            session = manager.start(conversation_id, produce)
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
            stopped = sum(manager.stop(cid) for cid in started)
            started.clear()
            return Response(json.dumps({"stopped": stopped}), content_type="application/json")

        @app.post("/bench/fill/<path:conversation_id>")
        async def bench_fill(conversation_id: str) -> Response:
            written_all = trio.Event()
            sessions: list[StreamSession] = []
            session = manager.start(
                conversation_id,
                filling(query_int("bytes", 4 << 20), lambda: sessions[0].total_bytes, written_all),
            )
            sessions.append(session)
            await written_all.wait()
            body = {"total_bytes": session.total_bytes, "dropped": session.dropped_prefix}
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
        manager.shutdown()
        stop.set()
        metronome_scope.cancel()


def open_manager(settings: Settings, store: str) -> SessionManager:
    """The session manager for ``--store``: ``memory`` (the default) is the in-process one.

    Hook for the Redis store (issue 5): once trio-streams can put sessions in Redis, build
    that manager here from ``store`` (a ``redis://`` URL) so the fan-out and replay
    scenarios run through it unchanged.
    """
    if store != "memory":
        sys.exit(f"bench_server: --store {store!r} is not supported by this trio-streams yet")
    return SessionManager(
        max_bytes=settings.session_max_bytes,
        ttl=settings.session_ttl,
        gc_interval=settings.gc_interval,
        ping_interval=settings.ping_interval,
        # The bench measures the engine, not the admission policy: no global limits (the
        # default of 256 producers would turn the sweep's upper points into 429s).
        limits=UNLIMITED,
    )


def _pid() -> int:
    return os.getpid()


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="memory")
    parser.add_argument("--ping-interval", type=float, default=5.0)
    raise_fd_limit()
    trio.run(main, parser.parse_args())
