"""The chaos soak (scripts/soak.py), short, as CI runs it: it must end with RESULT: OK.

Once on the memory store, and once with two instances sharing one Redis (a private
server the soak starts), every request going to either instance at random.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from tests.redis_fixtures import server_binary

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_short_soak_loses_nothing_and_leaks_nothing(store: str) -> None:
    command = [
        sys.executable,
        str(SOAK),
        "--sessions",
        "40",
        "--seconds",
        "10",
        "--seed",
        "1",
        # 25 times what a chaos client stays away (at most 0.2 s); the soak's end waits it
        # out (and a GC round) to check that nothing is left. Not 2 s: the TTL runs from the
        # session's end, and on a loaded machine (load 4 on 2 cores, the suite beside it) a
        # reader still behind by 2.3 s found its finished session expired (404), on the
        # code before and after the shutdown change alike.
        "--ttl",
        "5",
        "--store",
        store,
        *redis_server_option(),
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
    assert summary["after TTL"].strip() == "0 sessions, 0 bytes, 0 Redis keys"
    assert summary["store"].strip().startswith(f"{store} ({1 if store == 'memory' else 2} instance")
    assert int(summary["resumes"]) > 0 and int(summary["bytes checked"].split()[0]) > 0
    assert output.rstrip().endswith("RESULT: OK")


def redis_server_option() -> list[str]:
    """The Redis tests' server binary (``TRIO_STREAMS_TEST_REDIS_SERVER`` or Valkey's)."""
    return ["--redis-server", server_binary()]
