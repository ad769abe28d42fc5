"""What the upstream proxy costs, and how fast a DELETE reaches the model server.

Runs two servers in this process on free 127.0.0.1 ports: trio-streams serving the demo
model (the "model server") and trio-streams with ``--upstream`` in front of it. Prints:

- a whole stream read directly and through the proxy (time to first byte, total time);
- the time from sending ``DELETE`` to the proxy until the model server's producer stopped
  (it stops because the proxy closed the upstream connection).

Usage: ``python scripts/bench/bench_proxy.py [--tokens 2000] [--runs 20]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from functools import partial

import httpx
import trio

from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings


async def timed_stream(client: httpx.AsyncClient, tokens: int) -> tuple[float, float, int, int]:
    """(time to first byte, whole stream, bytes, SSE data events)."""
    body = {
        "model": "demo",
        "stream": True,
        "max_tokens": tokens,
        "messages": [{"role": "user", "content": "benchmark " * 5}],
    }
    start = time.perf_counter()
    first = 0.0
    received = b""
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for chunk in response.aiter_raw():
            if not received:
                first = time.perf_counter() - start
            received += chunk
    return first, time.perf_counter() - start, len(received), received.count(b"data: ")


async def delete_latency(
    client: httpx.AsyncClient, model_server: RunningServer, index: int
) -> float:
    conversation = f"bench-{index}"
    body = {
        "model": "demo",
        "stream": True,
        "max_tokens": 100_000,
        "messages": [{"role": "user", "content": "stop me"}],
    }
    headers = {"X-Conversation-Id": conversation}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        async for _ in r.aiter_raw():
            break
    gc.collect()
    start = time.perf_counter()
    await client.delete(f"/v1/stream/{conversation}")
    # A benchmark, not a reader: poll the other server's producer count each millisecond.
    while model_server.manager.producer_count:  # noqa: ASYNC110
        await trio.sleep(0.001)
    return time.perf_counter() - start


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {1000 * statistics.median(ordered):.1f} ms, p95 {1000 * p95:.1f} ms, "
        f"max {1000 * ordered[-1]:.1f} ms"
    )


async def main(tokens: int, runs: int) -> None:
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        model_settings = Settings(port=0, demo_tps=20_000.0, ping_interval=0)
        model_server: RunningServer = await nursery.start(partial(serve, model_settings, stop=stop))
        proxy_settings = Settings(port=0, upstreams=(model_server.url,), ping_interval=0)
        proxy: RunningServer = await nursery.start(partial(serve, proxy_settings, stop=stop))
        async with (
            httpx.AsyncClient(base_url=model_server.url, timeout=30) as direct,
            httpx.AsyncClient(base_url=proxy.url, timeout=30) as proxied,
        ):
            for name, client in (("direct", direct), ("proxied", proxied)):
                results = [await timed_stream(client, tokens) for _ in range(runs)]
                size, events = results[0][2], results[0][3]
                print(
                    f"{name:8} {events} events ({size} bytes): "
                    f"first byte {summary([r[0] for r in results])}; "
                    f"whole stream {summary([r[1] for r in results])}"
                )
            latencies = [await delete_latency(proxied, model_server, n) for n in range(runs)]
            print(f"DELETE on the proxy -> model server producer stopped: {summary(latencies)}")
        stop.set()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    arguments = parser.parse_args()
    trio.run(main, arguments.tokens, arguments.runs)
