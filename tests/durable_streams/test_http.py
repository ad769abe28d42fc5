"""``/ds`` over HTTP, in-process (the test kit): what the conformance suite does not
check, or checks only loosely: keys and owners, limits, the project's error shape, the
session view, live reads on trio's clock, and a store without Durable Streams."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import StartServer
from tests.helpers import chat_body
from trio_streams.core.manager import SessionManager
from trio_streams.http.app import create_app
from trio_streams.http.durable_http import READ_CHUNK_BYTES
from trio_streams.producers.demo import DemoModel
from trio_streams.stores.memory import MemoryStore

pytestmark = pytest.mark.in_process

STREAM = "/ds/v1/stream/"
SESSION = "/ds/v1/session/"
TEXT = {"Content-Type": "text/plain"}


def events(raw: bytes) -> list[tuple[str, str]]:
    """``(event type, data)`` of each SSE event of a Durable Streams answer."""
    parsed = []
    for block in raw.decode().split("\n\n"):
        lines = block.split("\n")
        kinds = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
        data = [line[len("data:") :] for line in lines if line.startswith("data:")]
        if kinds:
            parsed.append((kinds[0], "\n".join(data)))
    return parsed


def assert_protocol_error(response: httpx.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json()["error"]["type"] == error_type
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_errors_are_json_in_the_projects_shape(client: httpx.AsyncClient) -> None:
    assert_protocol_error(await client.get(STREAM + "missing"), 404, "not_found_error")
    await client.put(STREAM + "s", headers=TEXT)
    mismatch = await client.post(STREAM + "s", content=b"{}", headers={"Content-Type": "x/y"})
    assert_protocol_error(mismatch, 409, "conflict_error")
    bad_offset = await client.get(STREAM + "s", params={"offset": "../etc"})
    assert_protocol_error(bad_offset, 400, "invalid_request_error")
    bad_name = await client.put(STREAM + "a%20b", headers=TEXT)
    assert_protocol_error(bad_name, 400, "invalid_request_error")
    patch = await client.patch(STREAM + "s")
    assert patch.status_code == 405 and "PUT" in patch.headers["allow"]


async def test_api_keys_guard_ds_and_streams_belong_to_their_key(
    start_server: StartServer,
) -> None:
    server = await start_server(api_keys=("key-a", "key-b"))
    http = server.http()
    a, b = ({"Authorization": f"Bearer {key}"} for key in ("key-a", "key-b"))
    assert (await http.put(STREAM + "s", headers=TEXT)).status_code == 401
    assert (await http.put(STREAM + "s", headers={**TEXT, **a}, content=b"A's")).status_code == 201
    assert (await http.get(STREAM + "s", headers=a)).content == b"A's"
    assert_protocol_error(await http.get(STREAM + "s", headers=b), 404, "not_found_error")
    assert_protocol_error(
        await http.put(STREAM + "s", headers={**TEXT, **b}), 409, "conflict_error"
    )
    fork = await http.put(STREAM + "f", headers={**b, "Stream-Forked-From": "/v1/stream/s"})
    assert fork.status_code == 404
    # A session is another key's too.
    await http.post("/v1/chat/completions", headers={**a, "X-Conversation-Id": "c"},
                    json=chat_body(max_tokens=3))  # fmt: skip
    assert (await http.get(SESSION + "c", headers=a)).status_code == 200
    assert_protocol_error(await http.get(SESSION + "c", headers=b), 404, "not_found_error")


async def test_the_stream_size_limit_and_the_body_limit_are_413s(
    start_server: StartServer,
) -> None:
    server = await start_server(ds_max_stream_bytes=10, max_body_bytes=64)
    http = server.http()
    assert (await http.put(STREAM + "s", headers=TEXT, content=b"12345678")).status_code == 201
    too_much = await http.post(STREAM + "s", headers=TEXT, content=b"abc")
    assert_protocol_error(too_much, 413, "invalid_request_error")
    assert "10 bytes" in too_much.json()["error"]["message"]
    huge = await http.post(STREAM + "s", headers=TEXT, content=b"x" * 65)
    assert huge.status_code == 413 and "--max-body-bytes" in huge.json()["error"]["message"]
    assert (await http.get(STREAM + "s")).content == b"12345678"


async def test_a_text_catch_up_is_at_most_a_chunk_cut_between_characters(
    client: httpx.AsyncClient,
) -> None:
    """Like any non-JSON stream's, a text stream's catch-up read is at most 1 MiB; it
    ends on a character boundary, so each answer decodes on its own, over SSE too."""
    text = "a" + "é" * (700 * 1024)  # 2-byte characters across the 1 MiB mark
    encoded = text.encode()
    await client.put(STREAM + "t", headers=TEXT)
    for start in range(0, len(encoded), 512 * 1024):
        part = encoded[start : start + 512 * 1024]
        assert (await client.post(STREAM + "t", headers=TEXT, content=part)).status_code == 204
    first = await client.get(STREAM + "t", params={"offset": "-1"})
    assert len(first.content) <= READ_CHUNK_BYTES and "Stream-Up-To-Date" not in first.headers
    rest = await client.get(STREAM + "t", params={"offset": first.headers["Stream-Next-Offset"]})
    assert rest.headers["Stream-Up-To-Date"] == "true"
    assert first.content.decode() + rest.content.decode() == text
    await client.post(STREAM + "t", headers={"Stream-Closed": "true"})
    raw = (await client.get(STREAM + "t", params={"offset": "-1", "live": "sse"})).content
    data = [payload for kind, payload in events(raw) if kind == "data"]
    assert len(data) == 2 and "".join(data) == text


async def test_a_fork_names_its_source_by_the_path_of_its_url(client: httpx.AsyncClient) -> None:
    """``Stream-Forked-From`` is the source's path as in its URL, percent-encoding and all."""
    assert (await client.put(STREAM + "100%25", headers=TEXT, content=b"ab")).status_code == 201
    fork = await client.put(STREAM + "f", headers={"Stream-Forked-From": STREAM + "100%25"})
    assert fork.status_code == 201, fork.text
    assert (await client.get(STREAM + "f")).content == b"ab"


