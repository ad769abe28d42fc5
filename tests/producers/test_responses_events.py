"""The events of a background response: numbered, re-identified, indexed, and read back."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from tests.responses_events import MESSAGE_ID, UPSTREAM_ID, llama_server_events
from trio_streams.core.producer import SessionWriter
from trio_streams.core.session import StreamSession
from trio_streams.producers.demo import DemoModel, answer_tokens
from trio_streams.producers.responses.assemble import ResponseAssembler
from trio_streams.producers.responses.background import BackgroundResponseProducer
from trio_streams.producers.responses.demo import (
    DemoResponse,
    DemoResponseProducer,
    DemoResponseRequest,
    input_text,
)
from trio_streams.producers.responses.events import ResponseEventNormalizer, event_payload

OURS = "resp_ours"
BASE = {"id": OURS, "object": "response", "status": "queued", "background": True,
        "model": "m", "output": []}  # fmt: skip


def normalized(raw_events: list[bytes]) -> list[dict[str, Any]]:
    normalizer = ResponseEventNormalizer(OURS, BASE)
    out = [normalizer.created()] + [normalizer.normalize(raw) for raw in raw_events]
    payloads = [event_payload(raw) for raw in out if raw]
    return [payload for payload in payloads if payload is not None]


def test_llama_server_events_get_numbers_our_id_and_their_indexes() -> None:
    events = normalized(llama_server_events(3))
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    # Our created first; the upstream's own is folded into the next snapshots.
    assert [event["type"] for event in events][:3] == [
        "response.created", "response.in_progress", "response.output_item.added",
    ]  # fmt: skip
    assert events[0]["response"]["status"] == "queued"
    snapshots = [event["response"] for event in events if "response" in event]
    assert {snapshot["id"] for snapshot in snapshots} == {OURS}
    assert UPSTREAM_ID not in json.dumps(events)
    assert all(snapshot["background"] is True and snapshot["model"] for snapshot in snapshots)
    for event in events:
        if event.get("item_id") == MESSAGE_ID or "item" in event:
            assert event["output_index"] == 0, event
        if event["type"].startswith(("response.output_text", "response.content_part")):
            assert event["content_index"] == 0, event
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["status"] == "completed"


def test_comments_and_non_json_pass_unchanged_and_unnumbered() -> None:
    normalizer = ResponseEventNormalizer(OURS, BASE)
    assert normalizer.normalize(b": ping\n\n") == b": ping\n\n"
    assert normalizer.normalize(b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
    assert normalizer.next_sequence == 0


def test_an_error_event_keeps_its_shape_and_gets_a_number() -> None:
    normalizer = ResponseEventNormalizer(OURS, BASE)
    raw = normalizer.normalize(b'data: {"error":{"code":502,"message":"lost","type":"x"}}\n\n')
    assert event_payload(raw) == {
        "error": {"code": 502, "message": "lost", "type": "x"}, "sequence_number": 0,
    }  # fmt: skip


def test_no_cancelled_event_after_the_end() -> None:
    normalizer = ResponseEventNormalizer(OURS, BASE)
    for raw in llama_server_events(2):
        normalizer.normalize(raw)
    assert normalizer.ended and normalizer.cancelled() == b""


def assembled(events: list[dict[str, Any]], *, finished: bool) -> dict[str, Any]:
    assembler = ResponseAssembler()
    for event in events:
        assembler.feed(event)
    return assembler.result(finished=finished)


def test_the_object_is_assembled_from_any_prefix_of_the_events() -> None:
    events = normalized(llama_server_events(5))
    text = "".join(f" token{index}" for index in range(5))
    assert assembled(events[:1], finished=False)["status"] == "queued"
    deltas = [i for i, event in enumerate(events) if event["type"].endswith("text.delta")]
    partway = assembled(events[: deltas[2] + 1], finished=False)
    assert partway["status"] == "in_progress"
    assert partway["output"][0]["content"][0]["text"] == text[: len(" token0 token1 token2")]
    whole = assembled(events, finished=True)
    assert whole["status"] == "completed" and whole["id"] == OURS
    assert whole["output"][0]["content"][0]["text"] == text
    # A log that ended without a terminal event (a shutdown) reads as failed.
    cut = assembled(events[: deltas[2] + 1], finished=True)
    assert cut["status"] == "failed" and cut["error"]["code"] == "server_error"


def test_an_in_band_error_fails_the_response() -> None:
    events = normalized(llama_server_events(2))[:4]
    events.append({"error": {"code": 502, "message": "upstream lost", "type": "server_error"}})
    result = assembled(events, finished=True)
    assert result["status"] == "failed"
    assert result["error"] == {"code": "server_error", "message": "upstream lost"}


def test_input_text_reads_strings_and_user_messages() -> None:
    assert input_text("hi") == "hi"
    messages = [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "input_text", "text": "two"}, {"type": "x"}]},
        "not an item",
    ]
    assert input_text(messages) == "one\ntwo"


async def run(producer: Any, session: StreamSession) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer, SessionWriter(session))


def demo_response(max_output_tokens: int) -> DemoResponse:
    body = {"input": "demo words", "max_output_tokens": max_output_tokens}
    return DemoResponse(DemoResponseRequest.from_body(body))


@pytest.mark.parametrize("limit", [5, 10_000])
async def test_the_demo_sends_openai_s_sequence(limit: int, autojump_clock: Any) -> None:
    session = StreamSession("s", 1 << 20)
    await run(DemoResponseProducer(DemoModel(20.0), demo_response(limit)), session)
    session.finalize()
    raw = b"".join([chunk async for chunk in session.read(0)])
    events = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]
    kinds = [event["type"] for event in events]
    tokens = answer_tokens("demo words")[:limit]
    end = "response.incomplete" if limit == 5 else "response.completed"
    assert kinds == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * len(tokens),
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        end,
    ]  # fmt: skip
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "".join(tokens)


async def test_a_cancelled_background_producer_writes_its_end(autojump_clock: Any) -> None:
    session = StreamSession("s", 1 << 20)
    normalizer = ResponseEventNormalizer(OURS, BASE)
    producer = BackgroundResponseProducer(
        DemoResponseProducer(DemoModel(20.0), demo_response(10_000)),
        normalizer,
        shutting_down=lambda: False,
    )
    with trio.move_on_after(1.0):
        with session.cancel_scope:
            await producer(SessionWriter(session))
    session.finalize()
    raw = b"".join([chunk async for chunk in session.read(0)])
    assert raw.count(b"event: response.cancelled\n") == 1
    result = assembled(
        [p for p in (event_payload(e + b"\n\n") for e in raw.split(b"\n\n")) if p],
        finished=True,
    )
    assert result["status"] == "cancelled"
    partial = result["output"][0]["content"][0]["text"]
    assert 0 < len(partial) < 200
    # A client that followed the stream gets the partial answer in the last event too.
    last = event_payload(raw.rsplit(b"\n\n", 2)[-2] + b"\n\n")
    assert last is not None and last["response"]["output"][0]["content"][0]["text"] == partial


def test_deltas_are_joined_once() -> None:
    """A long answer is assembled in linear time: its text is kept as pieces."""
    assembler = ResponseAssembler()
    for event in normalized(llama_server_events(3))[:4]:
        assembler.feed(event)
    delta = {"type": "response.output_text.delta", "item_id": MESSAGE_ID, "content_index": 0}
    for _ in range(100_000):
        assembler.feed({**delta, "delta": "ab"})
    assert assembler.output()[0]["content"][0]["text"] == "ab" * 100_000
