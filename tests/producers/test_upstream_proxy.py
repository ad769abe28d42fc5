"""trio-streams in front of an OpenAI-compatible model server, over real sockets.

The upstream is :class:`trio_streams.testing.fake_upstream.FakeUpstream` under real
Hypercorn; the proxy is a real trio-streams server started with ``upstreams=(url,)``.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
import trio
import trio.testing

from tests.conftest import StartServer
from tests.helpers import (
    assert_error,
    chat_body,
    event_generation,
    event_offset,
    http_client,
    openai_sdk,
    split_end,
    sse_data,
    without_event_ids,
)
from trio_streams.core.sse import PING
from trio_streams.server import RunningServer
from trio_streams.testing.fake_upstream import (
    FakeUpstream,
    StreamRecord,
    chunk_event,
    numbered_events,
)

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process


async def start_proxy(
    start_server: StartServer, *upstreams: FakeUpstream | str, **overrides: Any
) -> RunningServer:
    specs = tuple(item if isinstance(item, str) else item.url for item in upstreams)
    # Event ids off: the stream is then byte for byte the upstream's (see the ids test).
    options: dict[str, Any] = {"upstreams": specs, "ping_interval": 0, "event_ids": False}
    options.update(overrides)
    return await start_server(**options)


@pytest.fixture
async def proxy(start_server: StartServer, upstream: FakeUpstream) -> RunningServer:
    return await start_proxy(start_server, upstream)


@pytest.fixture
async def client(proxy: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(proxy, timeout=10) as http:
        yield http


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Keep a full garbage collection (>100 ms in this big test process) out of a timing."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def conversation(conversation_id: str) -> dict[str, str]:
    return {"X-Conversation-Id": conversation_id}


async def read_then_leave(
    client: httpx.AsyncClient, at_least: int, body: dict[str, Any], headers: dict[str, str]
) -> bytes:
    """Start a stream, read at least ``at_least`` bytes, then close the connection."""
    received = b""
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            received += chunk
            if len(received) >= at_least:
                break
    return received


async def first_stream(upstream: FakeUpstream) -> StreamRecord:
    with trio.fail_after(5):
        await upstream.stream_started.wait()
    return upstream.streams[0]


# -- byte-exact passthrough -----------------------------------------------------------------


MIXED_ENDINGS = [
    chunk_event(0, " lf"),
    chunk_event(1, " crlf", b"\r\n\r\n"),
    chunk_event(2, " cr", b"\r\r"),
    b'event: delta\r\ndata: {"a":1}\r\ndata: {"b":2}\r\n\r\n',
    b": an upstream comment\n\n",
    b"id: 7\nretry: 100\ndata: x\n\n",
    chunk_event(3, " \u00e9\u00e8 \U0001f600 unicode"),
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("piece_size", [None, 1, 7, 64])
async def test_streamed_bytes_are_exactly_the_upstreams(
    upstream: FakeUpstream, client: httpx.AsyncClient, piece_size: int | None
) -> None:
    upstream.script.events = MIXED_ENDINGS
    upstream.script.piece_size = piece_size
    body = json.dumps(chat_body("exact", model="fake-model")).encode()
    response = await client.post(
        "/v1/chat/completions",
        content=body,
        headers={
            **conversation("exact-1"),
            "Content-Type": "application/json",
            "Authorization": "Bearer client-key",
            "X-Custom": "kept",
            "Connection": "keep-alive",
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == b"".join(MIXED_ENDINGS)
    sent = upstream.requests[-1]
    assert (sent.method, sent.path, sent.body) == ("POST", "/v1/chat/completions", body)
    assert sent.header("authorization") == "Bearer client-key"  # no --upstream-api-key
    assert sent.header("x-custom") == "kept"
    assert sent.header("content-type") == "application/json"
    assert sent.header("x-conversation-id") is None  # a secret, meaningless upstream
    assert sent.header("accept-encoding") == "identity"  # SSE bytes must not be compressed


async def test_with_event_ids_each_upstream_event_gains_only_its_id_line(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """The default: ids stamped as offsets, so EventSource resumes through Last-Event-ID."""
    upstream.script.events = numbered_events(30)
    upstream.script.piece_size = 50
    proxy = await start_proxy(start_server, upstream, event_ids=True)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("ids-1")
        )
        assert without_event_ids(response.content) == b"".join(numbered_events(30))
        events = response.content.split(b"\n\n")[:-1]
        ids = [event.rsplit(b"\nid: ", 1)[1].decode() for event in events]
        offsets = [event_offset(event_id) for event_id in ids]
        ends = [len(b"\n\n".join(events[: n + 1])) + 2 for n in range(len(events))]
        assert offsets == ends  # each id is the byte offset just after its event
        generation = response.headers["x-stream-generation"]
        assert {event_generation(event_id) for event_id in ids} == {generation}
        resumed = await http.get("/v1/stream/ids-1", headers={"Last-Event-ID": ids[9]})
    assert resumed.content == response.content[offsets[9] :]


async def test_an_upstreams_own_event_ids_are_replaced_not_doubled(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """A server that numbers its events (``id: 53412``): each event keeps one id, ours."""
    upstream.script.events = [
        b"id: %d\n" % (53412 + index) + event for index, event in enumerate(numbered_events(8))
    ]
    upstream.script.piece_size = 7  # id lines split across reads, too
    proxy = await start_proxy(start_server, upstream, event_ids=True)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("ids-2")
        )
    events = response.content.split(b"\n\n")[:-1]
    assert len(events) == 9
    for event in events:
        assert event.count(b"id:") == 1 and b"5341" not in event, event
    assert without_event_ids(response.content) == b"".join(numbered_events(8))


async def test_responses_api_stream_is_resumable(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    events = [
        b'event: response.created\ndata: {"type":"response.created"}\n\n',
        *[
            b"event: response.output_text.delta\ndata: "
            + json.dumps({"type": "response.output_text.delta", "delta": f"w{n} "}).encode()
            + b"\n\n"
            for n in range(20)
        ],
        b'event: response.completed\ndata: {"type":"response.completed"}\n\n',
    ]
    upstream.script.events = events
    upstream.script.interval = 0.01
    body = {"model": "fake-model", "input": "hi", "stream": True}
    received = b""
    async with client.stream(
        "POST", "/v1/responses", json=body, headers=conversation("resp-1")
    ) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_raw():
            received += chunk
            if len(received) > 100:
                break
    rest = await client.get("/v1/stream/resp-1", params={"from": len(received)})
    assert received + rest.content == b"".join(events)
    assert upstream.requests[-1].path == "/v1/responses"


# -- resume, stop, disconnect ------------------------------------------------------------------


async def test_resume_mid_stream_through_the_proxy(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(40)
    upstream.script.interval = 0.01
    part = await read_then_leave(client, 200, chat_body("resume"), conversation("resume-1"))
    session = proxy.manager.get("resume-1")
    assert session is not None and not session.is_done
    rest = await client.get("/v1/stream/resume-1", params={"from": len(part)})
    assert part + rest.content == b"".join(numbered_events(40))
    # The client left, but with a conversation id the upstream answer ran to its end.
    record = upstream.streams[0]
    assert record.finished and record.disconnected_at is None
    assert session.is_done and not session.is_cancelled


async def test_delete_closes_the_upstream_connection_within_100ms(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(1000)
    upstream.script.interval = 0.02
    await read_then_leave(client, 100, chat_body("stop me"), conversation("stop-1"))
    record = await first_stream(upstream)
    assert record.disconnected_at is None
    with no_gc_pauses():
        before = trio.current_time()
        response = await client.delete("/v1/stream/stop-1")
        assert response.status_code == 204
        with trio.fail_after(1):
            await record.gone.wait()
    assert record.disconnected_at is not None
    assert record.disconnected_at - before < 0.1
    assert not record.finished and record.events_sent < 1000


async def delete_while_the_upstream_waits(
    upstream: FakeUpstream, client: httpx.AsyncClient, conversation_id: str
) -> None:
    """POST a chat whose upstream is held up (as the caller set it), DELETE it once the
    upstream has the request: the upstream is left at once, the POST ends ``stopped``."""
    async with trio.open_nursery() as nursery:
        answer: list[httpx.Response] = []

        async def ask() -> None:
            answer.append(
                await client.post(
                    "/v1/chat/completions", json=chat_body(), headers=conversation(conversation_id)
                )
            )

        nursery.start_soon(ask)
        record = await first_stream(upstream)
        with no_gc_pauses():
            before = trio.current_time()
            await client.delete(f"/v1/stream/{conversation_id}")
            with trio.fail_after(1):
                await record.gone.wait()
        assert record.disconnected_at is not None
        assert record.disconnected_at - before < 0.1
    assert answer[0].status_code == 200 and split_end(answer[0].content) == (b"", "stopped")


async def test_delete_while_the_upstream_processes_the_prompt(
    upstream: FakeUpstream, client: httpx.AsyncClient, proxy: RunningServer
) -> None:
    """Before the upstream even sent its headers, DELETE still reaches it at once."""
    upstream.script.first_event_delay = 30
    await delete_while_the_upstream_waits(upstream, client, "prefill")
    assert proxy.manager.get("prefill") is None


async def test_delete_before_the_upstream_sent_its_headers(
    upstream: FakeUpstream, client: httpx.AsyncClient, proxy: RunningServer
) -> None:
    """The handler still waits for the status: DELETE ends both the wait and the upstream."""
    upstream.script.head_delay = 30
    await delete_while_the_upstream_waits(upstream, client, "headless")
    assert proxy.manager.producer_count == 0


async def test_replacing_a_stream_closes_its_upstream_connection(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(1000)
    upstream.script.interval = 0.02
    await read_then_leave(client, 100, chat_body(), conversation("replace-1"))
    upstream.script.events = numbered_events(3)
    upstream.script.interval = 0
    second = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("replace-1")
    )
    assert second.content == b"".join(numbered_events(3))
    with trio.fail_after(1):
        await upstream.streams[0].gone.wait()


async def test_client_disconnect_with_conversation_id_keeps_generating(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(30)
    upstream.script.interval = 0.01
    await read_then_leave(client, 50, chat_body(), conversation("keep-1"))
    record = upstream.streams[0]
    with trio.fail_after(5):
        await record.done.wait()
    assert record.disconnected_at is None and record.events_sent == 31
    session = proxy.manager.get("keep-1")
    assert session is not None
    replay = await client.get("/v1/stream/keep-1")
    assert replay.content == b"".join(numbered_events(30))


async def test_client_disconnect_without_conversation_id_closes_the_upstream(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(1000)
    upstream.script.interval = 0.02
    await read_then_leave(client, 50, chat_body(), {})
    record = upstream.streams[0]
    with trio.fail_after(2):
        await record.gone.wait()
    assert not record.finished
    await trio.testing.wait_all_tasks_blocked()
    assert proxy.manager.producer_count == 0


async def test_client_leaving_before_the_upstream_answered_closes_it_without_id(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    """The handler is still waiting for the upstream's status when its client goes."""
    upstream.script.head_delay = 30
    with trio.move_on_after(0.3):
        await client.post("/v1/chat/completions", json=chat_body())
    with trio.fail_after(2):
        await upstream.streams[0].gone.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert proxy.manager.producer_count == 0


