"""The safety options of the command line, as ``serve`` parses them (tests/cli_options.py),
served in-process; and ``tail``'s API key."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pytest

from tests.cli_options import serve_options
from tests.cli_refusals import refused_serve
from tests.conftest import StartServer
from tests.helpers import chat_body, http_client
from trio_streams.client.tail import tail


@pytest.mark.in_process
async def test_keys_from_file_and_environment_are_required(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_streams")
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# ops\nfile-key-1\n")
    options = serve_options(
        "--api-key-file", str(key_file), "--max-producers", "1",
        env={"TRIO_STREAMS_API_KEY": "env-key-1 env-key-2"},
    )  # fmt: skip
    server = await start_server(**options)
    async with http_client(server, timeout=10) as client:
        assert (await client.get("/v1/models")).status_code == 401
        for key in ("file-key-1", "env-key-1", "env-key-2"):
            headers = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/v1/models", headers=headers)).status_code == 200
        assert (await client.get("/health")).status_code == 200
    log = caplog.text
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
