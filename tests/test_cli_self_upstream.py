"""``serve --upstream`` pointing at the server itself is refused at start, as a user meets it.

Without the check, ``trio-streams serve --upstream http://127.0.0.1:8080/v1`` (the old
``--help`` example, and our own default port) proxies every request to itself, round and
round, until the ten-minute read timeout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "trio_streams", "serve", "--host", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "spec",
    [
        "http://127.0.0.1:{port}/v1",
        "http://localhost:{port}/v1",  # another name for the same socket: not a string match
        "named=http://127.0.0.1:{port}/v1",
    ],
)
def test_an_upstream_that_is_this_server_is_refused_at_start(spec: str) -> None:
    port = free_port()
    upstream = spec.format(port=port)
    result, seconds = serve("--port", str(port), "--upstream", upstream, "--api-key", "k")
    assert result.returncode == 2, result.stderr
    url = upstream.partition("=")[2] or upstream
    assert "Invalid value for '--upstream': " in result.stderr
    assert f"{url} is this server itself" in result.stderr.replace("named=", "")
    assert "http://127.0.0.1:8000/v1" in result.stderr  # what to give instead
    assert "serving on" not in result.stderr and "Traceback" not in result.stderr
    assert seconds < 15


def test_the_environment_variable_is_checked_too() -> None:
    port = free_port()
    result, _ = serve(
        env={"TRIO_STREAMS_PORT": str(port), "TRIO_STREAMS_UPSTREAM": f"http://127.0.0.1:{port}/v1"}
    )
    assert result.returncode == 2 and "is this server itself" in result.stderr, result.stderr


def test_help_no_longer_suggests_our_own_port_as_an_upstream(serve_help: str) -> None:
    assert "8080/v1" not in serve_help
    assert "http://127.0.0.1:8000/v1" in serve_help
