"""The bench's scale-out scenarios run on real servers: cross-instance reads and workers.

``scripts/bench/bench.py`` measures the Redis store with streams produced on one bench
server (instance A) and read on another (instance B), counting each instance's Redis
connections with ``CLIENT LIST``, and with the bench app in Hypercorn worker processes
(``--workers N``, as ``trio-streams serve --workers N`` runs). These tests run the real
load process (``bench_load.py fanout``) against real bench servers on a private Redis, with
a few streams and a short window, and check what the figures rest on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from tests.redis_fixtures import RedisServer
from tests.scripts.test_bench_server import SCRIPTS

sys.path.insert(0, str(SCRIPTS))

from bench import Server


def fanout(server: Server, *options: str) -> dict[str, Any]:
    """``bench_load.py fanout`` of 3 streams at 50 tokens/s against ``server``."""
    done = subprocess.run(
        [
            sys.executable, "bench_load.py", "fanout",
            "--port", str(server.port), "--server-pid", str(server.pid),
            "--streams", "3", "--rate", "50",
            "--warmup", "0.3", "--window", "1", "--ramp-timeout", "10",
            *options,
        ],
        cwd=SCRIPTS, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_streams_produced_on_one_instance_are_read_on_another(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    command = ["bench_server.py", "--store", redis_server.url]
    a = Server.start("A", command, tmp_path / "a.log")
    b = Server.start("B", command, tmp_path / "b.log")
    try:
        assert a.store_client and b.store_client and a.store_client != b.store_client
        result = fanout(
            b,
            "--route", "follow",
            "--producer-port", str(a.port), "--producer-pid", str(a.pid),
            "--store-pid", str(redis_server.pid), "--redis-port", str(redis_server.port),
        )  # fmt: skip
        assert result["failed"] == 0 and result["connected"] == 3
        assert result["events"] >= 3 * 50 * 0.5  # every stream delivered on B, live
        # A produced them: its CPU and the Redis server's count too.
        assert result["producer_cpu_seconds"] > 0 and result["store_cpu_seconds"] > 0
        connections = result["redis_connections"]
        assert 1 <= connections[a.store_client] <= 8
        assert 1 <= connections[b.store_client] <= 8
        # A started them, so A's reset stops them.
        assert a.post("/bench/reset") == {"stopped": 3}
    finally:
        a.stop()
        b.stop()


def test_workers_serve_the_bench_and_all_stop(redis_server: RedisServer, tmp_path: Path) -> None:
    server = Server.start(
        "workers",
        ["bench_server.py", "--store", redis_server.url, "--workers", "2"],
        tmp_path / "workers.log",
    )
    workers = psutil.Process(server.pid).children(recursive=True)
    try:
        serving = [w for w in workers if "spawn_main" in " ".join(w.cmdline())]
        assert len(serving) == 2
        result = fanout(server, "--route", "session", "--no-batch")
        assert result["failed"] == 0 and result["events"] > 0
        # The CPU of the workers is the server's: the parent itself only waits.
        assert result["server_cpu_seconds"] > 0.05
    finally:
        server.stop()
    _gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
