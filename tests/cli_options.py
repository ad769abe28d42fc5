"""What ``trio-streams serve ARGS`` (with ``ENV`` set) serves with, parsed in-process.

click's parsing and our checks of the options, the same code ``python -m trio_streams serve``
runs, make the :class:`~trio_streams.settings.Settings` the command would serve with; a test
of an option's effect on the app then serves them with ``start_server`` (in-process when the
test is marked so) instead of starting a process (half a second each). What the command does
with its settings is the same for every option: tests/test_cli.py and the deploy tests run it
as a real process, for signals, exit codes and listening sockets.

Likewise :func:`tail` runs ``trio-streams tail ARGS`` in-process (tests/client/test_client.py
runs it once as a real process).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, fields
from typing import Any

import pytest
import trio

from trio_streams import cli
from trio_streams.app_options import settings_from_options


def serve_options(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``start_server``'s options for ``trio-streams serve *args`` with ``env``: the settings
    the command would serve with, on a free port of 127.0.0.1."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        with cli.serve.make_context("trio-streams serve", list(args)) as ctx:
            settings = settings_from_options(ctx)
    options = {field.name: getattr(settings, field.name) for field in fields(settings)}
    return {**options, "host": "127.0.0.1", "port": 0}


@dataclass
class Tailed:
    """What ``trio-streams tail ARGS`` ended with: its exit status, stdout and stderr."""

    returncode: int
    stdout: bytes
    stderr: bytes


class Printed(io.BytesIO):
    """``tail``'s stdout, in memory; ``grown`` is set at each write (a test waits for it)."""

    def __init__(self) -> None:
        super().__init__()
        self.grown = trio.Event()

    def write(self, data: Any) -> int:
        written = super().write(data)
        grown, self.grown = self.grown, trio.Event()
        grown.set()
        return written


async def tail(*args: str, out: Printed | None = None) -> Tailed:
    """``trio-streams tail *args``, in-process: click's parsing of the options, then the
    reading the command runs (its exit status), inside the test's own trio run."""
    with cli.tail.make_context("trio-streams tail", list(args)) as ctx:
        out = Printed() if out is None else out
        err = io.StringIO()
        status = await cli.tail_reading(**ctx.params, out=out, err=err)()
    return Tailed(status, out.getvalue(), err.getvalue().encode())
