"""One trio-streams proxying to another that serves the demo model: a real second hop."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest
import trio

from tests.conftest import StartServer
from tests.helpers import chat_body, chat_text, openai_sdk, sse_data
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer


@pytest.fixture
async def chain(start_server: StartServer) -> tuple[RunningServer, RunningServer]:
    """(upstream serving the demo model, proxy in front of it: URL without /v1)."""
    demo = await start_server(demo_tps=100.0)
    proxy = await start_server(upstreams=(demo.url,), ping_interval=0)
    return demo, proxy


@pytest.fixture
async def client(chain: tuple[RunningServer, RunningServer]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chain[1].url, timeout=10) as http:
        yield http


async def test_resume_through_the_proxy_loses_and_repeats_nothing(
    chain: tuple[RunningServer, RunningServer], client: httpx.AsyncClient
) -> None:
    part = b""
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("two hops", max_tokens=60),
        headers={"X-Conversation-Id": "chain-1"},
    ) as response:
        async for chunk in response.aiter_raw():
            part += chunk
            if len(part) > 500:
                break
    rest = await client.get("/v1/stream/chain-1", params={"from": len(part)})
    whole = part + rest.content
    assert chat_text(whole) == "".join(answer_tokens("two hops")[:60])
    assert sse_data(whole)[-1] == "[DONE]"
    assert whole.count(b"\n\n") == len(sse_data(whole))  # whole events, nothing spliced
    assert chain[0].manager.get("chain-1") is None  # the id stays with the proxy


async def test_delete_on_the_proxy_stops_the_demo_model_upstream(
    chain: tuple[RunningServer, RunningServer], client: httpx.AsyncClient
) -> None:
    demo, proxy = chain
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("stop upstream", max_tokens=5000),
        headers={"X-Conversation-Id": "chain-2"},
    ) as response:
        async for _ in response.aiter_raw():
            break
    assert demo.manager.producer_count == 1
    assert (await client.delete("/v1/stream/chain-2")).status_code == 204
    with trio.fail_after(2):
        # The demo server sees its (anonymous) client leave and cancels its producer; that
        # happens in another server's tasks, so there is nothing here to wait on but it.
        while demo.manager.producer_count:  # noqa: ASYNC110
            await trio.sleep(0.005)
    assert proxy.manager.get("chain-2") is None


async def test_the_openai_sdk_through_the_proxy(
    chain: tuple[RunningServer, RunningServer],
) -> None:
    proxy = chain[1]

    def run() -> tuple[str, str | None, list[str]]:
        sdk = openai_sdk(proxy.url)
        stream = sdk.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "via proxy"}],
            stream=True,
            max_tokens=9,
            extra_headers={"X-Conversation-Id": "chain-sdk"},
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        whole = sdk.completions.create(model="demo", prompt="via proxy", max_tokens=4)
        return text, whole.choices[0].text, [model.id for model in sdk.models.list()]

    text, whole, models = await trio.to_thread.run_sync(run)
    assert text == "".join(answer_tokens("via proxy")[:9])
    assert whole == "".join(answer_tokens("via proxy")[:4])
    assert models == ["demo"]
    assert proxy.manager.get("chain-sdk") is not None

    def bad_request() -> None:
        sdk = openai_sdk(proxy.url)
        sdk.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x"}], max_tokens=0, stream=True
        )

    with pytest.raises(openai.BadRequestError) as info:  # the demo's 400, passed through
        await trio.to_thread.run_sync(bad_request)
    assert "'max_tokens' must be a positive integer" in str(info.value)
