"""Generations and end reasons over real HTTP, with either store (issue 15).

A session is replaced while a client is away; the client then resumes with its old
position by every route (``from`` with the generation, ``Last-Event-ID``, the Python
client, ``tail``): each gets the error that says so, never a byte of the new generation.
And every kind of reader learns why its stream ended: a raw SSE reader, the ``openai``
SDK (an exception it can tell apart), ``StreamsClient`` and ``tail`` (its exit code).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import aclosing

import httpx
import openai
import pytest
import trio

from tests.cli_options import Printed, Tailed, tail
from tests.conftest import StartServer, start_on_store
from tests.helpers import (
    assert_error,
    chat_body,
    chat_text,
    event_generation,
    event_offset,
    openai_sdk,
    split_end,
)
from trio_streams.client import (
    Backoff,
    StreamReplaced,
    StreamsClient,
    StreamStopped,
)
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer

FAST_RETRY = Backoff(first=0.001, maximum=0.01, attempts=5)


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest, start_server: StartServer) -> RunningServer:
    """A server slow enough (100 tokens/s) to act while an answer is generated."""
    return await start_on_store(request, start_server, demo_tps=100)


async def answer(
    http: httpx.AsyncClient, conversation_id: str, prompt: str, max_tokens: int
) -> tuple[bytes, str]:
    """Start (or replace) a stream and read it whole: its bytes and its generation."""
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body(prompt, max_tokens=max_tokens),
        headers={"X-Conversation-Id": conversation_id},
    )
    assert response.status_code == 200
    return response.content, response.headers["x-stream-generation"]


def event_ids(raw: bytes) -> list[str]:
    return [line[4:] for line in raw.decode().split("\n") if line.startswith("id: ")]


async def test_a_replaced_generation_is_never_read_by_a_pinned_resume(
    http: httpx.AsyncClient, server: RunningServer
) -> None:
    old, old_generation = await answer(http, "c-regen", "the first answer", 12)
    ids = event_ids(old)
    assert {event_generation(event_id) for event_id in ids} == {old_generation}
    position = ids[3]  # the client got four events, then went away
    offset = event_offset(position)
    new, new_generation = await answer(http, "c-regen", "a regenerated answer", 12)
    assert new_generation != old_generation and new[:offset] != old[:offset]

    pinned = [
        await http.get(
            "/v1/stream",
            params={"conv_id": "c-regen", "generation": old_generation, "from": offset},
        ),
        await http.get("/v1/stream/c-regen", headers={"Last-Event-ID": position}),
        # The header wins over a URL that an EventSource resends as it first was:
        await http.get(
            "/v1/stream/c-regen",
            params={"generation": new_generation, "from": 0},
            headers={"Last-Event-ID": position},
        ),
    ]
    for response in pinned:
        assert_error(response, 409, "Stream replaced", "conflict_error")
        assert response.json()["error"]["reason"] == "replaced"
    async with StreamsClient(server.url, backoff=FAST_RETRY) as client:
        chunks = client.iter_bytes("c-regen", offset, generation=old_generation)
        with pytest.raises(StreamReplaced) as replaced:
            async with aclosing(chunks) as reading:
                async for _ in reading:
                    raise AssertionError("a byte of the new generation")
        assert replaced.value.status == 409 and replaced.value.reason == "replaced"
        [info] = await client.lookup("c-regen")
        assert info.generation == new_generation

    # Pinned to the current generation, or not pinned at all (llama.cpp's meaning): read.
    current = await http.get(
        "/v1/stream",
        params={"conv_id": "c-regen", "generation": new_generation, "from": offset},
    )
    unpinned = await http.get("/v1/stream/c-regen", params={"from": offset})
    plain_id = await http.get("/v1/stream/c-regen", headers={"Last-Event-ID": str(offset)})
    for response in (current, unpinned, plain_id):
        assert response.status_code == 200 and response.content == new[offset:]
        assert response.headers["x-stream-generation"] == new_generation

    # A Stop pinned to the old generation leaves the new one; pinned to it, stops it.
    async def ids_found() -> list[str]:
        found = await http.post("/v1/streams/lookup", json={"conversation_ids": ["c-regen"]})
        return [info["generation"] for info in found.json()]

    stale = await http.delete("/v1/stream/c-regen", params={"generation": old_generation})
    assert stale.status_code == 204 and await ids_found() == [new_generation]
    stop = await http.delete(
        "/v1/stream", params={"conv_id": "c-regen", "generation": new_generation}
    )
    assert stop.status_code == 204 and await ids_found() == []


async def test_bad_generations_and_event_ids_are_400(http: httpx.AsyncClient) -> None:
    await answer(http, "c-bad-gen", "x", 2)
    for params in ({"generation": "nope"}, {"generation": "A" * 16}):
        response = await http.get("/v1/stream/c-bad-gen", params=params)
        assert_error(response, 400, "Invalid 'generation'", "invalid_request_error")
        stop = await http.delete("/v1/stream/c-bad-gen", params=params)
        assert_error(stop, 400, "Invalid 'generation'", "invalid_request_error")
    for bad in ("abc-12", "0123456789abcdef-", "0123456789abcdef-x", "-5"):
        response = await http.get("/v1/stream/c-bad-gen", headers={"Last-Event-ID": bad})
        assert_error(response, 400, "Invalid 'Last-Event-ID'", "invalid_request_error")


async def follow_raw(
    http: httpx.AsyncClient, conversation_id: str, then: Callable[[], Awaitable[None]]
) -> tuple[bytes, str | None]:
    """Start a long answer, read some of it, run ``then`` (a stop, a replacement), and
    read on to the end: the stream's bytes, and the reason its end event named."""
    async with http.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("a long answer", max_tokens=5000),
        headers={"X-Conversation-Id": conversation_id},
    ) as response:
        raw = b""
        chunks = response.aiter_raw()
        while not chat_text(raw.rpartition(b"\n\n")[0] + b"\n\n"):
            raw += await chunks.__anext__()
        await then()
        with trio.fail_after(5):
            async for chunk in chunks:
                raw += chunk
    return split_end(raw)


