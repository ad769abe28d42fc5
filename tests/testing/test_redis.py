"""The one Redis starter serves the kit, the tests and the bench alike."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from trio_streams.testing.redis import SHARED_PORT, RedisServer

pytestmark = pytest.mark.redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
from bench_redis import RedisProcess, find_binary  # noqa: E402 (the bench's import path)


def answers_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(64) == b"+PONG\r\n"


def test_a_server_restarts_on_its_port_and_close_removes_its_directory() -> None:
    with RedisServer() as server:
        port, directory = server.port, server.directory
        assert port != SHARED_PORT and answers_ping(port)
        server.stop()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        server.start()
        assert server.port == port and answers_ping(port)
    assert not directory.exists()


def test_the_bench_starts_the_same_server_and_stop_cleans_up() -> None:
    binary = find_binary()
    assert binary is not None
    redis = RedisProcess(binary).start()
    try:
        assert answers_ping(redis.port) and "server" in redis.version().lower()
    finally:
        redis.stop()
    assert not redis.directory.exists()
