"""``serve --upstream`` pointing at the server itself is refused at start, as a user meets it.

Without the check, ``trio-streams serve --upstream http://127.0.0.1:8080/v1`` (the old
``--help`` example, and our own default port) proxies every request to itself, round and
round, until the ten-minute read timeout. The check itself (other names for the same
socket, named upstreams, two proxies in a ring) is tested in-process by
tests/http/test_loop_guard.py; here the command's exit code and message, in a real process.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli_options import serve_options
from tests.conftest import StartServer
from tests.http.test_loop_guard import free_port
from trio_streams.http.loop_guard import UpstreamLoopError


def test_an_upstream_that_is_this_server_is_refused_at_start() -> None:
    port = free_port()
    upstream = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "trio_streams", "serve", "--host", "127.0.0.1"]
    result = subprocess.run(
        [*command, "--port", str(port), "--upstream", upstream, "--api-key", "k"],
        capture_output=True,
        text=True,
        timeout=15,  # refused at start: a command that serves instead fails here
    )
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--upstream': " in result.stderr
    assert f"{upstream} is this server itself" in result.stderr
    assert "http://127.0.0.1:8000/v1" in result.stderr  # what to give instead
    assert "serving on" not in result.stderr and "Traceback" not in result.stderr


async def test_the_environment_variable_is_checked_too(start_server: StartServer) -> None:
    port = free_port()
    env = {"TRIO_STREAMS_PORT": str(port), "TRIO_STREAMS_UPSTREAM": f"http://127.0.0.1:{port}/v1"}
    with pytest.raises(UpstreamLoopError, match="is this server itself"):
        await start_server(**{**serve_options(env=env), "port": port})


def test_help_no_longer_suggests_our_own_port_as_an_upstream(serve_help: str) -> None:
    assert "8080/v1" not in serve_help
    assert "http://127.0.0.1:8000/v1" in serve_help
