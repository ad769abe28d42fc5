"""The AI SDK's UI message stream, translated from chat completion chunks (pure, no I/O)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.core.end_reasons import EndReason
from trio_streams.core.sse import PING
from trio_streams.core.ui_message_stream import UIMessageStreamTranslator
from trio_streams.core.ui_messages import UIMessageError, chat_messages


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    payload = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "choices": [choice]}
    # As the session stores it: with the ``id:`` line the writer stamps.
    return b"data: " + json.dumps(payload).encode() + b"\nid: 99\n\n"


STREAM = b"".join(
    [
        chunk({"role": "assistant", "content": ""}),
        PING,
        chunk({"reasoning_content": "Hmm"}),
        chunk({"content": "Hel"}),
        chunk({"content": "second choice"}, index=1),
        chunk({"content": "lo"}, finish="content_filter"),
        b'data: {"id":"chatcmpl-7","choices":[],"usage":{"total_tokens":3}}\n\n',
        b"data: [DONE]\nid: 120\n\n",
        b'data: {"choices":[{"index":0,"delta":{"content":"after the end"}}]}\n\n',
    ]
)


def translated(pieces: list[bytes]) -> bytes:
    translator = UIMessageStreamTranslator()
    out = b"".join(translator.feed(piece) for piece in pieces)
    assert translator.has_ended
    return out


def parts(raw: bytes) -> list[Any]:
    found: list[Any] = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: "):
            data = event[len(b"data: ") :]
            found.append("[DONE]" if data == b"[DONE]" else json.loads(data))
        elif event:
            found.append(event.decode())
    return found


def test_a_whole_answer() -> None:
    assert parts(translated([STREAM])) == [
        {"type": "start", "messageId": "chatcmpl-7"},
        {"type": "start-step"},
        ": ping",
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "Hmm"},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Hel"},
        {"type": "text-delta", "id": "text-2", "delta": "lo"},
        {"type": "text-end", "id": "text-2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "content-filter"},
        "[DONE]",
    ]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_the_same_parts_however_the_bytes_are_cut(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(STREAM)]
    pieces = [STREAM[start:end] for start, end in itertools.pairwise(edges)]
    assert translated(pieces) == translated([STREAM])


def test_an_error_event_ends_the_message_with_an_error_part() -> None:
    translator = UIMessageStreamTranslator()
    out = translator.feed(chunk({"content": "Hi"}))
    out += translator.feed(
        b'data: {"error":{"code":502,"message":"lost","type":"server_error"}}\n\n'
    )
    assert translator.has_ended
    assert parts(out)[-2:] == [
        {"type": "text-end", "id": "text-1"},
        {"type": "error", "errorText": "lost"},
    ]
    assert translator.feed(chunk({"content": "more"})) == b""


def test_abort_closes_what_is_open() -> None:
    translator = UIMessageStreamTranslator()
    translator.feed(chunk({"reasoning_content": "a"}))
    assert parts(translator.abort("stopped")) == [
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "abort", "reason": "stopped"},
    ]


@pytest.mark.parametrize(
    ("openai", "sdk"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "tool-calls"), ("weird", "other")],
)
def test_finish_reasons(openai: str, sdk: str) -> None:
    out = translated([chunk({"content": "x"}, finish=openai), b"data: [DONE]\n\n"])
    assert {"type": "finish", "finishReason": sdk} in parts(out)


def test_ui_messages_become_chat_messages() -> None:
    assert chat_messages(
        [
            {"role": "user", "parts": [{"type": "text", "text": "first"}]},
            {"role": "assistant", "parts": [{"type": "reasoning", "text": "only thoughts"}]},
            {
                "role": "user",
                "parts": [
                    {"type": "file", "mediaType": "text/plain", "url": "x"},
                    {"type": "text", "text": "hi"},
                ],
            },
        ]
    ) == [{"role": "user", "content": "first"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (None, "'messages' must be a non-empty array"),
        ([], "'messages' must be a non-empty array"),
        (["hi"], "'messages[0]' must be an object"),
        (
            [{"role": "user", "parts": [{"text": "no type"}]}],
            "'messages[0].parts[0]' must be a typed",
        ),
        ([{"role": "user", "parts": [{"type": "text", "text": 3}]}], "'messages[0].parts[0].text'"),
        ([{"role": "user", "parts": [{"type": "step-start"}]}], "'messages' has no text"),
    ],
)
def test_ui_messages_that_are_not(messages: object, message: str) -> None:
    with pytest.raises(UIMessageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        chat_messages(messages)


@pytest.mark.parametrize(
    ("reason", "last"),
    [
        (EndReason.STOPPED, {"type": "abort", "reason": "stopped"}),
        (EndReason.REPLACED, {"type": "abort", "reason": "replaced"}),
        (EndReason.DONE, "[DONE]"),
    ],
)
def test_how_each_ending_ends_the_message(reason: EndReason, last: object) -> None:
    translator = UIMessageStreamTranslator()
    translator.feed(chunk({"content": "cut"}))
    ending = parts(translator.end(reason))
    assert ending[0] == {"type": "text-end", "id": "text-1"} and ending[-1] == last
    assert translator.end(reason) == b""  # ended once


@pytest.mark.parametrize("reason", [EndReason.SHUTDOWN, EndReason.EVICTED, None])
def test_other_endings_are_errors_that_say_what_happened(reason: EndReason | None) -> None:
    translator = UIMessageStreamTranslator()
    error = parts(translator.end(reason))[-1]
    assert error["type"] == "error"
    assert ("resume" in error["errorText"].lower()) == (reason in (EndReason.SHUTDOWN, None))
    # A log that ended by itself (its [DONE]) is not ended a second time.
    done = UIMessageStreamTranslator()
    done.feed(b"data: [DONE]\n\n")
    assert done.end(reason) == b""
