"""The chaos soak (scripts/soak.py), short, as CI runs it: it must end with RESULT: OK."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


async def test_short_soak_loses_nothing_and_leaks_nothing() -> None:
    command = [
        sys.executable,
        str(SOAK),
        "--sessions",
        "40",
        "--seconds",
        "10",
        "--seed",
        "1",
        "--ttl",
        "3",
    ]
    with trio.fail_after(180):
        result = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    output = result.stdout.decode()
    assert result.returncode == 0, output + result.stderr.decode()[-4000:]
    summary = dict(
        line.strip().split(":", 1) for line in output.splitlines() if line.startswith("  ")
    )
    assert summary["after TTL"].strip() == "0 sessions, 0 bytes"
    assert int(summary["resumes"]) > 0 and int(summary["bytes checked"].split()[0]) > 0
    assert output.rstrip().endswith("RESULT: OK")