async def test_a_raw_sse_reader_learns_stopped_and_replaced(http: httpx.AsyncClient) -> None:
    async def stop() -> None:
        assert (await http.delete("/v1/stream/c-stop")).status_code == 204

    raw, reason = await follow_raw(http, "c-stop", stop)
    assert reason == "stopped" and chat_text(raw)
    later = await http.get("/v1/stream/c-stop")
    assert_error(later, 404, "Stream stopped", "not_found_error")
    assert later.json()["error"]["reason"] == "stopped"

    new: list[bytes] = []

    async def replace() -> None:
        new.append((await answer(http, "c-replace", "the new one", 3))[0])

    raw, reason = await follow_raw(http, "c-replace", replace)
    assert reason == "replaced" and chat_text(raw)
    new_text = chat_text(new[0])
    assert new_text == "".join(answer_tokens("the new one")[:3])
    assert {event_generation(i) for i in event_ids(raw)} != {event_generation(event_ids(new[0])[0])}


@pytest.mark.parametrize("ending", ["stopped", "replaced", "shutdown"])
async def test_the_openai_sdk_raises_an_error_it_can_tell_apart(
    server: RunningServer, ending: str
) -> None:
    async def end_it() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            if ending == "stopped":
                await http.delete("/v1/stream/c-sdk")
            elif ending == "replaced":
                await answer(http, "c-sdk", "another", 2)
            else:
                server.store.shutdown()  # what serve() does when it is told to stop

    def read() -> tuple[str, openai.APIError]:
        stream = openai_sdk(server.url).chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "end me"}],
            stream=True,
            max_tokens=5000,
            extra_headers={"X-Conversation-Id": "c-sdk"},
        )
        text = ""
        try:
            for index, chunk in enumerate(stream):
                text += chunk.choices[0].delta.content or ""
                if index == 3:
                    trio.from_thread.run(end_it)
        except openai.APIError as error:
            return text, error
        raise AssertionError("the stream ended as if it were complete")

    text, error = await trio.to_thread.run_sync(read)
    assert text and isinstance(error.body, dict)
    if (
        ending == "shutdown"
        and server.store is not server.manager
        and "redis" in type(server.store).__name__.lower()
    ):
        # Its producer ran on the instance going away: for every reader, here or on
        # another instance, the answer is cut for good, and the log says so first.
        assert error.type == "server_error" and "producing it shut down" in error.message
        return
    expected = {"stopped": "stream_stopped", "replaced": "stream_replaced"}
    assert error.type == expected.get(ending, "server_shutdown")
    assert error.body["reason"] == ending


