"""Background responses over raw HTTP: owners, failures, and the session they are."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.conftest import StartServer
from tests.helpers import assert_error
from tests.redis_fixtures import RedisServer
from tests.responses_events import llama_server_events
from tests.test_readme import DOCS, example, for_server
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings
from trio_streams.testing.fake_upstream import FakeUpstream

ALICE, BOB = "alice-key-0123", "bob-key-4567"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"model": "demo", "input": "hi", "background": True, **extra}
    response = await http.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def settled(http: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            result: dict[str, Any] = (await http.get(f"/v1/responses/{response_id}")).json()
            if result["status"] not in ("queued", "in_progress"):
                return result
            await trio.sleep(0.01)


async def test_a_response_belongs_to_the_key_that_created_it(start_server: StartServer) -> None:
    server = await start_server(api_keys=(ALICE, BOB), demo_tps=2000.0)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=bearer(ALICE)) as alice,
        httpx.AsyncClient(base_url=server.url, headers=bearer(BOB)) as bob,
    ):
        created = await create(alice, max_output_tokens=3)
        url = f"/v1/responses/{created['id']}"
        for response in (
            await bob.get(url),
            await bob.get(url, params={"stream": "true"}),
            await bob.post(url + "/cancel"),
        ):
            assert_error(response, 404, "No response found", "not_found_error")
        assert (await settled(alice, created["id"]))["status"] == "incomplete"
        assert (await alice.get(url, params={"stream": "true"})).status_code == 200


async def test_a_response_is_a_session(start_server: StartServer) -> None:
    server = await start_server(demo_tps=2000.0)
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await create(http, max_output_tokens=1000)
        response_id = created["id"]
        assert created["status"] == "queued" and created["background"] is True
        done = await settled(http, response_id)
        assert done["status"] == "completed"
        found = await http.post("/v1/streams/lookup", json={"conversation_ids": [response_id]})
        assert found.json()[0]["is_done"] is True
        raw = await http.get(f"/v1/stream/{response_id}")
        assert raw.content.startswith(b"event: response.created\ndata: ")
        replay = await http.get(
            f"/v1/responses/{response_id}", params={"stream": "true", "starting_after": "3"}
        )
        assert replay.status_code == 200 and b'"sequence_number":4}' in replay.content
        assert b'"sequence_number":3}' not in replay.content
        metrics = (await http.get("/metrics")).text
        assert "trio_streams_resumes_total 1.0" in metrics
        # A completed response keeps its status when cancelled: nothing was running.
        again = await http.post(f"/v1/responses/{response_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "completed"
        assert (await http.delete(f"/v1/stream/{response_id}")).status_code == 204
        gone = await http.get(f"/v1/responses/{response_id}")
        assert_error(gone, 404, "No response found", "not_found_error")
        # A conversation's session is no response, though it is a session too.
        chat = {"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 2}
        await http.post("/v1/chat/completions", json=chat, headers={"X-Conversation-Id": "c"})
        assert_error(await http.get("/v1/responses/c"), 404, "No response", "not_found_error")


async def test_bad_requests_are_400s(start_server: StartServer) -> None:
    server = await start_server()
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await create(http, max_output_tokens=2)
        url = f"/v1/responses/{created['id']}"
        bad_background = await http.post("/v1/responses", json={"input": "x", "background": 1})
        assert_error(bad_background, 400, "Invalid type for 'background'", "invalid_request_error")
        bad_stream = await http.get(url, params={"stream": "yes"})
        assert_error(bad_stream, 400, "Invalid 'stream'", "invalid_request_error")
        bad_tokens = {"input": "x", "background": True, "max_output_tokens": 0}
        bad_limit = await http.post("/v1/responses", json=bad_tokens)
        assert_error(bad_limit, 400, "'max_output_tokens'", "invalid_request_error")
        other_model = await http.post(
            "/v1/responses", json={"model": "gpt-x", "input": "x", "background": True}
        )
        assert other_model.status_code == 404
        assert other_model.json()["error"]["code"] == "model_not_found"


async def test_an_upstream_that_fails_makes_a_failed_response(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.fail_status = 400
    server = await start_server(upstreams=(upstream.url,))
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await create(http, model="fake-model")
        failed = await settled(http, created["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "bad prompt"}
    sent = upstream.streams[-1].request
    assert b'"background"' not in sent.body and b'"stream":true' in sent.body


async def test_an_upstream_cut_midway_makes_a_failed_response_with_its_output(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = llama_server_events(20)
    upstream.script.drop_after = 10
    server = await start_server(upstreams=(upstream.url,))
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await create(http, model="fake-model")
        failed = await settled(http, created["id"])
    assert failed["status"] == "failed"
    assert "lost mid-stream" in failed["error"]["message"]
    assert failed["output"][0]["content"][0]["text"] == " token0 token1 token2 token3 token4 token5"


async def test_the_docs_example_runs(examples_server: str, tmp_path: Path) -> None:
    code = for_server(example(DOCS / "responses.md", "responses"), examples_server)
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-c", code], cwd=tmp_path, capture_stdout=True,
            capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    rest, polled, cancelled = result.stdout.decode().splitlines()
    # Eight events were read before the cut: four of them were deltas.
    assert rest == "".join(answer_tokens("tell me about resumable streams")[4:256])
    status, length = polled.split()
    assert status in ("completed", "incomplete") and int(length) > 100
    assert cancelled == "cancelled"


async def test_a_shutdown_ends_a_shared_response_as_failed_not_cancelled(
    start_server: StartServer, nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    stop = trio.Event()
    settings = Settings(host="127.0.0.1", port=0, demo_tps=50.0, store=redis_server.url)
    producing: RunningServer = await nursery.start(partial(serve, settings, stop=stop))
    other = await start_server(store=redis_server.url)
    async with (
        httpx.AsyncClient(base_url=producing.url) as on_a,
        httpx.AsyncClient(base_url=other.url) as on_b,
    ):
        created = await create(on_a, max_output_tokens=1000)
        url = f"/v1/responses/{created['id']}"
        with trio.fail_after(10):
            async with on_b.stream("GET", url, params={"stream": "true"}) as events:
                async for line in events.aiter_lines():
                    if line == "event: response.output_text.delta":
                        break  # the answer is under way
        stop.set()  # the producing instance shuts down mid-answer
        ended = await settled(on_b, created["id"])
        raw = (await on_b.get(f"/v1/stream/{created['id']}")).content
    assert ended["status"] == "failed"
    # The instance that shut down ended its stream with the Redis store's interruption
    # event (readers elsewhere must not wait for a producer that is gone).
    assert ended["error"]["message"] == (
        "generation interrupted: the server instance producing it shut down"
    )
    assert ended["output"][0]["content"][0]["text"]
    assert b"response.cancelled" not in raw
