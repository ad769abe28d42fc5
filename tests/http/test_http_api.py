"""Every row of SPEC §3 against a real Hypercorn server on 127.0.0.1."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import trio
import trio.testing

from tests.conftest import StartServer
from tests.helpers import (
    assert_error,
    chat_body,
    chat_text,
    ends_with_done,
    http_client,
    split_end,
    sse_data,
)
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer

pytestmark = pytest.mark.in_process

STREAM_HEADER_VALUES = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def assert_stream_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for name, value in STREAM_HEADER_VALUES.items():
        assert response.headers[name] == value


async def start_stream(
    client: httpx.AsyncClient,
    conversation_id: str,
    prompt: str = "tell me about streams",
    max_tokens: int = 16,
    **extra: object,
) -> bytes:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body(prompt, max_tokens=max_tokens, **extra),
        headers={"X-Conversation-Id": conversation_id},
    )
    assert_stream_headers(response)
    return response.content


async def read_some(
    client: httpx.AsyncClient, method: str, url: str, at_least: int, **kwargs: object
) -> bytes:
    """Open a stream, read at least ``at_least`` bytes, then drop the connection."""
    received = b""
    async with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        assert_stream_headers(response)
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) >= at_least:
                break
    return received


# -- completions ----------------------------------------------------------------------------


async def test_streaming_chat_completion_is_openai_shaped(client: httpx.AsyncClient) -> None:
    raw = await start_stream(client, "c-shape", prompt="why trio", max_tokens=7)
    events = sse_data(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len(chunks) == 1 + 7 + 1  # role, one token per event, finish
    assert chat_text(raw) == "".join(answer_tokens("why trio")[:7])


async def test_the_demo_text_is_deterministic_and_finishes_with_stop(
    client: httpx.AsyncClient,
) -> None:
    first = await client.post("/v1/chat/completions", json=chat_body("same", max_tokens=10_000))
    second = await client.post("/v1/chat/completions", json=chat_body("same", max_tokens=10_000))
    assert chat_text(first.content) == chat_text(second.content) == "".join(answer_tokens("same"))
    assert json.loads(sse_data(first.content)[-2])["choices"][0]["finish_reason"] == "stop"


async def test_streaming_text_completion(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/completions",
        json={"model": "demo", "prompt": "abc", "stream": True, "max_tokens": 4},
        headers={"x-conversation-id": "c-text"},  # header name is case-insensitive
    )
    assert_stream_headers(response)
    chunks = [json.loads(event) for event in sse_data(response.content)[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == "".join(
        answer_tokens("abc")[:4]
    )
    lookup = await client.post("/v1/streams/lookup", json={"conversation_ids": ["c-text"]})
    assert [item["conversation_id"] for item in lookup.json()] == ["c-text"]


async def test_non_streaming_completions(client: httpx.AsyncClient) -> None:
    chat = await client.post(
        "/v1/chat/completions", json=chat_body("hi", stream=False, max_tokens=3)
    )
    assert chat.status_code == 200
    body = chat.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "".join(answer_tokens("hi")[:3])
    assert body["usage"]["completion_tokens"] == 3
    text = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 2})
    assert text.json()["choices"][0]["text"] == "".join(answer_tokens("hi")[:2])


async def test_usage_chunk_when_asked(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json=chat_body("u", max_tokens=2, stream_options={"include_usage": True}),
    )
    usage_chunk = json.loads(sse_data(response.content)[-2])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 2


async def test_models_and_health(client: httpx.AsyncClient) -> None:
    models = await client.get("/v1/models")
    assert [model["id"] for model in models.json()["data"]] == ["demo"]
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/chat/completions", b"{not json", "invalid body"),
        ("/v1/chat/completions", b"[1, 2]", "invalid body"),
        ("/v1/chat/completions", b'{"stream": "yes", "messages": []}', "'stream' must be"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "'messages' must be"),
        ("/v1/chat/completions", b'{"messages": [], "max_tokens": 0}', "'max_tokens' must be"),
        ("/v1/chat/completions", b'{"messages": [], "max_tokens": 1.5}', "'max_tokens' must be"),
        (
            "/v1/chat/completions",
            b'{"messages": [], "stream": true, "sse_ping_interval": -1}',
            "'sse_ping_interval' must be",
        ),
        ("/v1/completions", b'{"prompt": 5}', "'prompt' must be"),
    ],
)
async def test_bad_completion_requests_get_400(
    client: httpx.AsyncClient, path: str, body: bytes, message: str
) -> None:
    response = await client.post(path, content=body, headers={"X-Conversation-Id": "bad"})
    assert_error(response, 400, message, "invalid_request_error")
    assert (
        await client.post("/v1/streams/lookup", json={"conversation_ids": ["bad"]})
    ).json() == []


async def test_invalid_conversation_id_header_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers={"X-Conversation-Id": "x" * 257}
    )
    assert_error(response, 400, "Invalid conversation id", "invalid_request_error")


# -- sessions over HTTP --------------------------------------------------------------------


async def test_get_replays_the_exact_bytes_from_any_offset(client: httpx.AsyncClient) -> None:
    full = await start_stream(client, "c-replay", max_tokens=20)
    for offset in (0, 1, 137, len(full) - 1, len(full)):
        response = await client.get("/v1/stream/c-replay", params={"from": offset})
        assert_stream_headers(response)
        assert response.content == full[offset:]
    omitted = await client.get("/v1/stream/c-replay")
    assert omitted.content == full
    by_query = await client.get("/v1/stream", params={"conv_id": "c-replay", "from": 10})
    assert by_query.content == full[10:]


async def test_generation_continues_after_the_client_disconnects_and_resumes_exactly(
    start_server: StartServer,
) -> None:
    server = await start_server(demo_tps=100)
    async with http_client(server, timeout=10) as client:
        received = await read_some(
            client,
            "POST",
            "/v1/chat/completions",
            at_least=600,
            json=chat_body("resume me", max_tokens=60),
            headers={"X-Conversation-Id": "c-resume"},
        )
        session = server.manager.get("c-resume")
        assert session is not None and not session.is_done
        rest = await client.get("/v1/stream/c-resume", params={"from": len(received)})
        assert_stream_headers(rest)
        whole = received + rest.content
        assert chat_text(whole) == "".join(answer_tokens("resume me")[:60])
        assert ends_with_done(whole)
        assert session.is_done and not session.is_cancelled
        info = (
            await client.post("/v1/streams/lookup", json={"conversation_ids": ["c-resume"]})
        ).json()
        assert info[0]["is_done"] is True and info[0]["total_bytes"] == len(whole)


async def follow_in_background(
    nursery: trio.Nursery,
    client: httpx.AsyncClient,
    conversation_id: str,
    results: dict[str, bytes],
    prompt: str = "p",
    max_tokens: int = 10_000,
) -> None:
    """Start a streaming completion; return once the session exists (its headers arrived).

    The response is read to its end in the background into ``results[conversation_id]``.
    """
    accepted = trio.Event()

    async def run() -> None:
        async with client.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body(prompt, max_tokens=max_tokens),
            headers={"X-Conversation-Id": conversation_id},
        ) as response:
            assert_stream_headers(response)
            accepted.set()
            results[conversation_id] = b"".join([chunk async for chunk in response.aiter_raw()])

    nursery.start_soon(run)
    await accepted.wait()


async def test_a_reader_that_disconnects_leaves_the_generation_alone(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    results: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:
        await follow_in_background(nursery, client, "c-keep", results, max_tokens=100)
        await read_some(client, "GET", "/v1/stream/c-keep", at_least=1)
    session = server.manager.get("c-keep")
    assert session is not None and session.is_done and not session.is_cancelled
    assert ends_with_done(results["c-keep"])


async def test_plain_stream_without_id_is_cancelled_when_its_client_leaves(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    assert server.manager.producer_count == 0
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat_body(max_tokens=10_000)
    ) as response:
        assert_stream_headers(response)
        async for _ in response.aiter_raw():
            assert server.manager.producer_count == 1
            break
    with trio.fail_after(2):
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert server.manager.producer_count == 0
    assert len(server.manager) == 0  # it never had a session


async def test_lookup_reports_live_and_finished_sessions_and_variants(
    client: httpx.AsyncClient,
) -> None:
    await start_stream(client, "conv::org/model:Q8_0", max_tokens=2)
    await start_stream(client, "conv", max_tokens=2)
    await start_stream(client, "conversation", max_tokens=2)
    response = await client.post(
        "/v1/streams/lookup", json={"conversation_ids": ["conv", 5, "", None, "unknown"]}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    items = response.json()
    assert sorted(item["conversation_id"] for item in items) == ["conv", "conv::org/model:Q8_0"]
    for item in items:
        assert set(item) == {
            "conversation_id",
            "is_done",
            "total_bytes",
            "started_at",
            "completed_at",
            "generation",
            "dropped_prefix",
        }
        assert item["is_done"] is True and item["completed_at"] >= item["started_at"] > 0
        assert re.fullmatch("[0-9a-f]{16}", item["generation"]) and item["dropped_prefix"] == 0


@pytest.mark.parametrize("body", [b"{}", b'{"conversation_ids": "conv"}', b"[]", b"42", b"null"])
async def test_lookup_without_an_id_array_is_an_empty_list(
    client: httpx.AsyncClient, body: bytes
) -> None:
    await start_stream(client, "conv", max_tokens=1)
    response = await client.post("/v1/streams/lookup", content=body)
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe"])
async def test_lookup_with_a_body_that_is_not_json_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/v1/streams/lookup", content=body)
    assert_error(response, 400, "invalid body", "invalid_request_error")


async def test_unknown_stream_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/v1/stream/nope"),
        await client.get("/v1/stream", params={"conv_id": "nope"}),
    ):
        assert_error(response, 404, "Stream not found or expired", "not_found_error")


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "+3", " 3", "1_0", "٣", "0x10"])
async def test_invalid_from_is_400(client: httpx.AsyncClient, value: str) -> None:
    await start_stream(client, "c-from", max_tokens=1)
    response = await client.get("/v1/stream/c-from", params={"from": value})
    assert_error(response, 400, "Invalid 'from' offset", "invalid_request_error")


async def test_from_beyond_the_end_of_a_finished_stream_is_400(client: httpx.AsyncClient) -> None:
    full = await start_stream(client, "c-end", max_tokens=1)
    at_end = await client.get("/v1/stream/c-end", params={"from": len(full)})
    assert at_end.status_code == 200 and at_end.content == b""
    beyond = await client.get("/v1/stream/c-end", params={"from": len(full) + 100})
    message = f"Invalid 'from' offset: {len(full) + 100} is beyond the end of the finished stream"
    assert_error(beyond, 400, message, "invalid_request_error")
    absurd = await client.get("/v1/stream/c-end", params={"from": "9" * 26})
    assert_error(absurd, 400, "Invalid 'from' offset: out of range", "invalid_request_error")
    by_id = await client.get("/v1/stream/c-end", headers={"Last-Event-ID": "9" * 26})
    assert_error(by_id, 400, "Invalid 'Last-Event-ID'", "invalid_request_error")


async def test_lost_offset_is_400(start_server: StartServer) -> None:
    server = await start_server(session_max_bytes=1000)
    async with http_client(server, timeout=10) as client:
        tail = await start_stream(client, "c-lost", max_tokens=50)
        info = (
            await client.post("/v1/streams/lookup", json={"conversation_ids": ["c-lost"]})
        ).json()
        total = info[0]["total_bytes"]
        assert len(tail) == total > 1000  # a reader that keeps up gets everything
        dropped = total - 1000
        lost = await client.get("/v1/stream/c-lost", params={"from": dropped - 1})
        assert_error(lost, 400, "Stream offset lost, please restart", "invalid_request_error")
        kept = await client.get("/v1/stream/c-lost", params={"from": dropped})
        assert kept.status_code == 200 and kept.content == tail[dropped:]


@pytest.mark.parametrize(
    "path", ["/v1/stream/", "/v1/stream", "/v1/stream?conv_id=", "/v1/stream?from=3"]
)
async def test_missing_conversation_id_is_400(client: httpx.AsyncClient, path: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, path)
        assert_error(response, 400, "Missing conversation id in path", "invalid_request_error")


async def test_path_ids_are_percent_decoded_and_may_contain_slashes(
    client: httpx.AsyncClient,
) -> None:
    full = await start_stream(client, "conv::org/m:Q8_0", max_tokens=2)
    for path in ("/v1/stream/conv%3A%3Aorg%2Fm%3AQ8_0", "/v1/stream/conv::org/m:Q8_0"):
        response = await client.get(path)
        assert response.status_code == 200 and response.content == full
    by_query = await client.get("/v1/stream", params={"conv_id": "conv::org/m:Q8_0"})
    assert by_query.content == full
    deleted = await client.delete("/v1/stream/conv%3A%3Aorg%2Fm%3AQ8_0")
    assert deleted.status_code == 204
    assert (
        await client.get("/v1/stream", params={"conv_id": "conv::org/m:Q8_0"})
    ).status_code == 404


async def test_delete_is_idempotent_204_and_ends_readers(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    assert (await client.delete("/v1/stream/never-existed")).status_code == 204
    results: dict[str, bytes] = {}

    async def follower() -> None:
        response = await client.get("/v1/stream/c-del")
        results["follow"] = response.content

    async with trio.open_nursery() as nursery:
        await follow_in_background(nursery, client, "c-del", results)
        session = server.manager.get("c-del")
        nursery.start_soon(follower)
        await trio.sleep(0.2)
        with trio.fail_after(2):  # both readers must end
            deleted = await client.delete("/v1/stream", params={"conv_id": "c-del"})
    assert deleted.status_code == 204 and deleted.content == b""
    assert session is not None and session.is_cancelled and session.is_done
    assert results["c-del"] and results["follow"]
    assert not ends_with_done(results["c-del"])
    assert (await client.get("/v1/stream/c-del")).status_code == 404
    assert (await client.delete("/v1/stream/c-del")).status_code == 204


async def test_delete_before_the_first_token_cancels_the_producer(
    start_server: StartServer,
) -> None:
    server = await start_server(demo_prefill=30, ping_interval=0.05)
    async with (
        http_client(server, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body(),
            headers={"X-Conversation-Id": "c-prefill"},
        ) as response,
    ):
        assert_stream_headers(response)
        chunks = response.aiter_raw()
        first = await chunks.__anext__()  # a keep-alive: the session exists during prefill
        assert first.startswith(b": ping\n\n")
        found = await client.post("/v1/streams/lookup", json={"conversation_ids": ["c-prefill"]})
        assert found.json()[0]["is_done"] is False
        session = server.manager.get("c-prefill")
        assert (await client.delete("/v1/stream/c-prefill")).status_code == 204
        with trio.fail_after(2):
            rest, reason = split_end(b"".join([chunk async for chunk in chunks]))
    assert set(sse_data(first + rest)) == set()  # nothing but pings: no token was produced
    assert reason == "stopped"  # and the reader was told why it ended
    assert session is not None and session.is_cancelled and session.is_done
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert server.manager.producer_count == 0


async def test_replacement_ends_the_old_stream_and_takes_the_id(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    results: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:
        await follow_in_background(nursery, client, "c-rep", results, "old prompt")
        old = server.manager.get("c-rep")
        await trio.sleep(0.2)
        with trio.fail_after(5):
            new_raw = await start_stream(client, "c-rep", "new prompt", 5)
    assert old is not None and old.is_cancelled and old.is_done
    old_raw, reason = split_end(results["c-rep"])
    assert reason == "replaced"
    assert chat_text(old_raw) and not ends_with_done(old_raw)
    assert chat_text(new_raw) == "".join(answer_tokens("new prompt")[:5])
    replay = await client.get("/v1/stream/c-rep")
    assert replay.content == new_raw


async def test_keep_alive_while_idle_per_request(client: httpx.AsyncClient) -> None:
    # The demo model at 200 tokens/s never idles 5 s; a tiny per-request interval shows pings
    # are written into the log, so offsets stay identical for every reader.
    raw = await start_stream(client, "c-ping", max_tokens=3, sse_ping_interval=0.001)
    replay = await client.get("/v1/stream/c-ping")
    assert replay.content == raw
    assert len(sse_data(raw)) == 1 + 3 + 1 + 1


async def test_unknown_route_and_wrong_method_are_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nowhere"), 404, "", "not_found_error")
    assert_error(await client.put("/v1/stream/x"), 405, "", "invalid_request_error")


async def test_oversized_body_is_413_json(start_server: StartServer) -> None:
    server = await start_server(max_body_bytes=1000)
    async with http_client(server) as client:
        response = await client.post("/v1/chat/completions", content=b"{" + b" " * 2000 + b"}")
    assert_error(response, 413, "", "invalid_request_error")
