"""Figures of the Durable Streams store on Redis, through one real server.

    python scripts/bench/ds_redis_figures.py [--streams 200] [--long-polls 4] [--sse 200]
                                             [--fan-out 100] [--appends 20]

Starts a private Redis-protocol server (the test kit's starter) and one real
``trio-streams serve --store redis://…`` on free ports, then prints:

- connections: ``--streams`` streams, ``--long-polls`` long-polls on each and ``--sse``
  SSE readers across them, all waiting; Redis's ``CLIENT LIST`` by client name (the
  instance's connections are named ``trio-streams-<instance>``; the unnamed one is this
  script's), then an append to every stream and the readers woken;
- fan-out: ``--fan-out`` SSE readers of one stream, ``--appends`` appends; the Lua
  scripts Redis ran per append (``INFO commandstats``) and the data events received.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import coredis
import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trio_streams.testing.redis import RedisServer, free_port

TEXT = {"Content-Type": "text/plain"}


async def measure(redis_url: str, url: str, streams: int, long_polls: int, sse: int) -> None:
    limits = httpx.Limits(max_connections=streams * long_polls + sse + 10)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits) as http,
        coredis.Redis.from_url(redis_url) as redis,
    ):
        for index in range(streams):
            created = await http.put(f"{url}/ds/v1/stream/c/{index}", headers=TEXT)
        tail = created.headers["Stream-Next-Offset"]
        woken: list[str] = []

        async def long_poll(index: int) -> None:
            params = {"offset": tail, "live": "long-poll"}
            response = await http.get(f"{url}/ds/v1/stream/c/{index}", params=params)
            woken.append(f"long-poll {response.status_code}")

        async def follow(index: int) -> None:
            params = {"offset": tail, "live": "sse"}
            async with http.stream("GET", f"{url}/ds/v1/stream/c/{index}", params=params) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:") and "!" in line:
                        woken.append("sse")
                        return

        async with trio.open_nursery() as nursery:
            for index in range(streams):
                for _ in range(long_polls):
                    nursery.start_soon(long_poll, index)
            for index in range(sse):
                nursery.start_soon(follow, index % streams)
            await trio.sleep(5)  # every reader is waiting by now
            clients = await redis.client_list()
            for index in range(streams):
                await http.post(f"{url}/ds/v1/stream/c/{index}", headers=TEXT, content=b"!")
    names = Counter(client.get("name") or "(unnamed: this script)" for client in clients)
    print(
        f"{streams * long_polls} long-polls and {sse} SSE readers waiting on {streams} "
        f"streams: Redis had {len(clients)} clients {dict(names)}; "
        f"{len(woken)} readers woken by the appends ({dict(Counter(woken))})"
    )


async def script_calls(redis: coredis.Redis[bytes]) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(value["calls"])  # type: ignore[index]
        for key, value in stats.items()
        if key in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def fan_out(redis_url: str, url: str, readers: int, appends: int) -> None:
    stream = f"{url}/ds/v1/stream/fan-out"
    limits = httpx.Limits(max_connections=readers + 10)
    async with (
        httpx.AsyncClient(timeout=120, limits=limits) as http,
        coredis.Redis.from_url(redis_url) as redis,
    ):
        tail = (await http.put(stream, headers=TEXT, content=b"x")).headers["Stream-Next-Offset"]
        events = 0

        async def follow() -> None:
            nonlocal events
            async with http.stream("GET", stream, params={"offset": tail, "live": "sse"}) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data:") and "!" in line:
                        events += 1

        async with trio.open_nursery() as nursery:
            for _ in range(readers):
                nursery.start_soon(follow)
            await trio.sleep(3)  # every reader is waiting by now
            before = await script_calls(redis)
            for _ in range(appends):
                await http.post(stream, headers=TEXT, content=b"!")
                await trio.sleep(0.05)
            await trio.sleep(1)
            scripts = await script_calls(redis) - before
            nursery.cancel_scope.cancel()
    print(
        f"{readers} SSE readers of one stream, {appends} appends: {scripts} scripts in Redis "
        f"({scripts / appends:.1f} per append), {events} data events received"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--long-polls", type=int, default=4)
    parser.add_argument("--sse", type=int, default=200)
    parser.add_argument("--fan-out", type=int, default=100)
    parser.add_argument("--appends", type=int, default=20)
    args = parser.parse_args()
    with RedisServer() as redis:
        port = free_port()
        serve = [
            str(Path(sys.executable).with_name("trio-streams")),
            "serve",
            "--store",
            redis.url,
            "--port",
            str(port),
            "--ds-long-poll-timeout",
            "60",
        ]
        server = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # a bounded wait for the server to listen
                try:
                    httpx.get(f"{url}/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            trio.run(measure, redis.url, url, args.streams, args.long_polls, args.sse)
            trio.run(fan_out, redis.url, url, args.fan_out, args.appends)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
