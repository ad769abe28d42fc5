"""Memory of trio-streams sessions, measured in a fresh process (run by ``bench.py``).

Prints one JSON object, measured on the Python heap (tracemalloc) or, with ``--rss``, on
the process's resident set (which also counts allocator slack; tracemalloc is off then,
since its own bookkeeping would swamp the figure):

- ``idle_session_overhead_bytes``: per finished, idle session beyond the bytes it buffers;
- ``live_reader_bytes``: per reader parked on a live session (its task and generator);
- ``after_eviction_bytes``: what is still held once the TTL evicted every session, after
  each of two equal rounds; the second adding nothing is the proof that memory comes back.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc

import psutil
import trio
import trio.testing

from trio_streams import SessionManager, StreamWriter
from trio_streams.core.limits import Limits


def heap() -> int:
    gc.collect()
    if tracemalloc.is_tracing():
        return tracemalloc.get_traced_memory()[0]
    return int(psutil.Process().memory_info().rss)


async def measure(sessions: int, event_bytes: int, readers: int) -> dict[str, object]:
    """Heap figures with tracemalloc on, resident-set figures with it off (see ``main``)."""
    event = b"data: " + b"x" * (event_bytes - 8) + b"\n\n"

    async def one_event(writer: StreamWriter) -> None:
        await writer.write(event)

    results: dict[str, object] = {"sessions": sessions, "buffered_bytes_each": len(event)}
    unlimited = Limits(max_total_bytes=None, max_sessions=None, max_producers=None)
    async with SessionManager(
        ttl=3600, gc_interval=0.05, ping_interval=None, limits=unlimited
    ) as manager:
        # Warm up allocator pools and code paths so the baseline is a fair one.
        for index in range(50):
            manager.start(f"warm-{index}", one_event)
        await trio.sleep(0.1)
        manager.ttl = 0.0
        await trio.sleep(0.2)
        base = heap()
        after_eviction = []
        for round_ in range(2):
            manager.ttl = 3600
            # Sessions arrive in waves, as they would: not all producers alive at once.
            for index in range(sessions):
                manager.start(f"conversation-{round_}-{index:08d}", one_event)
                if index % 100 == 99:
                    await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()
            assert manager.producer_count == 0
            full = heap()
            assert len(manager) == sessions
            if round_ == 0:
                results["idle_session_bytes"] = round((full - base) / sessions)
                results["idle_session_overhead_bytes"] = round((full - base) / sessions) - len(
                    event
                )
            # TTL eviction: every finished session goes and its memory comes back.
            manager.ttl = 0.0
            await trio.sleep(0.3)
            assert len(manager) == 0
            after_eviction.append(heap() - base)
        # What stays is the high-water mark of containers (dicts and sets do not shrink):
        # the second round, as big as the first, must not add to it.
        results["after_eviction_bytes"] = after_eviction

        # Live readers parked on one live session.
        release = trio.Event()

        async def live(writer: StreamWriter) -> None:
            await writer.write(event)
            await release.wait()

        session = manager.start("live", live)
        await trio.sleep(0.05)
        before = heap()
        async with trio.open_nursery() as nursery:

            async def reader() -> None:
                async for _ in session.read(0):
                    pass

            for _ in range(readers):
                nursery.start_soon(reader)
            await trio.sleep(0.1)
            assert session.reader_count == readers
            results["live_readers"] = readers
            results["live_reader_bytes"] = round((heap() - before) / readers)
            release.set()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--event-bytes", type=int, default=1024)
    parser.add_argument("--readers", type=int, default=5_000)
    parser.add_argument(
        "--rss", action="store_true", help="measure the resident set instead of the heap"
    )
    args = parser.parse_args()
    if not args.rss:
        tracemalloc.start()
    results = trio.run(measure, args.sessions, args.event_bytes, args.readers)
    results["measure"] = "rss" if args.rss else "tracemalloc"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
