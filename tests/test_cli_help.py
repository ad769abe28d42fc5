"""Small things a new user reads: the version, where the client's key is documented.

The shutdown log line is checked by tests/test_cli.py's signal test."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

from click.testing import CliRunner

from trio_streams import cli


def test_version_starts_without_the_web_stack_or_the_http_client() -> None:
    """A real process: ``-X importtime`` lists every module the command imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "trio_streams", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout == f"trio-streams {version('trio-streams')}\n"
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()}
    assert "trio_streams.cli" in imported
    assert not imported & {"httpx", "quart", "hypercorn"}, "imported by --version"


def test_the_top_level_help_names_the_client_environment() -> None:
    """``TRIO_STREAMS_CLIENT_API_KEY`` was named only in ``tail --help``."""
    result = CliRunner().invoke(cli.main, ["--help"], prog_name="trio-streams")
    assert result.exit_code == 0
    text = result.stdout
    assert re.search(r"^\s+TRIO_STREAMS_CLIENT_API_KEY\s+\S", text, re.MULTILINE), text
    assert re.search(r"^\s+TRIO_STREAMS_URL\s+the server", text, re.MULTILINE), text
    assert "--version" in text
