"""The cross-instance scenario in its steady state, and where its latency comes from.

    python scripts/bench/cross_probe.py --streams 300 --warmup 8 [--runs 2] [--idle-subscriber]

``bench.py``'s ``session-cross`` measures a window of 3 s right after a 1 s warm-up, so a
run often catches instance B still working off the ramp. This probe starts a private
Redis server and two bench servers on it (A produces, B serves the readers), runs
``bench_load.py fanout --route follow`` with a warm-up of your choosing, and prints B's
delivered events/s, p50 and p99 (append on A → receipt by the client of B) and the CPU
seconds of A and B over the window.

With ``--idle-subscriber``, a third process subscribes to every log's channel on the same
Redis and reports how late A's publications reach a subscriber with nothing else to do:
what A's flush path and Redis add, apart from B (that process costs CPU too, so the
figures of B are a little worse in such a run).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from trio_streams.stores.redis.pool import command_client
from trio_streams.stores.redis.subscriber import receive_push_batch
from trio_streams.testing.redis import RedisServer

SCRIPTS = Path(__file__).resolve().parent
TIMESTAMP = re.compile(rb'"ts":(\d+)')


def start_server(redis_url: str, log: Any) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "bench_server.py", "--store", redis_url],
        cwd=SCRIPTS,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


async def idle_subscriber(redis_url: str, seconds: float) -> dict[str, float]:
    """Every log's publications, timed against the ``ts`` their events carry."""
    client = command_client(redis_url, connections=2, connect_timeout=2)
    late: list[float] = []
    async with client:
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            connection.send_command(b"PSUBSCRIBE", b"trio-streams:log:*")
            with trio.move_on_after(seconds):
                while True:
                    batch = await receive_push_batch(connection)
                    now = time.monotonic_ns()
                    for message in batch:
                        if message[0] == b"pmessage":
                            late += [(now - int(ts)) / 1e6 for ts in TIMESTAMP.findall(message[3])]
        finally:
            connection.invalidate()
            pool.release(connection)
    late.sort()
    if not late:
        return {}
    return {"p50_ms": late[len(late) // 2], "p99_ms": late[int(len(late) * 0.99)]}


def busy_cores(before: Any, after: Any) -> float:
    """How many of the machine's cores were busy between two ``psutil.cpu_times()``: with
    every process on it counted, the scenario's and anyone else's."""
    idle = (after.idle + after.iowait) - (before.idle + before.iowait)
    total = sum(after) - sum(before)
    return float(psutil.cpu_count() * (1 - idle / total)) if total else 0.0


def run_once(args: argparse.Namespace, redis: RedisServer, log: Any) -> None:
    a, a_info = start_server(redis.url, log)
    b, b_info = start_server(redis.url, log)
    probe = None
    try:
        if args.idle_subscriber:
            seconds = args.ramp_timeout + args.warmup + args.window
            probe = subprocess.Popen(
                [sys.executable, __file__, "--subscribe", redis.url, "--seconds", str(seconds)],
                stdout=subprocess.PIPE,
                text=True,
            )
        machine_before = psutil.cpu_times()
        load = subprocess.run(
            [
                sys.executable, "bench_load.py", "fanout",
                "--port", str(b_info["port"]), "--server-pid", str(b_info["pid"]),
                "--route", "follow", "--streams", str(args.streams),
                "--warmup", str(args.warmup), "--window", str(args.window),
                "--ramp-timeout", str(args.ramp_timeout),
                "--producer-port", str(a_info["port"]), "--producer-pid", str(a_info["pid"]),
                "--store-pid", str(redis.pid),
            ],
            cwd=SCRIPTS,
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        result = json.loads(load.stdout)
        busy = busy_cores(machine_before, psutil.cpu_times())
        window_cpu = (
            result["producer_cpu_seconds"]
            + result["server_cpu_seconds"]
            + result["store_cpu_seconds"]
            + result["load_cpu_fraction"] * args.window
        )
        print(
            f"S={args.streams}: B delivered {result['events_per_s']:.0f} ev/s "
            f"(offered {result['offered_events_per_s']:.0f}), p50 {result['p50_ms']:.1f} ms, "
            f"p99 {result['p99_ms']:.1f} ms; CPU over the {args.window:g} s window: "
            f"A {result['producer_cpu_seconds']:.2f} s, B {result['server_cpu_seconds']:.2f} s, "
            f"Redis {result['store_cpu_seconds']:.2f} s, the load process "
            f"{result['load_cpu_fraction'] * args.window:.2f} s; "
            f"ramp {result['ramp_seconds']:.1f} s; "
            f"cores the scenario kept busy in the window: {window_cpu / args.window:.2f}, "
            f"the machine's over the whole run (ramp included, anyone's): {busy:.2f} "
            f"of {psutil.cpu_count()}",
            flush=True,
        )
        if probe is not None:
            print(f"  an idle subscriber saw A's publications: {probe.communicate()[0].strip()}")
    finally:
        for process in (a, b):
            process.terminate()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--window", type=float, default=5.0)
    parser.add_argument("--ramp-timeout", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--idle-subscriber", action="store_true")
    parser.add_argument("--subscribe", help=argparse.SUPPRESS)  # the idle subscriber itself
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        print(json.dumps(trio.run(idle_subscriber, args.subscribe, args.seconds)))
        return
    with RedisServer() as redis, open(Path("/dev/null"), "w") as log:
        print(f"Redis store: {redis.version()} on {redis.url}", flush=True)
        for _ in range(args.runs):
            run_once(args, redis, log)


if __name__ == "__main__":
    main()
