"""The benchmark's trio-streams server serves its routes through the store it is given.

Scenario 5 of ``scripts/bench/bench.py`` runs the fan-out and the replay through the Redis store:
the same bench routes, on a ``scripts/bench/bench_server.py`` started with ``--store redis://…``.
These tests start the real script on a free port, with the memory store and with a private
Redis server, and check what the bench relies on: a session streams every event, a filled
session replays whole from offset 0 through the real ``GET /v1/stream`` route, and reset
stops what is still producing. With Redis, a second bench server on the same Redis reads
the sessions the first one made: they live in Redis, not in the process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.redis_fixtures import RedisServer

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "bench"
FILL_BYTES = 64 * 1024


@contextmanager
def bench_server(store: str) -> Iterator[httpx.Client]:
    """``bench_server.py --store STORE`` on a free port, stopped (SIGTERM) at the end."""
    process = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "bench_server.py"), "--store", store],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        with httpx.Client(base_url=f"http://127.0.0.1:{info['port']}", timeout=20) as client:
            yield client
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "memory":
        yield "memory"
        return
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        yield redis.url
    finally:
        redis.stop()


def data_events(body: bytes) -> list[bytes]:
    return [event for event in body.split(b"\n\n") if event.startswith(b"data: ")]


def test_a_session_streams_every_event_and_stays_readable(store: str) -> None:
    with bench_server(store) as client:
        first = client.get("/bench/session/s1", params={"tokens": 5, "rate": 200})
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        events = data_events(first.content)
        assert len(events) == 6  # five chunks and [DONE]
        assert all(b"\nid: " in event for event in events)  # stamped by the store's writer
        assert events[-1].startswith(b"data: [DONE]")
        # The session is in the store: a resume from 0 reads the very same bytes.
        again = client.get("/v1/stream/s1", params={"from": 0})
        assert again.status_code == 200
        assert again.content == first.content


def test_a_filled_session_replays_whole_from_offset_zero(store: str) -> None:
    with bench_server(store) as client:
        filled = client.post("/bench/fill/r", params={"bytes": FILL_BYTES}).json()
        assert filled["dropped"] == 0
        assert FILL_BYTES - 2048 < filled["total_bytes"] <= FILL_BYTES
        replay = client.get("/v1/stream/r", params={"from": 0})
        assert replay.status_code == 200
        assert len(replay.content) == filled["total_bytes"]
        assert data_events(replay.content)[-1].startswith(b"data: [DONE]")


def test_reset_stops_a_session_still_producing(store: str) -> None:
    with bench_server(store) as client:
        path = "/bench/session/long?tokens=100000&rate=20"
        with client.stream("GET", path) as response:
            assert response.status_code == 200
            next(response.iter_bytes())  # the client leaves; the producer goes on
        found = client.post("/v1/streams/lookup", json={"conversation_ids": ["long"]}).json()
        assert [info["is_done"] for info in found] == [False]
        assert client.post("/bench/reset").json() == {"stopped": 1}
        found = client.post("/v1/streams/lookup", json={"conversation_ids": ["long"]}).json()
        assert [info["is_done"] for info in found] in ([True], [])  # finished, or evicted


@pytest.mark.redis
def test_with_redis_another_bench_server_reads_the_sessions(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with bench_server(redis.url) as first, bench_server(redis.url) as second:
            filled = first.post("/bench/fill/shared", params={"bytes": FILL_BYTES}).json()
            replay = second.get("/v1/stream/shared", params={"from": 0})
            assert replay.status_code == 200
            assert len(replay.content) == filled["total_bytes"]
    finally:
        redis.stop()
