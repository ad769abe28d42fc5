"""A real ``trio-streams serve`` process that outlives one test (a synchronous fixture's).

Tests that run documented examples against a server and only read whole answers need not
each start their own process (about half a second of start-up apiece): a module- or
session-scoped fixture shares one. Its log goes to a file, so no task has to drain a pipe.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVING = re.compile(rb"serving on (http://\S+)")


@contextmanager
def serve_process(log: Path, *args: str, seconds: float = 20) -> Iterator[str]:
    """``trio-streams serve --port 0 *args``, its URL once it listens; SIGTERM at the end
    (and it must exit 0: a shared server that fails to stop cleanly fails the tests)."""
    command = [sys.executable, "-m", "trio_streams", "serve", "--port", "0", *args]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stderr=stderr)
    try:
        deadline = time.monotonic() + seconds
        while not (match := SERVING.search(log.read_bytes())):
            assert process.poll() is None, f"server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"server not listening:\n{log.read_text()}"
            time.sleep(0.02)
        yield match.group(1).decode()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