async def test_a_long_poll_times_out_with_204_and_wakes_on_append(
    start_server: StartServer,
) -> None:
    server = await start_server(ds_long_poll_timeout=5.0)
    http = server.http()
    created = await http.put(STREAM + "s", headers=TEXT, content=b"ab")
    tail = created.headers["Stream-Next-Offset"]
    timed_out = await http.get(STREAM + "s", params={"offset": tail, "live": "long-poll"})
    assert timed_out.status_code == 204
    assert timed_out.headers["Stream-Next-Offset"] == tail
    assert timed_out.headers["Stream-Up-To-Date"] == "true" and timed_out.headers["Stream-Cursor"]

    import trio

    async with trio.open_nursery() as nursery:
        answers: list[httpx.Response] = []

        async def poll() -> None:
            params = {"offset": tail, "live": "long-poll"}
            answers.append(await http.get(STREAM + "s", params=params))

        nursery.start_soon(poll)
        await trio.sleep(1)
        await http.post(STREAM + "s", headers=TEXT, content=b"cd")
    assert answers[0].status_code == 200 and answers[0].content == b"cd"


async def test_sse_reads_to_the_close_and_base64_for_binary(client: httpx.AsyncClient) -> None:
    await client.put(STREAM + "t", headers=TEXT, content=b"line1\nline2")
    await client.post(STREAM + "t", headers={"Stream-Closed": "true"})
    raw = (await client.get(STREAM + "t", params={"offset": "-1", "live": "sse"})).content
    kinds = events(raw)
    assert kinds[0] == ("data", "line1\nline2")
    control = json.loads(kinds[1][1])
    assert control == {
        "streamNextOffset": "0000000000000000_0000000000000011",
        "streamClosed": True,
    }
    binary_type = {"Content-Type": "application/octet-stream", "Stream-Closed": "true"}
    await client.put(STREAM + "b", headers=binary_type, content=b"\x00\xff")
    binary = await client.get(STREAM + "b", params={"offset": "-1", "live": "sse"})
    assert binary.headers["Stream-SSE-Data-Encoding"] == "base64"
    assert events(binary.content)[0] == ("data", "AP8=")


