"""The baseline a Python user would otherwise pick: a plain SSE endpoint with sse-starlette
on uvicorn, no resumability, fed by the same producer loop and the same events as the
trio-streams bench server (``bench_common``).

``GET /bench/direct?tokens=N&rate=R`` streams ``N`` timestamped chunks at ``R`` per second
then ``[DONE]``. Prints ``{"port": …, "pid": …}`` once it listens; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import time
from collections.abc import AsyncIterator

import uvicorn
from bench_common import event_json
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def paced(tokens: int, rate: float) -> AsyncIterator[dict[str, str]]:
    loop = asyncio.get_running_loop()
    start, start_ns = loop.time(), time.monotonic_ns()
    interval = 1.0 / rate
    for index in range(tokens):
        delay = start + index * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield {"data": event_json(index, start_ns + round(index * interval * 1e9))}
    yield {"data": "[DONE]"}


async def direct(request: Request) -> EventSourceResponse:
    tokens = int(request.query_params.get("tokens", 100))
    rate = float(request.query_params.get("rate", 20))
    return EventSourceResponse(
        paced(tokens, rate), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


async def reset(request: Request) -> JSONResponse:
    return JSONResponse({"stopped": 0})  # nothing outlives its client here


app = Starlette(
    routes=[Route("/bench/direct", direct), Route("/bench/reset", reset, methods=["POST"])]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto, asyncio, uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8192)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop=args.loop,
        http=args.http,
        log_level="warning",
        access_log=False,
        backlog=8192,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
