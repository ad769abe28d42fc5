"""The AI SDK's own chat (npm ``ai``, under Node) against a real server, on both stores.

``tests/js/ai-sdk/chat.mjs`` uses the SDK's ``AbstractChat`` (what ``useChat`` wraps) and
its ``DefaultChatTransport`` unchanged: it sends a message, aborts or stops mid-answer, and
resumes through the SDK's reconnect call. The answer it ends with is compared here with
the session's own bytes, read as OpenAI chunks from ``/v1/stream``.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import StartServer, start_on_store
from tests.helpers import chat_text
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer

CHECK = Path(__file__).parents[1] / "js" / "ai-sdk"
TPS = 150.0


@pytest.fixture(scope="session")
def node_check() -> Path:
    """The check script with its pinned ``ai`` package installed (``npm ci``, once)."""
    npm = shutil.which("npm")
    assert npm is not None and shutil.which("node"), "Node.js and npm are needed for this test"
    # Under pytest-xdist each worker has its own session: one installs, the others wait.
    with (CHECK / "package.json").open() as package:
        fcntl.flock(package, fcntl.LOCK_EX)
        if not (CHECK / "node_modules" / "ai").is_dir():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CHECK, check=True
            )
    return CHECK / "chat.mjs"


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, start_server: StartServer) -> RunningServer:
    # Slow enough that the SDK can act in the middle of an answer: it stops after 20
    # characters (about 4 tokens, polled every 5 ms), and the answer has 120 tokens (0.8 s).
    return await start_on_store(request, start_server, demo_tps=TPS)


async def run_chat(script: Path, server: RunningServer, chat_id: str, scenario: str) -> Any:
    node = shutil.which("node")
    assert node is not None
    result = await trio.run_process(
        [node, str(script), server.url, chat_id, scenario], capture_stdout=True, check=False
    )
    assert result.returncode == 0, result
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


async def whole_answer(server: RunningServer, chat_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        raw = await http.get(f"/v1/stream/{chat_id}")
    assert raw.status_code == 200
    return chat_text(raw.content)


async def test_abort_then_resume_through_the_sdk_gives_the_whole_answer_once(
    server: RunningServer, node_check: Path
) -> None:
    outcome = await run_chat(node_check, server, "sdk-resume", "resume")
    answer = await whole_answer(server, "sdk-resume")
    assert outcome["status"] == "ready", outcome
    user, assistant = outcome["messages"]  # the resumed answer replaced the cut one
    assert user["role"] == "user" and assistant["role"] == "assistant"
    assert outcome["partial"] and answer.startswith(outcome["partial"])
    assert len(outcome["partial"]) < len(answer)
    assert assistant["text"] == answer
    assert assistant["id"].startswith("chatcmpl-")


async def test_a_reload_after_the_answer_finished_replays_it(
    server: RunningServer, node_check: Path
) -> None:
    await run_chat(node_check, server, "sdk-replay", "resume")
    outcome = await run_chat(node_check, server, "sdk-replay", "replay")
    assert outcome["status"] == "ready", outcome
    assert [message["role"] for message in outcome["messages"]] == ["user", "assistant"]
    assert outcome["messages"][1]["text"] == await whole_answer(server, "sdk-replay")


async def test_the_stop_endpoint_stops_the_model_and_nothing_resumes(
    server: RunningServer, node_check: Path
) -> None:
    outcome = await run_chat(node_check, server, "sdk-stop", "stop")
    assert outcome["stopStatus"] == 200 and outcome["stopBody"] == {"success": True}
    # The reconnect found no stream (204): the chat keeps what it had, nothing is added.
    assert outcome["status"] == "ready"
    assert len(outcome["messages"]) == outcome["messagesBefore"] == 2
    assert outcome["messages"][1]["text"] == outcome["partial"]
    whole = "".join(answer_tokens("tell me about resumable streams")[:120])
    assert whole.startswith(outcome["partial"]) and len(outcome["partial"]) < len(whole)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/v1/stream/sdk-stop")).status_code == 404
    assert server.store.local_session_count() == 0  # no producer left running
