"""The Durable Streams server conformance suite (npm ``@durable-streams/server-conformance-tests``,
pinned in ``tests/js/durable-streams``) against a real server's ``/ds``, on each store.

The suite runs unchanged under vitest, in Node, against a server this test starts on a
free port (Hypercorn, as ``trio-streams serve`` runs it); vitest's JSON report says which
tests passed. Every default test must pass: the subscription group is opt-in in the suite
(its 6 tests are skipped unless asked for) and stays off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import StartServer, start_on_store
from trio_streams.server import RunningServer

SUITE = Path(__file__).parents[1] / "js" / "durable-streams"
#: Tests of the pinned suite outside its opt-in subscription group.
DEFAULT_TESTS = 332
#: Short, so the suite's three tests that wait for a long-poll's 204 do not wait 20 s each
#: (the suite allows any timeout: its long-polls that expect data append within 50 ms, or
#: go on appending until the answer comes, or read through its client, which polls again
#: after a 204). 1 s rather than less so a loaded machine still answers those in time.
LONG_POLL_TIMEOUT = 1.0
#: Hypercorn's own config for the server: connections kept alive for 60 s, not 5. The
#: suite's Node process runs long synchronous checks (102,400 ``expect`` calls in one
#: test, 5-9 s on a loaded machine) during which undici cannot notice that the server
#: closed an idle connection; it then sends the next test's request on it and gets
#: "other side closed" (the keep-alive race every HTTP/1.1 client must live with).
HYPERCORN_CONFIG = "keep_alive_timeout = 60\n"


@pytest.fixture(scope="session")
def vitest() -> Path:
    """vitest, with the pinned suite installed (``npm ci``, once)."""
    npm = shutil.which("npm")
    assert npm is not None and shutil.which("node"), "Node.js and npm are needed for this test"
    if not (SUITE / "node_modules" / "@durable-streams" / "server-conformance-tests").is_dir():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SUITE, check=True
        )
    return SUITE / "node_modules" / ".bin" / "vitest"


@pytest.fixture(params=["memory", "redis"])
async def server(
    request: pytest.FixtureRequest, start_server: StartServer, tmp_path: Path
) -> RunningServer:
    """A real server with the suite's needs: CORS on (one test sends a preflight), long
    keep-alive (:data:`HYPERCORN_CONFIG`); for ``redis``, on a private Redis-protocol
    server of the test kit (marked ``redis``)."""
    config = tmp_path / "hypercorn.toml"
    config.write_text(HYPERCORN_CONFIG)
    return await start_on_store(
        request,
        start_server,
        cors_origins=("*",),
        ds_long_poll_timeout=LONG_POLL_TIMEOUT,
        hypercorn_config=str(config),
    )


def failures(report: dict[str, Any]) -> list[str]:
    """``group > test: first line of the failure`` of each failed test."""
    failed = []
    for file in report["testResults"]:
        for result in file["assertionResults"]:
            if result["status"] == "failed":
                message = (result.get("failureMessages") or [""])[0].splitlines()[:1]
                group = " > ".join(result["ancestorTitles"])
                failed.append(f"{group} > {result['title']}: {' '.join(message)[:300]}")
    return failed


async def test_the_conformance_suite_passes(
    server: RunningServer, vitest: Path, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    command = [
        str(vitest),
        "run",
        "--config",
        "vitest.config.mjs",
        "--reporter=json",
        f"--outputFile={report_path}",
    ]
    env = {**os.environ, "CONFORMANCE_TEST_URL": f"{server.url}/ds", "NO_COLOR": "1"}
    result = await trio.run_process(
        command, cwd=SUITE, env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    assert report_path.is_file(), result.stderr.decode(errors="replace")[-3000:]
    report = json.loads(report_path.read_text())
    failed = failures(report)
    assert not failed, f"{len(failed)} conformance tests failed:\n" + "\n".join(failed)
    assert report["numPassedTests"] == DEFAULT_TESTS, report["numPassedTests"]
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