async def test_streams_client_raises_stopped_and_replaced_while_following(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    for ending, kind in (("stopped", StreamStopped), ("replaced", StreamReplaced)):
        conversation_id = f"c-client-{ending}"
        received: list[str] = []
        async with StreamsClient(server.url, backoff=FAST_RETRY) as client:
            events = client.chat(conversation_id, chat_body("follow me", max_tokens=5000))
            with pytest.raises(kind) as raised:
                async with aclosing(events) as reading:
                    async for event in reading:
                        assert event.data is None or "error" not in event.data
                        if event.id is not None:
                            received.append(event.id)
                        if len(received) == 4:
                            if ending == "stopped":
                                await client.stop(conversation_id)
                            else:
                                await answer(http, conversation_id, "replacement", 2)
        assert raised.value.reason == ending
        assert len({event_generation(event_id) for event_id in received}) == 1


async def test_tail_exits_non_zero_with_the_reason(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    old, _ = await answer(http, "c-tail", "first", 8)
    position = event_ids(old)[2]
    complete = await tail("c-tail", "--url", server.url, "--raw", "--from", position)
    assert complete.returncode == 0 and complete.stdout == old[event_offset(position) :]
    await answer(http, "c-tail", "second", 8)
    replaced = await tail("c-tail", "--url", server.url, "--from", position)
    assert replaced.returncode == 1 and b"Stream replaced" in replaced.stderr
    assert replaced.stdout.strip() == b""  # not a byte of the new answer
    await http.delete("/v1/stream/c-tail")
    stopped = await tail("c-tail", "--url", server.url)
    assert stopped.returncode == 1 and b"Stream stopped" in stopped.stderr


async def test_tail_following_a_stream_stopped_elsewhere_exits_1(
    start_server: StartServer,
) -> None:
    server = await start_server(demo_tps=10)  # the answer takes about half a minute
    http = httpx.AsyncClient(base_url=server.url, timeout=10)
    started = http.stream(
        "POST",
        "/v1/chat/completions",
        json=chat_body("tail this", max_tokens=5000),
        headers={"X-Conversation-Id": "c-live-tail"},
    )
    async with started as response:
        assert response.status_code == 200
        out = Printed()
        async with trio.open_nursery() as nursery:
            tailed: list[Tailed] = []

            async def follow() -> None:
                tailed.append(await tail("c-live-tail", "--url", server.url, out=out))

            nursery.start_soon(follow)
            with trio.fail_after(30):
                # It is following the answer: stop it once it has printed the answer's start.
                while b"tail this" not in out.getvalue():
                    await out.grown.wait()
                await http.delete("/v1/stream/c-live-tail")
    [ended] = tailed
    printed, errors, status = ended.stdout, ended.stderr, ended.returncode
    await http.aclose()
    assert status == 1, (errors, printed[-300:])
    assert b"stream stopped" in errors.lower()
    assert printed.decode().strip() and "tail this" in printed.decode()


async def test_lookup_says_where_the_retained_bytes_start(start_server: StartServer) -> None:
    server = await start_server(session_max_bytes=3000)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        whole, generation = await answer(http, "c-long", "longer than the cap", 60)
        [info] = (
            await http.post("/v1/streams/lookup", json={"conversation_ids": ["c-long"]})
        ).json()
        assert info["generation"] == generation
        assert info["dropped_prefix"] == len(whole) - 3000 > 0
        lost = await http.get("/v1/stream/c-long", params={"from": 0})
        assert_error(lost, 400, "Stream offset lost", "invalid_request_error")
        kept = await http.get(
            "/v1/stream/c-long",
            params={"from": info["dropped_prefix"], "generation": generation},
        )
        assert kept.status_code == 200 and kept.content == whole[info["dropped_prefix"] :]
