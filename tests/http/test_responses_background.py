"""OpenAI Responses background mode, driven by the official ``openai`` SDK, unchanged.

Each scenario runs through the demo model and through a fake upstream that streams as
llama-server does (Responses event names, no ``sequence_number``, no indexes), on the
memory store and on the Redis store. With Redis there are two instances: the response is
created on one, and read, resumed and cancelled through the other.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import trio
from openai.types.responses import ResponseStreamEvent

from tests.conftest import StartServer
from tests.cutting_proxy import CuttingProxy
from tests.helpers import assert_error, openai_sdk
from tests.responses_events import UPSTREAM_ID, llama_server_events
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer
from trio_streams.testing.fake_upstream import FakeUpstream

PROMPT = "tell me about resumable responses"


@dataclass
class Setup:
    """Where the response is created (``server``), where it is read back (``other``)."""

    server: RunningServer
    other: RunningServer
    model: str
    #: The whole answer's text for ``PROMPT`` (with ``max_output_tokens`` high enough).
    text: str
    upstream: FakeUpstream | None = None

    def sdk(self, url: str | None = None) -> openai.OpenAI:
        base = url or self.server.url
        return openai_sdk(base)

    def other_sdk(self) -> openai.OpenAI:
        return self.sdk(self.other.url)


#: The ``-redis`` cases start a Redis server (through ``getfixturevalue``, which
#: tests/conftest.py cannot see): marked here, they stay out of the quick run.
REDIS = pytest.mark.redis


@pytest.fixture(
    params=[
        "demo-memory",
        pytest.param("demo-redis", marks=REDIS),
        "upstream-memory",
        pytest.param("upstream-redis", marks=REDIS),
    ]
)
async def setup(
    request: pytest.FixtureRequest, start_server: StartServer, nursery: trio.Nursery
) -> Setup:
    backend, store = request.param.split("-")
    # Only a test that cancels midway needs a slow demo model (``@pytest.mark.slow_demo``);
    # the others read a whole answer, which at 100 tokens/s would take 4 s.
    slow = request.node.get_closest_marker("slow_demo") is not None
    options: dict[str, Any] = {"demo_tps": 100.0 if slow else 2000.0}
    if store == "redis":
        options["store"] = request.getfixturevalue("redis_server").url
    upstream: FakeUpstream | None = None
    if backend == "upstream":
        upstream = FakeUpstream()
        stop = await upstream.start(nursery)
        request.addfinalizer(stop.set)
        upstream.script.events = llama_server_events(120)
        upstream.script.interval = 0.001
        options["upstreams"] = (upstream.url,)
    server = await start_server(**options)
    other = await start_server(**options) if store == "redis" else server
    if upstream is None:
        return Setup(server, other, "demo", "".join(answer_tokens(PROMPT)))
    text = "".join(f" token{index}" for index in range(120))
    return Setup(server, other, "fake-model", text, upstream)


def _text(events: list[ResponseStreamEvent]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def test_a_cut_stream_resumes_with_retrieve_starting_after(
    setup: Setup, nursery: trio.Nursery
) -> None:
    port = int(setup.server.url.rsplit(":", 1)[1])
    budgets = iter([3000])
    proxy = CuttingProxy(port, lambda: next(budgets, None), trigger=b"POST /v1/responses")
    await nursery.start(proxy.serve)

    def scenario() -> tuple[list[ResponseStreamEvent], list[ResponseStreamEvent]]:
        first: list[ResponseStreamEvent] = []
        stream = setup.sdk(proxy.url).responses.create(
            model=setup.model, input=PROMPT, background=True, stream=True, max_output_tokens=1000
        )
        with pytest.raises((openai.APIConnectionError, httpx.TransportError)):
            for event in stream:
                first.append(event)
        assert first and first[0].type == "response.created"
        response_id = first[0].response.id
        rest = setup.other_sdk().responses.retrieve(
            response_id, stream=True, starting_after=first[-1].sequence_number
        )
        return first, list(rest)

    first, rest = await trio.to_thread.run_sync(scenario)
    assert proxy.cuts == 1
    events = first + rest
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    response_id = events[0].response.id
    assert response_id.startswith("resp_") and response_id != UPSTREAM_ID
    lifecycle = [event for event in events if hasattr(event, "response")]
    assert {event.response.id for event in lifecycle} == {response_id}
    assert all(event.response.background for event in lifecycle)
    assert _text(events) == setup.text
    assert events[-1].response.output_text == setup.text
    assert {e.output_index for e in events if e.type == "response.output_text.delta"} == {0}


async def test_a_background_response_is_polled_until_completed(setup: Setup) -> None:
    def scenario() -> tuple[str, list[str], str, list[ResponseStreamEvent]]:
        created = setup.sdk().responses.create(
            model=setup.model, input=PROMPT, background=True, max_output_tokens=1000
        )
        statuses = [created.status]
        client = setup.other_sdk()
        deadline = time.monotonic() + 20
        while statuses[-1] != "completed" and time.monotonic() < deadline:
            time.sleep(0.02)
            statuses.append(client.responses.retrieve(created.id).status)
        final = client.responses.retrieve(created.id)
        replay = list(client.responses.retrieve(created.id, stream=True))
        return created.id, statuses, final.output_text, replay

    response_id, statuses, text, replay = await trio.to_thread.run_sync(scenario)
    assert statuses[0] == "queued"
    assert statuses[-1] == "completed"
    assert set(statuses) <= {"queued", "in_progress", "completed"}
    assert text == setup.text == _text(replay)
    assert [event.sequence_number for event in replay] == list(range(len(replay)))
    assert replay[0].type == "response.created" and replay[0].response.id == response_id


@pytest.mark.slow_demo  # slow enough to cancel midway
async def test_cancel_stops_the_producer_and_keeps_the_partial_output(setup: Setup) -> None:
    if setup.upstream is not None:
        setup.upstream.script.interval = 0.05  # long enough to be cancelled midway

    def scenario() -> tuple[Any, Any, Any, list[ResponseStreamEvent]]:
        created = setup.sdk().responses.create(
            model=setup.model, input=PROMPT, background=True, max_output_tokens=5000
        )
        client = setup.other_sdk()
        deadline = time.monotonic() + 20
        while not client.responses.retrieve(created.id).output_text:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cancelled = client.responses.cancel(created.id)
        again = setup.sdk().responses.cancel(created.id)  # twice is not an error
        later = client.responses.retrieve(created.id)
        return cancelled, again, later, list(client.responses.retrieve(created.id, stream=True))

    cancelled, again, later, replay = await trio.to_thread.run_sync(scenario)
    assert cancelled.status == again.status == later.status == "cancelled"
    partial = later.output_text
    assert partial and setup.text.startswith(partial) and partial != setup.text
    assert replay[-1].type == "response.cancelled"
    assert _text(replay) == partial
    if setup.upstream is not None:
        record = setup.upstream.streams[-1]
        with trio.fail_after(5):
            await record.gone.wait()  # the upstream saw its request closed
        assert not record.finished
    async with httpx.AsyncClient(base_url=setup.other.url) as http:
        found = await http.post("/v1/streams/lookup", json={"conversation_ids": [later.id]})
    assert found.json()[0]["is_done"] is True


async def test_errors_have_openai_shapes_and_codes(setup: Setup) -> None:
    def scenario() -> tuple[str, list[Exception]]:
        client = setup.sdk()
        created = client.responses.create(
            model=setup.model, input=PROMPT, background=True, max_output_tokens=4
        )
        while client.responses.retrieve(created.id).status in ("queued", "in_progress"):
            time.sleep(0.02)
        errors: list[Exception] = []
        for call in (
            lambda: client.responses.retrieve("resp_unknown"),
            lambda: client.responses.cancel("resp_unknown"),
            lambda: list(client.responses.retrieve(created.id, stream=True, starting_after=999)),
            lambda: client.responses.create(
                model=setup.model, input="x", background=True, store=False
            ),
        ):
            try:
                call()
            except openai.APIStatusError as error:
                errors.append(error)
        return created.id, errors

    response_id, errors = await trio.to_thread.run_sync(scenario)
    assert [type(error) for error in errors] == [
        openai.NotFoundError, openai.NotFoundError, openai.BadRequestError, openai.BadRequestError,
    ]  # fmt: skip
    assert "beyond the last event" in str(errors[2])
    assert "background can only be used when `store` is true" in str(errors[3])
    async with httpx.AsyncClient(base_url=setup.other.url) as http:
        url = f"/v1/responses/{response_id}"
        for bad in ("-1", "x", "1.5"):
            response = await http.get(url, params={"stream": "true", "starting_after": bad})
            assert_error(response, 400, "Invalid 'starting_after'", "invalid_request_error")
        unknown = await http.get("/v1/responses/resp_nope")
        assert_error(unknown, 404, "No response found", "not_found_error")


async def test_a_response_whose_log_lost_the_events_is_offset_lost(
    start_server: StartServer,
) -> None:
    server = await start_server(session_max_bytes=20000, demo_tps=2000.0)
    client = openai_sdk(server.url)

    def after(response_id: str, n: int | None) -> list[ResponseStreamEvent]:
        if n is None:
            return list(client.responses.retrieve(response_id, stream=True))
        return list(client.responses.retrieve(response_id, stream=True, starting_after=n))

    def create() -> str:
        created = client.responses.create(
            model="demo", input=PROMPT, background=True, max_output_tokens=1000
        )
        while client.responses.retrieve(created.id).status != "completed":
            time.sleep(0.02)
        return created.id

    response_id = await trio.to_thread.run_sync(create)
    async with httpx.AsyncClient(base_url=server.url) as http:
        found = await http.post("/v1/streams/lookup", json={"conversation_ids": [response_id]})
        total = found.json()[0]["total_bytes"]
        tail = await http.get(f"/v1/stream/{response_id}", params={"from": total - 3000})
    numbers = [int(n) for n in re.findall(rb'"sequence_number":([0-9]+)', tail.content)]
    last = numbers[-1]
    assert last > 200  # far more than 20000 bytes hold
    for lost in (None, 0, last - 100):
        with pytest.raises(openai.BadRequestError, match="offset lost"):
            await trio.to_thread.run_sync(after, response_id, lost)
    rest = await trio.to_thread.run_sync(after, response_id, last - 3)
    assert [event.sequence_number for event in rest] == [last - 2, last - 1, last]
    assert await trio.to_thread.run_sync(after, response_id, last) == []
    # The object still has its whole output: the terminal event carries it.
    final = await trio.to_thread.run_sync(lambda: client.responses.retrieve(response_id))
    assert final.output_text == "".join(answer_tokens(PROMPT))
