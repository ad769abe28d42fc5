"""Responses API events as llama-server streams them, for the background-mode tests."""

from __future__ import annotations

import json
from typing import Any

UPSTREAM_ID = "resp_fromtheupstream"
MESSAGE_ID = "msg_fromtheupstream"


def _event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def llama_server_events(count: int) -> list[bytes]:
    """A streamed answer shaped like llama-server's: no sequence numbers, no indexes, its
    own response id, and terse response objects until the last one."""
    tokens = [f" token{index}" for index in range(count)]
    text = "".join(tokens)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {"type": "message", "status": "completed", "id": MESSAGE_ID, "content": [part],
            "role": "assistant"}  # fmt: skip
    terse = {"id": UPSTREAM_ID, "object": "response", "status": "in_progress"}
    return [
        _event("response.created", response=terse),
        _event("response.in_progress", response=terse),
        _event("response.output_item.added", item={**item, "status": "in_progress", "content": []}),
        _event("response.content_part.added", item_id=MESSAGE_ID, part={**part, "text": ""}),
        *[
            _event("response.output_text.delta", item_id=MESSAGE_ID, delta=token)
            for token in tokens
        ],
        _event("response.output_text.done", item_id=MESSAGE_ID, text=text),
        _event("response.content_part.done", item_id=MESSAGE_ID, part=part),
        _event("response.output_item.done", item=item),
        _event(
            "response.completed",
            response={**terse, "status": "completed", "model": "fake-model", "output": [item]},
        ),
    ]