async def test_etags_answer_304(client: httpx.AsyncClient) -> None:
    await client.put(STREAM + "s", headers=TEXT, content=b"x")
    first = await client.get(STREAM + "s")
    again = await client.get(STREAM + "s", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    await client.post(STREAM + "s", headers={"Stream-Closed": "true"})
    closed = await client.get(STREAM + "s", headers={"If-None-Match": first.headers["ETag"]})
    assert closed.status_code == 200 and closed.headers["Stream-Closed"] == "true"


async def start_session(client: httpx.AsyncClient, cid: str, **extra: Any) -> None:
    started = await client.post(
        "/v1/chat/completions", headers={"X-Conversation-Id": cid}, json=chat_body(**extra)
    )
    assert started.status_code == 200


async def test_the_session_view_is_read_only(client: httpx.AsyncClient) -> None:
    await start_session(client, "conv/1", max_tokens=4)
    for method in ("PUT", "POST", "DELETE"):
        refused = await client.request(method, SESSION + "conv/1")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD, OPTIONS"
    head = await client.head(SESSION + "conv/1")
    assert head.status_code == 200 and head.headers["content-type"] == "text/plain; charset=utf-8"
    assert head.headers["Stream-Closed"] == "true"
    log = (await client.get("/v1/stream/conv/1")).content
    generation = head.headers["X-Stream-Generation"]
    assert head.headers["Stream-Next-Offset"] == f"{generation}_{len(log):016d}"
    whole = await client.get(SESSION + "conv/1", params={"offset": "-1"})
    assert whole.content == log and whole.headers["Stream-Closed"] == "true"
    middle = f"{generation}_{10:016d}"
    assert (await client.get(SESSION + "conv/1", params={"offset": middle})).content == log[10:]
    at_end = await client.get(
        SESSION + "conv/1", params={"offset": head.headers["Stream-Next-Offset"],
                                    "live": "long-poll"})  # fmt: skip
    assert at_end.status_code == 204 and at_end.headers["Stream-Closed"] == "true"
    sse = await client.get(SESSION + "conv/1", params={"offset": middle, "live": "sse"})
    data = "".join(payload + "\n" for kind, payload in events(sse.content) if kind == "data")
    assert data.rstrip("\n") == log[10:].decode().rstrip("\n")
    assert json.loads(events(sse.content)[-1][1])["streamClosed"] is True


async def test_a_replaced_sessions_offsets_are_gone(client: httpx.AsyncClient) -> None:
    await start_session(client, "c", max_tokens=3)
    old = (await client.head(SESSION + "c")).headers["Stream-Next-Offset"]
    await start_session(client, "c", max_tokens=3)
    assert_protocol_error(await client.get(SESSION + "c", params={"offset": old}), 410,
                          "invalid_request_error")  # fmt: skip
    generic = await client.get(
        SESSION + "c", params={"offset": "0000000000000000_0000000000000000"}
    )
    assert_protocol_error(generic, 400, "invalid_request_error")
    assert_protocol_error(await client.get(SESSION + "none"), 404, "not_found_error")


class WithoutDurableStreams(MemoryStore):
    """A session store that has no Durable Streams implementation (yet)."""

    durable_streams = None  # type: ignore[assignment]


async def test_a_store_without_durable_streams_answers_501_saying_so() -> None:
    app = create_app(WithoutDurableStreams(SessionManager()), DemoModel())
    client = app.test_client()
    response = await client.put(STREAM + "s", headers=TEXT)
    assert response.status_code == 501
    message = (await response.get_json())["error"]["message"]
    assert "WithoutDurableStreams session store has no Durable Streams" in message


async def test_a_shutdown_ends_a_session_read_without_closing_the_stream(
    start_server: StartServer,
) -> None:
    server = await start_server(demo_tps=2.0)
    http = server.http()
    async with http.stream("POST", "/v1/chat/completions", headers={"X-Conversation-Id": "c"},
                           json=chat_body(max_tokens=50)) as started:  # fmt: skip
        assert started.status_code == 200
    received = b""
    params = {"offset": "-1", "live": "sse"}
    async with http.stream("GET", SESSION + "c", params=params) as following:
        async for chunk in following.aiter_bytes():
            received += chunk
            if b"event: data" in received:
                server.shutdown()  # type: ignore[attr-defined]
    # The reader ended, but the answer did not: a client resumes (on another instance).
    assert b"event: data" in received and b"streamClosed" not in received
