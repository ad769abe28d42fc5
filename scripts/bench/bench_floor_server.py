"""The floor of the fixed stack: a bare ASGI app on Hypercorn's trio worker, nothing else.

No Quart, no trio-streams, no second task: the producer loop runs inline in the response,
as sse-starlette's does, and its events go straight to Hypercorn's ``send``, paced as the
other trio bench servers pace theirs (``bench_pacing``). Nothing built
on Hypercorn's trio worker can deliver an event for less CPU than this server, so its
figures are what trio-streams' own overhead is judged against, and its ratio to
sse-starlette on uvicorn is what the stack itself costs.

``GET /bench/direct?tokens=N&rate=R`` streams ``N`` timestamped chunks at ``R`` per second
then ``[DONE]`` (same events and pacing as the other bench servers, ``bench_common``).
Prints ``{"port": …, "pid": …}`` once it listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import trio
from bench_common import DONE
from bench_pacing import Metronome, Schedule
from bench_server import raise_fd_limit
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

Scope = dict[str, Any]
Message = dict[str, Any]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


METRONOME = Metronome()


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """The whole server: lifespan, ``POST`` (the bench's reset: nothing to stop), the stream."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "POST":
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"stopped": 0}'})
        return
    query = parse_qs(scope["query_string"].decode())
    tokens, rate = int(query["tokens"][0]), float(query["rate"][0])
    await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
    async with trio.open_nursery() as nursery:
        # Hypercorn ignores what an app sends after its client left, so without this
        # the producer would run on after the load process closed the connection and
        # load the next measurement. sse-starlette watches for the same message.
        nursery.start_soon(stop_on_disconnect, receive, nursery.cancel_scope)
        await produce(tokens, rate, send)
        nursery.cancel_scope.cancel()


async def stop_on_disconnect(receive: Any, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def produce(tokens: int, rate: float, send: Any) -> None:
    """The events, inline in the response, paced as the other trio bench servers pace theirs."""
    schedule = Schedule(METRONOME, tokens, rate)
    while (events := await schedule.next_due()) is not None:
        await send({"type": "http.response.body", "body": events, "more_body": True})
    await send({"type": "http.response.body", "body": DONE, "more_body": False})


async def main() -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.backlog = 8192
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(METRONOME.run)
        binds = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        port = int(binds[0].rsplit(":", 1)[1])
        print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break
        stop.set()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    raise_fd_limit()
    trio.run(main)