@pytest.mark.in_process(False)  # serve()'s own shutdown, on a real socket
async def test_shutdown_closes_every_upstream_connection(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = numbered_events(1000)
    upstream.script.interval = 0.02
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        from functools import partial

        from trio_streams.server import serve
        from trio_streams.settings import Settings

        settings = Settings(host="127.0.0.1", port=0, upstreams=(upstream.url,), ping_interval=0)
        running: RunningServer = await nursery.start(partial(serve, settings, stop=stop))
        async with http_client(running, timeout=10) as http:
            await read_then_leave(http, 50, chat_body(), conversation("shutdown-1"))
        record = await first_stream(upstream)
        stop.set()
    with trio.fail_after(1):
        await record.gone.wait()
    assert not record.finished


# -- keep-alive -----------------------------------------------------------------------------


async def test_keepalive_pings_while_the_upstream_is_silent(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = numbered_events(3)
    upstream.script.first_event_delay = 0.35
    proxy = await start_proxy(start_server, upstream, ping_interval=0.1)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("ping-1")
        )
    assert response.content.startswith(PING * 2)
    assert response.content.replace(PING, b"") == b"".join(numbered_events(3))


async def test_a_server_that_answers_after_prefill_still_gets_pings_to_the_client(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """No headers from upstream yet: after one ping interval the client gets its 200."""
    upstream.script.head_delay = 0.4
    upstream.script.events = numbered_events(2)
    proxy = await start_proxy(start_server, upstream, ping_interval=0.1)
    arrivals: list[tuple[float, bytes]] = []
    async with http_client(proxy, timeout=10) as http:
        started = trio.current_time()
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat_body(), headers=conversation("late-1")
        ) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                arrivals.append((trio.current_time() - started, chunk))
    first_at, first = arrivals[0]
    assert first.startswith(PING) and first_at < 0.35  # before the upstream answered
    received = b"".join(chunk for _, chunk in arrivals)
    assert received.replace(PING, b"") == b"".join(numbered_events(2))


# -- failures -------------------------------------------------------------------------------


async def test_error_before_streaming_keeps_status_and_body_and_no_session(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.fail_status = 400
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("fail-1")
    )
    assert response.status_code == 400
    assert response.content == upstream.script.fail_body
    assert response.headers["content-type"] == "application/json"
    assert proxy.manager.get("fail-1") is None
    assert proxy.manager.producer_count == 0
    lookup = await client.post("/v1/streams/lookup", json={"conversation_ids": ["fail-1"]})
    assert lookup.json() == []


async def test_error_status_with_a_non_json_body_becomes_502(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.fail_status = 503
    upstream.script.fail_body = b"<html>Service Unavailable</html>"
    upstream.script.fail_content_type = b"text/html"
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("fail-2")
    )
    assert_error(response, 502, "The upstream answered 503 with a non-JSON body", "server_error")
    assert "Service Unavailable" in response.json()["error"]["message"]
    assert proxy.manager.get("fail-2") is None


async def test_unreachable_upstream_is_502_and_no_session(start_server: StartServer) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await start_proxy(start_server, f"http://127.0.0.1:{port}/v1")
    async with http_client(proxy, timeout=10) as http:
        streamed = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("down-1")
        )
        whole = await http.post("/v1/chat/completions", json=chat_body(stream=False))
        models = await http.get("/v1/models")
    assert_error(streamed, 502, "The upstream model server is unreachable", "server_error")
    assert_error(whole, 502, "The upstream model server is unreachable", "server_error")
    assert_error(models, 502, "The upstream model server is unreachable", "server_error")
    assert proxy.manager.get("down-1") is None and proxy.manager.producer_count == 0


