"""Schemathesis against /openapi.json of a live server: no 5xx, no schema violation.

Runs the ``st`` command line (as a user would) in a subprocess against a real Hypercorn
server on a free port, with API keys on so the authentication checks run too. Bounded:
a fixed seed and a small number of examples per operation keep it a CI test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tests.conftest import StartServer

KEY = "fuzz-key-1"


async def test_schemathesis_finds_nothing(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(demo_tps=5000.0, api_keys=(KEY,), max_producers=64)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--checks", "all",
        "--max-examples", "15",
        "--seed", "8",
        "--request-timeout", "10",
        "--header", f"Authorization: Bearer {KEY}",
        "--no-color",
    ]  # fmt: skip
    with trio.fail_after(240):
        result = await trio.run_process(
            command, cwd=tmp_path, capture_stdout=True, capture_stderr=True, check=False
        )
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
    assert "17 selected / 17 total" in output  # every documented operation was exercised
