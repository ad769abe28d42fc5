"""Small things a new user reads: the version, where the client's key is documented, the
shutdown log line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from importlib.metadata import version

import httpx
import trio

from tests.helpers import chat_body
from tests.test_cli import start_process


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_streams", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )


def test_version() -> None:
    assert run("--version").stdout == f"trio-streams {version('trio-streams')}\n"


def test_the_top_level_help_names_the_client_environment() -> None:
    """``TRIO_STREAMS_CLIENT_API_KEY`` was named only in ``tail --help``."""
    text = run("--help").stdout
    assert re.search(r"^\s+TRIO_STREAMS_CLIENT_API_KEY\s+\S", text, re.MULTILINE), text
    assert re.search(r"^\s+TRIO_STREAMS_URL\s+the server", text, re.MULTILINE), text
    assert "--version" in text


async def test_shutdown_counts_sessions_in_good_english() -> None:
    server = await start_process("--demo-tps", "50")
    try:
        url = await server.wait_for_url()
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=2),
                headers={"X-Conversation-Id": "the-only-one"},
            )
            assert response.status_code == 200
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await server.drain_stderr()
            assert await server.process.wait() == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
    assert "shutting down: finalizing 1 session\n" in server.stderr.decode()
