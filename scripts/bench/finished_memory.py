"""What N finished sessions cost a private Redis: memory per byte of log, and finalize time.

Each session is produced through a real :class:`RedisStore` (``--event-bytes`` per
event, so a log of many entries as a streamed answer leaves), then finalized. Printed:
``MEMORY USAGE`` summed over each log's keys (its stream and segments) and ``INFO memory``
``used_memory`` grown since before the sessions, both divided by the bytes written, and
the FINALIZE scripts' time inside Redis (``SLOWLOG``, every command logged). Run it on
two versions of the code (``PYTHONPATH=<other checkout>``) to compare them.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import trio

from trio_streams.core.producer import StreamWriter
from trio_streams.stores.redis import scripts as redis_scripts
from trio_streams.stores.redis.store import RedisStore
from trio_streams.testing.redis import RedisServer


async def used_memory(store: RedisStore) -> int:
    info: dict[str, Any] = await store.client.info("memory")
    return int(info["used_memory"])


async def main(url: str, sessions: int, size: int, event_bytes: int) -> None:
    event = b"data: " + b"x" * (event_bytes - 8) + b"\n\n"
    count = size // len(event)

    async def producer(writer: StreamWriter) -> None:
        for _ in range(count):
            await writer.write(event)

    async with RedisStore(url, ping_interval=None, event_ids=False, max_bytes=2 * size) as a:
        client = a.client
        await client.config_set({"slowlog-log-slower-than": 0, "slowlog-max-len": 100_000})
        finalize_sha = client.register_script(redis_scripts.FINALIZE).sha
        await client.slowlog_reset()
        before = await used_memory(a)
        for index in range(sessions):
            handle = await a.start(f"finished-{index}", producer)
            async for _ in handle.read(0):
                pass
        written = sessions * count * len(event)
        slow = await client.slowlog_get(100_000)
        await client.slowlog_reset()  # its entries are memory too
        grown = await used_memory(a) - before
        per_log = []
        for index in range(sessions):
            keys = await client.keys(f"trio-streams:*:finished-{index}")
            keys = [key for key in keys if b":log:" in key or b":bytes:" in key]
            per_log.append(sum([await client.memory_usage(key) or 0 for key in keys]))
        entries = [await client.xlen(key) for key in await client.keys("trio-streams:log:*")]
        finalizes = [
            entry.duration / 1000
            for entry in slow
            if len(entry.command) > 1 and entry.command[1] == finalize_sha.encode()
        ]
    print(f"{sessions} finished sessions of {count * len(event):,} bytes in {count} events")
    print(f"  MEMORY USAGE (log + segments) / bytes: {sum(per_log) / written:.3f}")
    print(f"  used_memory grown / bytes: {grown / written:.3f}")
    print(f"  entries left per log: {sorted(set(entries))}")
    if finalizes:
        print(
            f"  FINALIZE inside Redis: median {statistics.median(finalizes):.2f} ms, "
            f"max {max(finalizes):.2f} ms over {len(finalizes)}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--size", type=int, default=4 << 20)
    parser.add_argument("--event-bytes", type=int, default=700)
    options = parser.parse_args()
    arguments = (options.sessions, options.size, options.event_bytes)
    if options.redis_url:
        trio.run(main, options.redis_url, *arguments)
    else:
        server = RedisServer()
        server.start()
        try:
            print(server.version())
            trio.run(main, server.url, *arguments)
        finally:
            server.stop()
