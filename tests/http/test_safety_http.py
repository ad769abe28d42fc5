"""Limits, input validation, metrics and access logs over real Hypercorn."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import StartServer
from tests.helpers import assert_error, chat_body, http_client
from trio_streams.core.redact import redact
from trio_streams.server import RunningServer

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process


async def start(client: httpx.AsyncClient, cid: str, max_tokens: int = 4) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions",
        json=chat_body(max_tokens=max_tokens),
        headers={"X-Conversation-Id": cid},
    )


# -- limits ---------------------------------------------------------------------------------


async def test_a_full_server_answers_429_json_with_retry_after(start_server: StartServer) -> None:
    # Budget for exactly two running streams; slow producers keep both running.
    server = await start_server(
        demo_tps=5.0, session_max_bytes=64 * 1024, max_total_bytes=128 * 1024
    )
    async with (
        http_client(server, timeout=10) as client,
        trio.open_nursery() as nursery,
    ):
        for cid in ("a", "b"):
            nursery.start_soon(start, client, cid, 1000)
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # both streams are running
        assert server.manager.producer_count == 2
        refused = await start(client, "c")
        assert_error(refused, 429, "Server is at capacity", "rate_limit_error")
        assert int(refused.headers["retry-after"]) >= 1
        anonymous = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
        assert anonymous.status_code == 429
        # The running streams are untouched; stopping one makes room at once.
        assert server.manager.get("a") is not None and server.manager.get("b") is not None
        assert (await client.delete("/v1/stream/a")).status_code == 204
        assert (await start(client, "c")).status_code == 200
        nursery.cancel_scope.cancel()


async def test_finished_sessions_make_room_for_new_ones(start_server: StartServer) -> None:
    server = await start_server(max_sessions=3)
    async with http_client(server, timeout=10) as client:
        for index in range(10):
            assert (await start(client, f"s{index}")).status_code == 200
            await trio.sleep(0.01)  # let the producer's task finish the session
        assert len(server.manager) == 3
        assert [server.manager.get(f"s{i}") is not None for i in range(10)] == [False] * 7 + [
            True
        ] * 3
        assert (await client.get("/v1/stream/s0")).status_code == 404


# -- validation -----------------------------------------------------------------------------


async def test_lookup_is_limited_in_ids_and_ignores_invalid_ones(
    start_server: StartServer,
) -> None:
    server = await start_server(max_lookup_ids=5)
    async with http_client(server, timeout=10) as client:
        await start(client, "real")
        ok = await client.post(
            "/v1/streams/lookup", json={"conversation_ids": ["real", "x" * 300, "a b", 7, ""]}
        )
        assert [entry["conversation_id"] for entry in ok.json()] == ["real"]
        too_many = await client.post("/v1/streams/lookup", json={"conversation_ids": ["real"] * 6})
        assert_error(too_many, 400, "Too many conversation ids: at most 5", "invalid_request_error")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "message"),
    [
        ("GET", "/v1/stream/" + "x" * 257, {}, 400, "Invalid conversation id: longer than 256"),
        ("GET", "/v1/stream/a%09b", {}, 400, "Invalid conversation id: only visible ASCII"),
        ("DELETE", "/v1/stream/a%20b", {}, 400, "Invalid conversation id"),
        ("GET", "/v1/stream?conv_id=%C3%A9", {}, 400, "Invalid conversation id"),
        ("GET", "/v1/stream/x?from=99999999999999999999999999", {}, 400, "Invalid 'from' offset"),
        ("POST", "/v1/streams/lookup", {"content": b"\xff\xfe"}, 400, "invalid body"),
        ("POST", "/v1/streams/lookup", {"content": b"[" * 100_000}, 400, "invalid body"),
        ("POST", "/v1/chat/completions", {"content": b"null"}, 400, "invalid body"),
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [], "stream": True, "sse_ping_interval": 1e-9}},
            400,
            "'sse_ping_interval' must be 0 or at least",
        ),
        (
            "POST",
            "/v1/chat/completions",
            {"json": chat_body(), "headers": {"X-Conversation-Id": "y" * 257}},
            400,
            "Invalid conversation id",
        ),
        ("POST", "/v1/completions", {"content": b"{" + b" " * 2_000_000 + b"}"}, 413, ""),
    ],
)
async def test_malformed_input_gets_the_documented_error(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    message: str,
) -> None:
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    error_type = {404: "not_found_error"}.get(status, "invalid_request_error")
    assert_error(response, status, message, error_type)


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/streams/lookup")
    assert_error(response, 405, "", "invalid_request_error")
    assert response.headers["allow"] == "OPTIONS, POST"


# -- metrics --------------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_what_happened(start_server: StartServer) -> None:
    server = await start_server(session_max_bytes=2000, demo_tps=50.0)
    async with http_client(server, timeout=10) as client:
        done = await start(client, "m-done", max_tokens=30)  # > 2000 bytes: prefix dropped
        assert (await client.get("/v1/stream/m-done?from=1")).status_code == 400  # lost
        assert (await client.get(f"/v1/stream/m-done?from={len(done.content) - 10}")).is_success
        async with trio.open_nursery() as nursery:
            nursery.start_soon(start, client, "m-live", 1000)
            await trio.sleep(0.2)
            assert server.manager.get("m-live") is not None
            response = await client.get("/metrics")
            assert response.headers["content-type"].startswith("text/plain")
            live = scrape(response.text)
            await client.delete("/v1/stream/m-live")
        after = scrape((await client.get("/metrics")).text)

    assert live[("trio_streams_sessions", (("state", "live"),))] == 1
    assert live[("trio_streams_sessions", (("state", "finished"),))] == 1
    assert live[("trio_streams_producers", ())] == 1
    assert live[("trio_streams_readers", ())] == 1  # the response of the live stream
    assert 0 < live[("trio_streams_buffered_bytes", ())] <= 4000
    assert live[("trio_streams_reserved_bytes", ())] >= live[("trio_streams_buffered_bytes", ())]
    assert after[("trio_streams_resumes_total", ())] == 1
    assert after[("trio_streams_lost_offsets_total", ())] == 1
    assert after[("trio_streams_cancels_total", ())] == 1
    assert after[("trio_streams_sessions", (("state", "live"),))] == 0
    assert after[("trio_streams_evictions_total", (("reason", "ttl"),))] == 0
    # The live reader of m-live observed the latency of each token it followed.
    assert after[("trio_streams_append_to_read_seconds_count", ())] >= 5
    assert after[("trio_streams_append_to_read_seconds_sum", ())] < 5


@pytest.mark.in_process(False)  # two servers, one client: real URLs
async def test_two_apps_in_one_process_keep_separate_metrics(
    start_server: StartServer,
) -> None:
    first, second = await start_server(), await start_server()
    async with httpx.AsyncClient(timeout=10) as client:
        await client.post(
            f"{first.url}/v1/chat/completions",
            json=chat_body(max_tokens=2),
            headers={"X-Conversation-Id": "only-first"},
        )
        await client.get(f"{first.url}/v1/stream/only-first?from=3")
        one = scrape((await client.get(f"{first.url}/metrics")).text)
        two = scrape((await client.get(f"{second.url}/metrics")).text)
    assert one[("trio_streams_resumes_total", ())] == 1
    assert two[("trio_streams_resumes_total", ())] == 0


# -- access logs -----------------------------------------------------------------------------


async def test_access_log_is_one_json_line_per_request_without_ids(
    server: RunningServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "very-secret-conversation/with::variant"
    with caplog.at_level(logging.INFO):
        streamed = await start(client, secret)
        await client.get(f"/v1/stream/{secret}?from=5")
        await client.delete("/v1/stream", params={"conv_id": secret})
        await client.get("/v1/models")
        await trio.testing.wait_all_tasks_blocked()  # the server logs once its reply ended
    server_records = [r for r in caplog.records if r.name.startswith(("trio_streams", "hyper"))]
    assert server_records
    for record in server_records:
        assert secret not in record.getMessage()
        assert "very-secret" not in record.getMessage()
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "trio_streams.access"]
    assert [(line["method"], line["status"]) for line in lines] == [
        ("POST", 200),
        ("GET", 200),
        ("DELETE", 204),
        ("GET", 200),
    ]
    post, get, delete, models = lines
    assert post["path"] == "/v1/chat/completions" and post["bytes"] == len(streamed.content)
    assert get["path"] == f"/v1/stream/{redact(secret)}" and get["from"] == "5"
    assert get["bytes"] == len(streamed.content) - 5
    assert delete["conv_id"] == redact(secret) and delete["path"] == "/v1/stream"
    assert models["duration_ms"] >= 0 and models["client"] == "127.0.0.1"


@pytest.mark.in_process(False)  # a real client's socket closing mid-stream, in real time
async def test_access_log_counts_the_bytes_of_a_stream_its_client_left(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Stream bodies bypass the access log's counting wrapper (http/stream_transport.py):
    # their bytes reach the log's tally when the body ends, however it ends.
    server = await start_server(demo_tps=50.0)
    received = 0
    async with httpx.AsyncClient(base_url=server.url) as client:
        with caplog.at_level(logging.INFO):
            body = chat_body(max_tokens=10_000)
            headers = {"X-Conversation-Id": "left-early"}
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > 200:
                        break  # the client leaves mid-stream
            with trio.fail_after(5):  # the server logs once it has seen the client go
                while not any(r.name == "trio_streams.access" for r in caplog.records):  # noqa: ASYNC110
                    await trio.sleep(0.05)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "trio_streams.access"]
    (post,) = lines
    assert post["status"] == 200 and post["bytes"] >= received > 200
