"""``trio-streams serve`` with options it refuses before serving, run in-process.

A refusal (exit code 2, the message on stderr) is click's parsing and our checks of the
options, done before anything listens: click's ``CliRunner`` runs exactly that code, the
same as ``python -m trio_streams`` does, without a process start-up (half a second each).
tests/test_cli.py keeps one refusal through a real process, for the exit code and stderr
of the command itself. Were the options accepted, the run fails at once instead of serving.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest
from click.testing import CliRunner, Result

from trio_streams import cli, server


def refused_serve(*args: str, env: dict[str, str] | None = None) -> Result:
    """``trio-streams serve *args`` (with ``env`` set), its result: exit code and stderr."""

    def served(*_args: Any, **_options: Any) -> NoReturn:
        raise AssertionError(f"serve {' '.join(args)} was not refused: it started serving")

    with pytest.MonkeyPatch.context() as patch:
        # serve imports these when it runs, so the module's own names are the ones to patch.
        patch.setattr(server, "serve", served)
        patch.setattr(server, "serve_workers", served)
        return CliRunner().invoke(cli.main, ["serve", *args], env=env, prog_name="trio-streams")
