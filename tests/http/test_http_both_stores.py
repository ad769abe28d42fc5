"""The stream endpoints of SPEC §3 over HTTP, the same with either store behind them."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import StartServer, start_on_store
from tests.helpers import assert_error, chat_body, ends_with_done, event_offset
from trio_streams.server import RunningServer

ODD_ID = "conv::org/model:Q8_0"


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, start_server: StartServer) -> RunningServer:
    return await start_on_store(request, start_server, session_max_bytes=4000)


async def start(http: httpx.AsyncClient, conversation_id: str, max_tokens: int = 8) -> bytes:
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body(max_tokens=max_tokens),
        headers={"X-Conversation-Id": conversation_id},
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    return response.content


async def test_path_and_query_forms_read_from_an_offset(http: httpx.AsyncClient) -> None:
    whole = await start(http, ODD_ID)
    encoded = "conv%3A%3Aorg%2Fmodel%3AQ8_0"
    for url in (f"/v1/stream/{ODD_ID}", f"/v1/stream/{encoded}", "/v1/stream"):
        params = {"from": "5"} if url != "/v1/stream" else {"conv_id": ODD_ID, "from": "5"}
        response = await http.get(url, params=params)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.content == whole[5:]
    assert (await http.get(f"/v1/stream/{ODD_ID}", params={"from": ""})).content == whole
    end = await http.get(f"/v1/stream/{ODD_ID}", params={"from": str(len(whole))})
    assert end.status_code == 200 and end.content == b""
    beyond = await http.get(f"/v1/stream/{ODD_ID}", params={"from": str(len(whole) + 1)})
    assert_error(beyond, 400, "Invalid 'from' offset", "invalid_request_error")


async def test_errors_have_the_documented_shape(http: httpx.AsyncClient) -> None:
    await start(http, "c-err")
    assert_error(
        await http.get("/v1/stream/nope"), 404, "Stream not found or expired", "not_found_error"
    )
    for bad in ("-1", "+3", "1.5", "0x10"):
        response = await http.get("/v1/stream/c-err", params={"from": bad})
        assert_error(response, 400, "Invalid 'from' offset", "invalid_request_error")
    assert_error(
        await http.get("/v1/stream"), 400, "Missing conversation id", "invalid_request_error"
    )
    assert_error(
        await http.delete("/v1/stream/"), 400, "Missing conversation id", "invalid_request_error"
    )
    bad_body = await http.post("/v1/streams/lookup", content=b"oops")
    assert_error(bad_body, 400, "invalid body", "invalid_request_error")


async def test_offsets_below_the_cap_are_lost(http: httpx.AsyncClient) -> None:
    whole = await start(http, "c-cap", max_tokens=100)  # far more than the 4000-byte cap
    found = (await http.post("/v1/streams/lookup", json={"conversation_ids": ["c-cap"]})).json()
    total = found[0]["total_bytes"]
    assert total > 4000 and found[0]["is_done"]
    kept = (await http.get("/v1/stream/c-cap", params={"from": str(total - 4000)})).content
    # The live reader above may itself have been overtaken by the cap on a busy machine
    # (its answer then ends early), so the kept bytes are checked by their own event ids:
    # each names the offset just after its event, and the last is the end.
    assert len(kept) == 4000 and ends_with_done(kept)
    ids = re.finditer(rb"^id: ([^\n]*)\n\n", kept, re.MULTILINE)
    ends = [(event_offset(match[1]), total - 4000 + match.end()) for match in ids]
    assert ends and all(named == actual for named, actual in ends), ends
    assert ends[-1][0] == total
    if len(whole) == total:  # the live reader kept up: the same bytes
        assert whole[-4000:] == kept
    lost = await http.get("/v1/stream/c-cap", params={"from": str(total - 4001)})
    assert_error(lost, 400, "Stream offset lost, please restart", "invalid_request_error")


async def test_lookup_and_delete(http: httpx.AsyncClient) -> None:
    await start(http, "base")
    await start(http, "base::m1")
    body = {"conversation_ids": ["base", 7, "", None, "missing"]}
    found = (await http.post("/v1/streams/lookup", json=body)).json()
    assert [entry["conversation_id"] for entry in found] == ["base", "base::m1"]
    assert set(found[0]) == {
        "conversation_id", "is_done", "total_bytes", "started_at", "completed_at",
        "generation", "dropped_prefix",
    }  # fmt: skip
    assert (await http.post("/v1/streams/lookup", json={"other": 1})).json() == []
    assert (await http.delete("/v1/stream?conv_id=base::m1")).status_code == 204
    assert (await http.delete("/v1/stream/base::m1")).status_code == 204  # idempotent
    found = (await http.post("/v1/streams/lookup", json={"conversation_ids": ["base"]})).json()
    assert [entry["conversation_id"] for entry in found] == ["base"]
    stopped = await http.get("/v1/stream/base::m1")
    assert_error(stopped, 404, "Stream stopped", "not_found_error")
    assert stopped.json()["error"]["reason"] == "stopped"


async def test_health(http: httpx.AsyncClient) -> None:
    health = await http.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "ok", "sessions": 0}
