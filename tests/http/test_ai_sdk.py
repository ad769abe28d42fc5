"""``/api/chat``, the AI SDK's chat transport, over HTTP: the demo, an upstream, errors, keys.

The SDK itself drives these routes in ``test_ai_sdk_node.py``; here each rule is checked
on its own: what the model server receives, what the stream carries, what is refused.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from tests.conftest import StartServer
from tests.helpers import assert_error, chat_text, sse_data
from trio_streams.server import RunningServer
from trio_streams.testing.fake_upstream import FakeUpstream


def ui_request(chat_id: str = "chat-1", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "id": chat_id,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}],
        "trigger": "submit-message",
        "messageId": None,
        **extra,
    }


def parts(raw: bytes) -> list[Any]:
    return [data if data == "[DONE]" else json.loads(data) for data in sse_data(raw)]


def text_of(chunks: list[Any]) -> str:
    return "".join(
        chunk["delta"] for chunk in chunks if chunk != "[DONE]" and chunk["type"] == "text-delta"
    )


async def test_an_answer_is_a_ui_message_stream_of_the_session(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    response = await client.post("/api/chat", json=ui_request(max_tokens=6))
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-accel-buffering"] == "no"
    chunks = parts(response.content)
    types = [chunk if chunk == "[DONE]" else chunk["type"] for chunk in chunks]
    assert types[:3] == ["start", "start-step", "text-start"]
    assert types[-4:] == ["text-end", "finish-step", "finish", "[DONE]"]
    assert chunks[-2] == {"type": "finish", "finishReason": "length"}
    # The same session through the stream routes: the chat id is its conversation id.
    raw = await client.get("/v1/stream/chat-1")
    assert text_of(chunks) == chat_text(raw.content) and text_of(chunks)
    assert chunks[0]["messageId"] == json.loads(sse_data(raw.content)[0])["id"]


async def test_reconnect_replays_from_the_start_and_is_204_without_a_session(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/api/chat", json=ui_request("chat-2", max_tokens=5))
    again = await client.get("/api/chat/chat-2/stream")
    assert again.status_code == 200 and again.content == first.content
    missing = await client.get("/api/chat/never-started/stream")
    assert missing.status_code == 204 and missing.content == b""


async def test_stop_cancels_the_generation(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", "/api/chat", json=ui_request("chat-3", max_tokens=2000)
    ) as live:
        chunks = live.aiter_bytes()
        received = await anext(chunks)
        stopped = await client.post("/api/chat/chat-3/stop", json={})
        assert stopped.status_code == 200 and stopped.json() == {"success": True}
        rest = received + b"".join([chunk async for chunk in chunks])
    # The reader ends with the SDK's abort part, not a finish: the answer is not complete.
    assert parts(rest)[-1] == {"type": "abort", "reason": "stopped"}
    assert server.manager.producer_count == 0
    assert (await client.get("/api/chat/chat-3/stream")).status_code == 204
    # Stopping again, or a chat that never existed, is not an error.
    assert (await client.post("/api/chat/chat-3/stop")).status_code == 200
    assert (await client.post("/api/chat/other/stop")).status_code == 200


async def test_bad_requests_are_400_in_the_documented_shape(client: httpx.AsyncClient) -> None:
    bad = "invalid_request_error"
    assert_error(await client.post("/api/chat", content=b"{"), 400, "invalid body", bad)
    no_id = ui_request()
    del no_id["id"]
    assert_error(await client.post("/api/chat", json=no_id), 400, "'id' (the chat id)", bad)
    assert_error(
        await client.post("/api/chat", json=ui_request(messages=[])), 400, "'messages' must", bad
    )
    wrong_role = ui_request(messages=[{"role": "tool", "parts": []}])
    assert_error(await client.post("/api/chat", json=wrong_role), 400, "'messages[0].role'", bad)
    no_parts = ui_request(messages=[{"role": "user", "parts": "hi"}])
    assert_error(await client.post("/api/chat", json=no_parts), 400, "'messages[0].parts'", bad)
    trigger = ui_request(trigger="resume")
    assert_error(await client.post("/api/chat", json=trigger), 400, "'trigger' must", bad)
    # What the demo model refuses on /v1/chat/completions it refuses here too.
    assert_error(
        await client.post("/api/chat", json=ui_request(max_tokens=0)), 400, "'max_tokens'", bad
    )
    assert_error(
        await client.post("/api/chat", json=ui_request(id="a b")),
        400,
        "Invalid conversation id",
        bad,
    )


async def test_keys_apply_and_a_session_is_its_keys_alone(start_server: StartServer) -> None:
    server = await start_server(api_keys=("alice-key-0123456789", "bob-key-0123456789"))
    alice = {"Authorization": "Bearer alice-key-0123456789"}
    bob = {"Authorization": "Bearer bob-key-0123456789"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        refused = await http.post("/api/chat", json=ui_request("keyed", max_tokens=3))
        assert refused.status_code == 401
        started = await http.post(
            "/api/chat", json=ui_request("keyed", max_tokens=3), headers=alice
        )
        assert started.status_code == 200
        assert (await http.get("/api/chat/keyed/stream", headers=bob)).status_code == 204
        assert (await http.get("/api/chat/keyed/stream", headers=alice)).status_code == 200


async def test_through_an_upstream_messages_and_reasoning_are_translated(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-up",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    upstream.script.events = [
        chunk({"role": "assistant", "reasoning_content": "Think"}),
        chunk({"reasoning_content": "ing."}),
        chunk({"content": "An"}),
        chunk({"content": "swer"}, finish="stop"),
        b"data: [DONE]\n\n",
    ]
    upstream.script.piece_size = 7  # events cut anywhere on the wire
    proxy = await start_server(upstreams=(upstream.url,), ping_interval=0)
    history = [
        {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
        {
            "id": "u1",
            "role": "user",
            "parts": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        {
            "id": "a1",
            "role": "assistant",
            "parts": [
                {"type": "step-start"},
                {"type": "reasoning", "text": "hidden"},
                {"type": "text", "text": "Hello."},
            ],
        },
        {
            "id": "u2",
            "role": "user",
            "parts": [
                {"type": "text", "text": "What is this?"},
                {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AAAA"},
            ],
        },
    ]
    body = ui_request("up-1", messages=history, model="fake-model", temperature=0.5)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        response = await http.post("/api/chat", json=body)
    sent = json.loads(upstream.streams[-1].request.body)
    assert sent == {
        "model": "fake-model",
        "temperature": 0.5,
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
    }
    assert upstream.streams[-1].request.header("x-conversation-id") is None
    assert parts(response.content) == [
        {"type": "start", "messageId": "chatcmpl-up"},
        {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Think"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "ing."},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "An"},
        {"type": "text-delta", "id": "text-2", "delta": "swer"},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
        "[DONE]",
    ]


async def test_an_upstream_refusal_reaches_the_sdk_as_its_error(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.fail_status = 400
    proxy = await start_server(upstreams=(upstream.url,), ping_interval=0)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        refused = await http.post("/api/chat", json=ui_request("up-2", model="fake-model"))
        # The upstream's own answer, as /v1/chat/completions passes it on.
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "bad prompt"
        # Nothing to resume: the session of a refused request is gone.
        assert (await http.get("/api/chat/up-2/stream")).status_code == 204


async def test_a_producer_failure_ends_the_message_with_an_error_part(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.drop_after = 2
    proxy = await start_server(upstreams=(upstream.url,), ping_interval=0)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        with trio.fail_after(5):  # never a hung reader
            response = await http.post("/api/chat", json=ui_request("up-3", model="fake-model"))
    chunks = parts(response.content)
    assert [chunk["type"] for chunk in chunks[-2:]] == ["text-end", "error"]
    assert chunks[-1]["errorText"]


async def test_a_regenerate_aborts_the_old_answer_and_a_stale_stop_spares_the_new(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    async with client.stream(
        "POST", "/api/chat", json=ui_request("chat-4", max_tokens=2000)
    ) as old:
        old_generation = old.headers["x-stream-generation"]
        chunks = old.aiter_bytes()
        received = await anext(chunks)
        new = await client.post(
            "/api/chat", json=ui_request("chat-4", max_tokens=3, trigger="regenerate-message")
        )
        rest = received + b"".join([chunk async for chunk in chunks])
    assert parts(rest)[-1] == {"type": "abort", "reason": "replaced"}
    new_generation = new.headers["x-stream-generation"]
    assert new_generation != old_generation
    assert parts(new.content)[-1] == "[DONE]"
    # A stop naming the old generation arrives late: the new answer stays.
    late = await client.post("/api/chat/chat-4/stop", json={"activeStreamId": old_generation})
    assert late.json() == {"success": True}
    assert (await client.get("/api/chat/chat-4/stream")).content == new.content
    current = await client.post("/api/chat/chat-4/stop", json={"activeStreamId": new_generation})
    assert current.json() == {"success": True}
    assert (await client.get("/api/chat/chat-4/stream")).status_code == 204