async def test_upstream_silent_before_its_headers_is_504(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.head_delay = 5
    proxy = await start_proxy(start_server, upstream, upstream_read_timeout=0.3)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("slow-1")
        )
    assert_error(response, 504, "The upstream model server timed out", "server_error")
    assert proxy.manager.get("slow-1") is None


async def test_drop_mid_stream_ends_with_an_error_event_and_keeps_what_came(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(10)
    upstream.script.drop_after = 4
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("drop-1")
    )
    assert response.status_code == 200
    events = b"".join(numbered_events(10)[:4])
    assert response.content.startswith(events)
    error = json.loads(sse_data(response.content[len(events) :])[0])["error"]
    assert error["code"] == 502 and error["type"] == "server_error"
    assert "lost mid-stream" in error["message"]
    session = proxy.manager.get("drop-1")
    assert session is not None and session.is_done
    replay = await client.get("/v1/stream/drop-1")
    assert replay.content == response.content


@pytest.mark.in_process(False)  # the SDK (httpx2) talks to a real socket
async def test_the_openai_sdk_raises_the_mid_stream_error_after_the_text(
    upstream: FakeUpstream, proxy: RunningServer
) -> None:
    upstream.script.events = numbered_events(10)
    upstream.script.drop_after = 3

    def run() -> tuple[str, openai.APIError | None]:
        sdk = openai_sdk(proxy.url)
        text = ""
        try:
            for chunk in sdk.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
            ):
                text += chunk.choices[0].delta.content or ""
        except openai.APIError as error:
            return text, error
        return text, None

    text, error = await trio.to_thread.run_sync(run)
    assert text == " token0 token1 token2"
    assert error is not None and "lost mid-stream" in error.message


