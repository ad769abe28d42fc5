"""The library's own cost per event, without HTTP: write, wake the reader, hand it the bytes.

``S`` sessions with one reader each; a driver writes one event to every session per round
through the producers' ``SessionWriter`` (event-id stamping included) and lets the readers
run. The same rounds through a trio memory channel per stream are the
floor (no log, no replay). Prints CPU microseconds per event for both and their ratio,
alternating the two several times. Used to measure hot-path changes to ``session.py`` and
``bytelog.py`` precisely, where the HTTP fan-out's noise would hide them::

    python scripts/bench/bench_hotpath.py
"""

from __future__ import annotations

import argparse
import json
import math
import time

import trio
import trio.testing

from trio_streams import StreamSession
from trio_streams.core.producer import SessionWriter

EVENT = b"data: " + b"x" * 270 + b"\n\n"


async def through_sessions(streams: int, rounds: int) -> float:
    sessions = [StreamSession(f"conversation-{i}", 4 << 20) for i in range(streams)]
    writers = [SessionWriter(session) for session in sessions]
    delivered = 0

    async def reader(session: StreamSession) -> None:
        nonlocal delivered
        async for chunk in session.read(0):
            delivered += len(chunk)

    async with trio.open_nursery() as nursery:
        for session in sessions:
            nursery.start_soon(reader, session)
        await trio.testing.wait_all_tasks_blocked()
        started = time.process_time()
        for _ in range(rounds):
            for writer in writers:
                writer.write_nowait(EVENT)
            await trio.testing.wait_all_tasks_blocked()
        elapsed = time.process_time() - started
        for session in sessions:
            session.finalize()
    assert delivered == sum(session.total_bytes for session in sessions)
    assert delivered > streams * rounds * len(EVENT)  # the events, and their ids
    return elapsed / (streams * rounds) * 1e6


async def through_channels(streams: int, rounds: int) -> float:
    channels = [trio.open_memory_channel[bytes](math.inf) for _ in range(streams)]
    delivered = 0

    async def reader(receive: trio.MemoryReceiveChannel[bytes]) -> None:
        nonlocal delivered
        async for chunk in receive:
            delivered += len(chunk)

    async with trio.open_nursery() as nursery:
        for _, receive in channels:
            nursery.start_soon(reader, receive)
        await trio.testing.wait_all_tasks_blocked()
        started = time.process_time()
        for _ in range(rounds):
            for send, _ in channels:
                send.send_nowait(EVENT)
            await trio.testing.wait_all_tasks_blocked()
        elapsed = time.process_time() - started
        for send, _ in channels:
            send.close()
    assert delivered == streams * rounds * len(EVENT)
    return elapsed / (streams * rounds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    session_us, channel_us = [], []
    for _ in range(args.repeats):
        session_us.append(trio.run(through_sessions, args.streams, args.rounds))
        channel_us.append(trio.run(through_channels, args.streams, args.rounds))
    best_session, best_channel = min(session_us), min(channel_us)
    print(
        json.dumps(
            {
                "session_us_per_event": round(best_session, 2),
                "channel_us_per_event": round(best_channel, 2),
                "ratio": round(best_session / best_channel, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
