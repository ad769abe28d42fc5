"""The command line, run as a user runs it: a real process, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
import trio

from tests.cli_options import serve_options
from tests.conftest import StartServer
from tests.helpers import chat_body, http_client
from trio_streams.core.end_reasons import EndReason, end_event

SERVING = re.compile(rb"serving on (http://\S+)")


class ServerProcess:
    """``python -m trio_streams serve`` on a free port, its stderr collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stderr = b""

    async def wait_for_url(self) -> str:
        assert self.process.stderr is not None
        with trio.fail_after(20):
            while not (match := SERVING.search(self.stderr)):
                chunk = await self.process.stderr.receive_some()
                assert chunk, f"server exited early:\n{self.stderr.decode()}"
                self.stderr += chunk
        return match.group(1).decode()

    async def drain_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk


async def start_process(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_streams", "serve", "--port", "0", *args],
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return ServerProcess(process)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_ends_every_reader_and_exits_0_within_5s(signum: signal.Signals) -> None:
    server = await start_process("--demo-tps", "50")
    try:
        url = await server.wait_for_url()
        async with (
            httpx.AsyncClient(base_url=url, timeout=10) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(max_tokens=100_000),
                headers={"X-Conversation-Id": "secret-conversation-id-123"},
            ) as response,
        ):
            chunks = response.aiter_raw()
            await chunks.__anext__()
            server.process.send_signal(signum)
            rest = b""
            with trio.fail_after(5):
                async for chunk in chunks:
                    rest += chunk  # the reader ends: its session was finalized
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(server.drain_stderr)
                    assert await server.process.wait() == 0
            # ... and it was told to resume elsewhere, not that the answer was complete.
            assert rest.endswith(end_event(EndReason.SHUTDOWN))
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()
    log = server.stderr.decode()
    assert "received " + signum.name in log and "stopped" in log
    assert "shutting down: finalizing 1 session\n" in log  # one session, in good English
    assert "secret-conversation-id-123" not in log  # ids are never logged in full
    assert "Traceback" not in log


@pytest.mark.in_process
async def test_options_come_from_environment_variables(start_server: StartServer) -> None:
    env = {"TRIO_STREAMS_SESSION_MAX_BYTES": "700"}
    server = await start_server(**serve_options(env=env))
    async with http_client(server, timeout=10) as client:
        await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=20),
            headers={"X-Conversation-Id": "env"},
        )
        lookup = await client.post("/v1/streams/lookup", json={"conversation_ids": ["env"]})
        info = lookup.json()
        lost = await client.get("/v1/stream/env", params={"from": info[0]["total_bytes"] - 701})
        assert lost.status_code == 400
        kept = await client.get("/v1/stream/env", params={"from": info[0]["total_bytes"] - 700})
        assert kept.status_code == 200 and len(kept.content) == 700


def test_help_explains_every_option(serve_help: str) -> None:
    for option in (
        "--host", "--port", "--demo-tps", "--session-max-bytes", "--session-ttl",
        "--gc-interval", "--ping-interval", "TRIO_STREAMS_PORT",
        # The listener's (trio_streams.listener_options):
        "--bind", "--config", "--certfile", "--keyfile", "--backlog", "--graceful-timeout",
        "--workers", "--proxy-headers", "--trusted-hops", "TRIO_STREAMS_BIND",
        "TRIO_STREAMS_PROXY_HEADERS", "TRIO_STREAMS_WORKERS",
    ):  # fmt: skip
        assert option in serve_help


def test_bad_option_values_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trio_streams", "serve", "--demo-tps", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "must be greater than 0" in result.stderr
