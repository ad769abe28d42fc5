"""Two trio-streams servers sharing one Redis, tried over HTTP as a user would."""

from __future__ import annotations

import json
import re

import httpx
import trio

from tests.conftest import StartServer
from tests.helpers import (
    assert_error,
    chat_body,
    chat_text,
    event_offset,
    split_end,
    sse_data,
)
from tests.redis_fixtures import RedisServer
from tests.test_cli import start_process
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer
from trio_streams.stores.redis.commands import ORPHAN_MESSAGE

PROMPT = "tell me about shared streams"


async def two_servers(
    start_server: StartServer, redis: RedisServer, **options: object
) -> tuple[RunningServer, RunningServer]:
    a = await start_server(store=redis.url, **options)
    b = await start_server(store=redis.url, **options)
    return a, b


async def read_some(
    http: httpx.AsyncClient, url: str, conversation_id: str, at_least: int, **body: object
) -> bytes:
    """Start a stream on ``url``, keep its first ``at_least`` bytes, and drop the client."""
    received = b""
    async with http.stream(
        "POST",
        url + "/v1/chat/completions",
        json=chat_body(PROMPT, **body),
        headers={"X-Conversation-Id": conversation_id},
    ) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) >= at_least:
                break
    return received


async def test_a_stream_started_on_one_instance_resumes_and_is_found_on_the_other(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = await two_servers(start_server, redis_server)
    async with httpx.AsyncClient(timeout=10) as http:
        first = await read_some(http, a.url, "conv-1", 400, max_tokens=60)
        rest = await http.get(f"{b.url}/v1/stream/conv-1", params={"from": len(first)})
        assert rest.status_code == 200
        assert rest.headers["content-type"].startswith("text/event-stream")
        whole = (await http.get(f"{b.url}/v1/stream?conv_id=conv-1")).content
        assert first + rest.content == whole
        assert sse_data(whole)[-1] == "[DONE]"
        assert chat_text(whole) == "".join(answer_tokens(PROMPT)[:60])
        await read_some(http, b.url, "conv-1::other-model", 1, max_tokens=2)
        found = (
            await http.post(f"{a.url}/v1/streams/lookup", json={"conversation_ids": ["conv-1"]})
        ).json()
        assert [entry["conversation_id"] for entry in found] == ["conv-1", "conv-1::other-model"]
        assert found[0]["is_done"] is True and found[0]["total_bytes"] == len(whole)
        assert found[0]["completed_at"] >= found[0]["started_at"] > 0
        lost = await http.get(f"{b.url}/v1/stream/unknown")
        assert_error(lost, 404, "Stream not found or expired", "not_found_error")


async def test_delete_on_one_instance_stops_the_stream_served_by_the_other(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = await two_servers(start_server, redis_server, demo_prefill=60, ping_interval=0.05)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            a.url + "/v1/chat/completions",
            json=chat_body(PROMPT),
            headers={"X-Conversation-Id": "conv-del"},
        ) as response,
    ):
        chunks = response.aiter_raw()
        assert (await chunks.__anext__()).startswith(b": ping")  # live, in prefill
        assert a.store.local_session_count() == 1
        assert (await http.delete(f"{b.url}/v1/stream/conv-del")).status_code == 204
        with trio.fail_after(1):
            rest, reason = split_end(b"".join([chunk async for chunk in chunks]))
        assert chat_text(rest) == ""  # no token was ever produced
        assert reason == "stopped"  # the reader on the other instance is told why
        gone = await http.get(f"{a.url}/v1/stream/conv-del")
        assert_error(gone, 404, "Stream stopped", "not_found_error")
        assert gone.json()["error"]["reason"] == "stopped"  # from the tombstone
        assert (await http.delete(f"{a.url}/v1/stream/conv-del")).status_code == 204


