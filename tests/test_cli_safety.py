"""The safety options of the command line, in a real process."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import httpx
import trio

from tests.cli_refusals import refused_serve
from tests.conftest import StartServer
from tests.helpers import chat_body
from tests.test_cli import start_process
from trio_streams.client.tail import tail


async def test_keys_from_file_and_environment_are_required(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# ops\nfile-key-1\n")
    server = await start_process(
        "--api-key-file", str(key_file), "--max-producers", "1",
        env={"TRIO_STREAMS_API_KEY": "env-key-1 env-key-2"},
    )  # fmt: skip
    try:
        url = await server.wait_for_url()
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/v1/models")).status_code == 401
            for key in ("file-key-1", "env-key-1", "env-key-2"):
                headers = {"Authorization": f"Bearer {key}"}
                assert (await client.get("/v1/models", headers=headers)).status_code == 200
            assert (await client.get("/health")).status_code == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain_stderr)
                assert await server.process.wait() == 0
    log = server.stderr.decode()
    assert "API keys required: 3 configured" in log
    assert "file-key-1" not in log and "env-key" not in log
    assert '"status":401' in log  # the access log saw the refused request


def test_a_budget_smaller_than_one_session_is_refused() -> None:
    result = refused_serve("--session-max-bytes", "1000", "--max-total-bytes", "999")
    assert result.exit_code == 2 and "must be at least --session-max-bytes" in result.stderr


async def test_tail_sends_its_api_key(start_server: StartServer) -> None:
    server = await start_server(api_keys=("tail-key",))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        started = await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=3),
            headers={"Authorization": "Bearer tail-key", "X-Conversation-Id": "t"},
        )
    out, err = io.BytesIO(), io.StringIO()
    assert await tail(server.url, "t", 0, raw=True, out=out, err=err, api_key="tail-key") == 0
    assert out.getvalue() == started.content
    refused = io.StringIO()
    assert await tail(server.url, "t", 0, raw=True, out=io.BytesIO(), err=refused) == 1
    assert "Missing or invalid API key" in refused.getvalue()
