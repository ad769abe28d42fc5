"""Schemathesis against /openapi.json of a live server: no 5xx, no schema violation.

Runs the ``st`` command line (as a user would) in a subprocess against a real Hypercorn
server on a free port, with API keys on so the authentication checks run too. Bounded:
a fixed seed and a small number of examples per operation keep it a CI test.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

from tests.conftest import StartServer

KEY = "fuzz-key-1"
#: Random examples per operation in the fuzzing and stateful phases; the coverage phase
#: (each operation's boundary and invalid values, about 840 requests) does not depend on
#: it. 8 rather than 15: 1056 requests instead of 1240, about 5 s of CPU less.
MAX_EXAMPLES = 8
#: What a schema-valid request may be answered besides a 2xx, where no schema can tell a
#: valid value from an unlucky one: a ``starting_after`` past the last event is a 400
#: (OpenAI's answer), a ``generation`` that is not the session's is a 409 (replaced), a
#: missing id is a 404, and the AI SDK's reconnect to a chat without a session is a 204.
#: A Durable Streams PUT that creates a stream is a 201, and an offset of a session
#: generation that is not the current one is a 410 (``/ds``).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = [200, 201, 204, 400, 401, 404, 409, 410]
"""


async def test_schemathesis_finds_nothing(start_server: StartServer, tmp_path: Path) -> None:
    server = await start_server(demo_tps=5000.0, api_keys=(KEY,), max_producers=64)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
        "--checks", "all",
        "--max-examples", str(MAX_EXAMPLES),
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
    # Every operation schemathesis found was exercised. (4.32 reports 20 for the document's
    # 21; --include-path finds each of the 18 paths, so none is left out.)
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", output)
    assert selected is not None, output[-3000:]
    assert selected[1] == selected[2] == selected[3] and int(selected[1]) >= 20