async def test_replacement_on_one_instance_ends_the_old_stream_on_the_other(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = await two_servers(start_server, redis_server, demo_tps=50)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream(
            "POST",
            a.url + "/v1/chat/completions",
            json=chat_body("old prompt", max_tokens=1000),
            headers={"X-Conversation-Id": "conv-rep"},
        ) as response,
    ):
        chunks = response.aiter_raw()
        old = b""
        while not chat_text(old):  # until the old stream has produced a token
            old += await chunks.__anext__()
        new = await http.post(
            f"{b.url}/v1/chat/completions",
            json=chat_body("new prompt", max_tokens=5),
            headers={"X-Conversation-Id": "conv-rep"},
        )
        with trio.fail_after(2):
            old += b"".join([chunk async for chunk in chunks])
    old, reason = split_end(old)
    assert reason == "replaced"
    assert chat_text(old) and not old.endswith(b"[DONE]\n\n")
    assert chat_text(new.content) == "".join(answer_tokens("new prompt")[:5])
    replay = await httpx.AsyncClient(timeout=10).get(f"{a.url}/v1/stream/conv-rep")
    assert replay.content == new.content
    assert a.store.local_session_count() == 0


async def test_killing_the_producer_s_instance_ends_readers_with_an_error_event(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    lease = 0.5
    b = await start_server(store=redis_server.url, store_lease=lease)
    a = await start_process("--store", redis_server.url, "--store-lease", str(lease))
    try:
        a_url = await a.wait_for_url()
        async with httpx.AsyncClient(timeout=10) as http:
            first = await read_some(http, a_url, "conv-dead", 100, max_tokens=100_000)
            async with http.stream(
                "GET", f"{b.url}/v1/stream/conv-dead", params={"from": len(first)}
            ) as follower:
                chunks = follower.aiter_raw()
                rest = await chunks.__anext__()
                a.process.kill()  # no shutdown, no finalize: the instance is just gone
                with trio.fail_after(3 * lease + 2):
                    rest += b"".join([chunk async for chunk in chunks])
            found = await http.post(
                f"{b.url}/v1/streams/lookup", json={"conversation_ids": ["conv-dead"]}
            )
    finally:
        if a.process.returncode is None:
            a.process.kill()
        await a.process.wait()
    assert json.loads(sse_data(rest)[-1])["error"]["message"] == ORPHAN_MESSAGE
    # Stamped like every event: its id is the offset just after it, the end of the stream.
    generation = found.json()[0]["generation"]
    assert rest.endswith(b"\nid: %s-%d\n\n" % (generation.encode(), len(first) + len(rest)))
    assert found.json()[0]["is_done"] is True


async def test_an_instance_killed_between_flushes_loses_only_what_no_client_saw(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    """Redis stalls (SIGSTOP), so the producing instance's flushes wait while its producer
    goes on writing into its outbox; then the instance is killed. What it held unsent is
    lost, but no client ever had it: the stream on the other instance is every byte the
    killed instance's own client received, then the interruption event."""
    lease = 0.5
    b = await start_server(store=redis_server.url, store_lease=lease)
    a = await start_process(
        "--store", redis_server.url, "--store-lease", str(lease), "--demo-tps", "200"
    )
    try:
        a_url = await a.wait_for_url()
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream(
                "POST",
                a_url + "/v1/chat/completions",
                json=chat_body(PROMPT, max_tokens=100_000),
                headers={"X-Conversation-Id": "conv-cut"},
            ) as response,
        ):
            chunks = response.aiter_raw()
            seen = b""
            while len(seen) < 2000:
                seen += await chunks.__anext__()
            redis_server.pause()
            try:
                # The client keeps reading: it gets what Redis had acknowledged, no more.
                with trio.move_on_after(0.5):
                    async for chunk in chunks:
                        seen += chunk
                a.process.kill()  # with tokens written but not flushed
                await a.process.wait()
            finally:
                redis_server.resume()
        with trio.fail_after(3 * lease + 5):
            whole = (await httpx.AsyncClient(timeout=10).get(f"{b.url}/v1/stream/conv-cut")).content
    finally:
        if a.process.returncode is None:
            a.process.kill()
        await a.process.wait()
    assert whole.startswith(seen)  # nothing a client saw is missing
    rest = whole[len(seen) :]
    # After those bytes, at most what was already in Redis, then the interruption event.
    assert json.loads(sse_data(whole)[-1])["error"]["message"] == ORPHAN_MESSAGE
    assert re.search(rb"\nid: [0-9a-f]{16}-%d\n\n\Z" % len(whole), whole)
    tokens = chat_text(whole[: whole.rindex(b'data: {"error"')])
    assert tokens and "".join(answer_tokens(PROMPT)).startswith(tokens)
    assert sse_data(rest)[-1] == sse_data(whole)[-1]


async def test_redis_restart_mid_stream_loses_nothing(
    start_server: StartServer, persistent_redis_server: RedisServer
) -> None:
    redis = persistent_redis_server
    a, b = await two_servers(start_server, redis, demo_tps=100)
    async with httpx.AsyncClient(timeout=10) as http:
        first = await read_some(http, a.url, "conv-outage", 300, max_tokens=150)
        redis.stop()
        health = await http.get(f"{b.url}/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        unavailable = await http.get(f"{b.url}/v1/stream/conv-outage")
        assert_error(unavailable, 503, "Session store unavailable", "unavailable_error")
        lookup = await http.post(f"{b.url}/v1/streams/lookup", json={"conversation_ids": ["x"]})
        assert_error(lookup, 503, "Session store unavailable", "unavailable_error")
        await trio.sleep(0.3)  # the producer on A waits for Redis meanwhile
        redis.start()
        rest = await http.get(f"{b.url}/v1/stream/conv-outage", params={"from": len(first)})
        assert rest.status_code == 200
    whole = first + rest.content
    assert sse_data(whole)[-1] == "[DONE]"
    assert chat_text(whole) == "".join(answer_tokens(PROMPT)[:150])


async def test_last_event_id_resumes_on_the_other_instance(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = await two_servers(start_server, redis_server)
    async with httpx.AsyncClient(timeout=10) as http:
        whole = (
            await http.post(
                f"{a.url}/v1/chat/completions",
                json=chat_body(PROMPT, max_tokens=10),
                headers={"X-Conversation-Id": "conv-eid"},
            )
        ).content
        third = whole.split(b"\n\n")[2]  # the third event, ending with its id line
        event_id = third.rsplit(b"id: ", 1)[1].decode()
        resumed = await http.get(f"{b.url}/v1/stream/conv-eid", headers={"Last-Event-ID": event_id})
    offset = event_offset(event_id)
    assert resumed.content == whole[offset:]
    assert whole[:offset].endswith(third + b"\n\n")


async def test_api_keys_own_their_sessions_on_every_instance(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    a, b = await two_servers(start_server, redis_server, api_keys=("key-one", "key-two"))
    one = {"Authorization": "Bearer key-one"}
    two = {"Authorization": "Bearer key-two"}
    async with httpx.AsyncClient(timeout=10) as http:
        started = await http.post(
            f"{a.url}/v1/chat/completions",
            json=chat_body(PROMPT, max_tokens=5),
            headers={"X-Conversation-Id": "conv-key", **one},
        )
        assert started.status_code == 200
        other = await http.get(f"{b.url}/v1/stream/conv-key", headers=two)
        assert_error(other, 404, "Stream not found or expired", "not_found_error")
        found = await http.post(
            f"{b.url}/v1/streams/lookup", json={"conversation_ids": ["conv-key"]}, headers=two
        )
        assert found.json() == []
        assert (await http.delete(f"{b.url}/v1/stream/conv-key", headers=two)).status_code == 204
        taken = await http.post(
            f"{b.url}/v1/chat/completions",
            json=chat_body(PROMPT, max_tokens=5),
            headers={"X-Conversation-Id": "conv-key", **two},
        )
        assert_error(taken, 409, "Conversation id is in use by another API key", "conflict_error")
        mine = await http.get(f"{b.url}/v1/stream/conv-key", headers=one)
        assert mine.status_code == 200 and mine.content == started.content