async def test_drop_in_the_middle_of_an_event_keeps_only_whole_events(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script.events = numbered_events(10)
    upstream.script.piece_size = 30  # event 4's first piece arrives, then the drop
    upstream.script.drop_after = 4
    response = await client.post("/v1/chat/completions", json=chat_body())
    complete = b"".join(numbered_events(10)[:4])
    assert response.content.startswith(complete)
    rest = response.content[len(complete) :]
    assert rest.startswith(b'data: {"error"') and rest.endswith(b"\n\n")


async def test_stall_mid_stream_times_out_with_an_error_event(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = numbered_events(10)
    upstream.script.stall_after = 3
    proxy = await start_proxy(start_server, upstream, upstream_read_timeout=0.3)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("stall-1")
        )
        replay = await http.get("/v1/stream/stall-1")
    events = b"".join(numbered_events(10)[:3])
    assert response.content.startswith(events)
    error = json.loads(sse_data(response.content[len(events) :])[0])["error"]
    assert error["code"] == 504 and "stopped sending" in error["message"]
    assert replay.content == response.content
    with trio.fail_after(1):  # the proxy gave up and closed the connection
        await upstream.streams[0].gone.wait()


async def test_error_after_the_client_got_its_200_arrives_as_an_event(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """The upstream answers an error only after the handler committed to streaming."""
    upstream.script.head_delay = 0.35
    upstream.script.fail_status = 400
    proxy = await start_proxy(start_server, upstream, ping_interval=0.1)
    async with http_client(proxy, timeout=10) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(), headers=conversation("late-err")
        )
    assert response.status_code == 200
    assert response.content.startswith(PING)
    events = sse_data(response.content)
    assert json.loads(events[-1]) == json.loads(upstream.script.fail_body)


async def test_a_whole_answer_to_a_streaming_request_is_returned_as_is(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    upstream.script.ignore_stream = True
    response = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("ignored")
    )
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    assert response.headers["x-upstream"] == "yes"
    assert proxy.manager.get("ignored") is None


# -- non-streaming and other routes ----------------------------------------------------------


async def test_non_streaming_completion_passes_through(
    upstream: FakeUpstream, proxy: RunningServer, client: httpx.AsyncClient
) -> None:
    body = json.dumps({"model": "fake-model", "messages": [], "max_tokens": 3}).encode()
    response = await client.post(
        "/v1/chat/completions?api-version=1",
        content=body,
        headers={"Content-Type": "application/json", **conversation("whole-1")},
    )
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "yes"
    assert response.json()["echo"] == json.loads(body)
    sent = upstream.requests[-1]
    assert (sent.path, sent.query, sent.body) == ("/v1/chat/completions", b"api-version=1", body)
    assert proxy.manager.get("whole-1") is None


async def test_a_client_leaving_a_non_streaming_request_closes_the_upstream(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    upstream.script.head_delay = 30
    with trio.move_on_after(0.3):
        await client.post("/v1/chat/completions", json=chat_body(stream=False))
    with trio.fail_after(2):
        await upstream.streams[0].gone.wait()


async def test_other_v1_routes_pass_through(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    embeddings = await client.post(
        "/v1/embeddings?x=1", json={"model": "fake-model", "input": "abc"}
    )
    assert embeddings.status_code == 200
    assert embeddings.headers["x-upstream"] == "yes"
    echo = embeddings.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("POST", "/v1/embeddings", "x=1")
    assert json.loads(echo["body"]) == {"model": "fake-model", "input": "abc"}
    model = await client.get("/v1/models/fake-model")
    assert model.json()["path"] == "/v1/models/fake-model"
    deleted = await client.delete("/v1/files/f-1")
    assert deleted.json()["method"] == "DELETE"
    teapot = await client.get("/v1/status/418")
    assert teapot.status_code == 418 and teapot.json() == {"error": {"message": "as asked"}}


async def test_our_own_routes_are_never_forwarded(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    for method, path in [("POST", "/v1/stream/x"), ("PUT", "/v1/streams/lookup")]:
        response = await client.request(method, path)
        assert_error(response, 405, f"Method {method} is not allowed", "invalid_request_error")
    assert upstream.requests == []
    missing = await client.get("/v1/stream/unknown")
    assert_error(missing, 404, "Stream not found or expired", "not_found_error")


async def test_invalid_conversation_id_and_ping_interval_are_ours_to_refuse(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    bad_id = await client.post(
        "/v1/chat/completions", json=chat_body(), headers=conversation("x" * 300)
    )
    assert_error(bad_id, 400, "Invalid conversation id", "invalid_request_error")
    bad_ping = await client.post(
        "/v1/chat/completions", json=chat_body(sse_ping_interval=-1), headers=conversation("p")
    )
    assert_error(bad_ping, 400, "'sse_ping_interval' must be", "invalid_request_error")
    assert upstream.requests == []


# -- several upstreams ---------------------------------------------------------------------------


async def test_models_merge_and_requests_route_by_model(
    start_server: StartServer, nursery: trio.Nursery
) -> None:
    alpha, beta, fallback = (
        FakeUpstream(["alpha-7b.gguf"]),
        FakeUpstream(["beta", "shared"]),
        FakeUpstream(["fallback-model", "shared"]),
    )
    for fake in (alpha, beta, fallback):
        await fake.start(nursery)
    proxy = await start_proxy(start_server, f"alpha={alpha.url}", f"beta={beta.url}", fallback.url)
    async with http_client(proxy, timeout=10) as http:
        models = await http.get("/v1/models")
        ids = [entry["id"] for entry in models.json()["data"]]
        assert ids == ["alpha", "alpha-7b.gguf", "beta", "shared", "fallback-model"]
        assert models.json()["object"] == "list"
        for model, fake in [("alpha", alpha), ("beta", beta), ("other", fallback)]:
            fake.script.events = [chunk_event(0, model), b"data: [DONE]\n\n"]
            response = await http.post("/v1/chat/completions", json=chat_body(model=model))
            assert response.content == b"".join(fake.script.events)
            assert json.loads(fake.requests[-1].body)["model"] == model
        embeddings = await http.post("/v1/embeddings", json={"model": "beta", "input": "x"})
        assert embeddings.json()["path"] == "/v1/embeddings"
        assert beta.requests[-1].path == "/v1/embeddings"


async def test_models_skip_an_upstream_that_does_not_answer(
    start_server: StartServer, upstream: FakeUpstream, nursery: trio.Nursery
) -> None:
    stuck = FakeUpstream(["stuck-model"])
    await stuck.start(nursery)
    stuck.script.models_delay = 30
    proxy = await start_proxy(
        start_server, upstream, f"stuck={stuck.url}", upstream_read_timeout=0.3
    )
    async with http_client(proxy, timeout=10) as http:
        models = await http.get("/v1/models")
    assert [entry["id"] for entry in models.json()["data"]] == ["fake-model"]


async def test_a_single_upstreams_model_list_passes_unchanged(
    upstream: FakeUpstream, client: httpx.AsyncClient
) -> None:
    models = await client.get("/v1/models?limit=5")
    assert models.json() == {
        "object": "list",
        "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}],
    }
    assert upstream.requests[-1].query == b"limit=5"


async def test_no_upstream_answering_models_is_502(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.models_delay = 30
    proxy = await start_proxy(
        start_server, f"a={upstream.url}", f"b={upstream.url}", upstream_read_timeout=0.3
    )
    async with http_client(proxy, timeout=10) as http:
        models = await http.get("/v1/models")
    assert_error(models, 502, "No upstream model server answered", "server_error")


async def test_an_unknown_model_without_a_default_upstream_is_404(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, f"only={upstream.url}")
    async with http_client(proxy, timeout=10) as http:
        response = await http.post("/v1/chat/completions", json=chat_body(model="nope"))
        routed = await http.post("/v1/chat/completions", json=chat_body(model="only"))
    assert_error(response, 404, "The model 'nope' is not served here", "not_found_error")
    assert routed.status_code == 200 and len(upstream.requests) == 1


async def test_upstream_api_key_replaces_the_clients_authorization(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream, upstream_api_key="sk-upstream")
    async with http_client(proxy, timeout=10) as http:
        await http.post(
            "/v1/chat/completions",
            json=chat_body(),
            headers={"Authorization": "Bearer client", "authorization": "Bearer again"},
        )
        await http.get("/v1/models", headers={"Authorization": "Bearer client"})
    for sent in upstream.requests:
        assert [v for k, v in sent.headers if k == "authorization"] == ["Bearer sk-upstream"]


async def test_with_api_keys_the_clients_key_stays_here_and_owns_the_session(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream, api_keys=("ours-1", "ours-2"))
    async with http_client(proxy, timeout=10) as http:
        refused = await http.post("/v1/chat/completions", json=chat_body())
        assert refused.status_code == 401 and upstream.requests == []
        mine = {"Authorization": "Bearer ours-1", **conversation("owned")}
        started = await http.post("/v1/chat/completions", json=chat_body(), headers=mine)
        assert started.content == b"".join(numbered_events(5))
        theirs = {"Authorization": "Bearer ours-2"}
        assert (await http.get("/v1/stream/owned", headers=theirs)).status_code == 404
        assert (await http.get("/v1/stream/owned", headers=mine)).content == started.content
        await http.get("/v1/models", headers={"X-Api-Key": "ours-1"})
    for sent in upstream.requests:
        assert sent.header("authorization") is None and sent.header("x-api-key") is None
