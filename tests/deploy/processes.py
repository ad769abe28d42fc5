"""Servers as their users run them: ``trio-streams serve`` and ``hypercorn``, as processes.

Builds on :class:`tests.test_cli.ServerProcess` (stderr collected as it comes): waits for any
line in the log, and stops the process with a real signal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tests.test_cli import ServerProcess

#: What ``serve`` logs per address, and what Hypercorn logs (``hypercorn`` command).
SERVING = re.compile(rb"serving on (https?://\S+)")
RUNNING = re.compile(rb"Running on (https?://\S+) \(CTRL")
#: The ``hypercorn`` console script of this environment.
HYPERCORN = str(Path(sys.executable).with_name("hypercorn"))


class Process(ServerProcess):
    async def wait_for(self, pattern: re.Pattern[bytes], seconds: float = 20) -> re.Match[bytes]:
        """The first match of ``pattern`` in the log, reading it until one shows."""
        assert self.process.stderr is not None
        with trio.fail_after(seconds):
            while not (match := pattern.search(self.stderr)):
                chunk = await self.process.stderr.receive_some()
                assert chunk, f"server exited:\n{self.stderr.decode()}"
                self.stderr += chunk
        return match

    async def urls(self, pattern: re.Pattern[bytes] = SERVING, count: int = 1) -> list[str]:
        """The first ``count`` addresses the server says it serves on."""
        await self.wait_for(re.compile(b"(?:.*?" + pattern.pattern + b"){%d}" % count, re.S))
        return [match.decode() for match in pattern.findall(self.stderr)][:count]

    async def stop(self, signum: signal.Signals = signal.SIGTERM, seconds: float = 10) -> int:
        """Send ``signum``; the exit code, once the process has exited (log fully read)."""
        self.process.send_signal(signum)
        with trio.fail_after(seconds):
            await self.drain_stderr()
            return await self.process.wait()


@asynccontextmanager
async def running(
    command: Sequence[str], env: dict[str, str] | None = None
) -> AsyncIterator[Process]:
    """Run ``command`` (stderr collected); killed at the end if the test left it running."""
    process = await trio.lowlevel.open_process(
        list(command), stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        yield Process(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_streams", "serve", *args]


def hypercorn_command(*args: str) -> list[str]:
    return [HYPERCORN, "--worker-class", "trio", *args, "trio_streams.asgi:create_app()"]
