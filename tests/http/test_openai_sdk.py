"""The official OpenAI Python SDK as a client, as people will use it."""

from __future__ import annotations

import httpx
import openai
import pytest
import trio

from tests.conftest import StartServer
from tests.helpers import openai_sdk
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer


async def test_streaming_chat_through_the_sdk(server: RunningServer) -> None:
    def run() -> tuple[str, str | None]:
        stream = openai_sdk(server.url).chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "hello sdk"}],
            stream=True,
            max_tokens=12,
            extra_headers={"X-Conversation-Id": "sdk-1"},
        )
        text, finish = "", None
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        return text, finish

    text, finish = await trio.to_thread.run_sync(run)
    assert text == "".join(answer_tokens("hello sdk")[:12])
    assert finish == "length"
    assert server.manager.get("sdk-1") is not None


async def test_sdk_client_that_stops_reading_leaves_a_resumable_stream(
    start_server: StartServer,
) -> None:
    # 400 tokens at 500/s: the answer is still being written (0.8 s) when the SDK has
    # read its three chunks and left, and the replay below waits less for its end.
    server = await start_server(demo_tps=500)
    client = httpx.AsyncClient(base_url=server.url, timeout=10)

    def read_three_chunks_then_close() -> str:
        stream = openai_sdk(server.url).chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "walk away"}],
            stream=True,
            max_tokens=400,
            extra_headers={"X-Conversation-Id": "sdk-2"},
        )
        text = ""
        for index, chunk in enumerate(stream):
            text += chunk.choices[0].delta.content or ""
            if index == 3:
                break
        stream.close()
        return text

    partial_text = await trio.to_thread.run_sync(read_three_chunks_then_close)
    session = server.manager.get("sdk-2")
    assert session is not None and not session.is_done
    async with client:
        replay = await client.get("/v1/stream/sdk-2")  # follows the live session to its end
    assert session.is_done and not session.is_cancelled
    expected = "".join(answer_tokens("walk away")[:400])
    assert expected.startswith(partial_text) and partial_text
    assert b"data: [DONE]" in replay.content


async def test_non_streaming_models_and_errors_through_the_sdk(server: RunningServer) -> None:
    def run() -> tuple[str | None, list[str]]:
        client = openai_sdk(server.url)
        completion = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        models = [model.id for model in client.models.list()]
        return completion.choices[0].message.content, models

    content, models = await trio.to_thread.run_sync(run)
    assert content == "".join(answer_tokens("x")[:4])
    assert models == ["demo"]

    def bad_request() -> None:
        openai_sdk(server.url).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], max_tokens=0
        )

    with pytest.raises(openai.BadRequestError) as info:
        await trio.to_thread.run_sync(bad_request)
    assert info.value.status_code == 400
    assert "'max_tokens' must be a positive integer" in str(info.value)
