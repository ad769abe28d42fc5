"""The demo model's ``/v1/responses``: OpenAI's event sequence for its deterministic text.

Streaming sends, as OpenAI does: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, then
``response.completed`` (or ``response.incomplete`` when ``max_output_tokens`` cut the
answer short), every event with its ``sequence_number``. The text is the one the chat
route gives for the same prompt.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from trio_streams.core.producer import StreamWriter
from trio_streams.producers.demo import MODEL_ID, DemoModel, answer_tokens
from trio_streams.producers.responses.events import encode_event
from trio_streams.producers.responses.objects import base_response, new_response_id

DEFAULT_MAX_OUTPUT_TOKENS = 256


@dataclass(frozen=True, slots=True)
class DemoResponseRequest:
    """The parts of a Responses request the demo model honours (validated by the caller)."""

    body: dict[str, Any]
    prompt: str
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> DemoResponseRequest:
        limit = body.get("max_output_tokens")
        return cls(
            body=body,
            prompt=input_text(body.get("input", "")),
            max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS if limit is None else int(limit),
        )

    def tokens(self) -> list[str]:
        return answer_tokens(self.prompt)[: self.max_output_tokens]

    @property
    def truncated(self) -> bool:
        return len(answer_tokens(self.prompt)) > self.max_output_tokens

    def usage(self) -> dict[str, Any]:
        input_tokens = len(self.prompt.split())
        output_tokens = len(self.tokens())
        return {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }


def input_text(value: object) -> str:
    """The user text of a Responses ``input``: a string, or messages (string content or
    ``input_text`` parts). Other roles and item types are not the demo's prompt."""
    if isinstance(value, str):
        return value
    texts: list[str] = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict) or item.get("role", "user") != "user":
            continue
        content = item.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "text")
            )
    return "\n".join(texts)


class DemoResponse:
    """One demo answer in the Responses API's shapes: events, and the whole object."""

    def __init__(self, request: DemoResponseRequest, response_id: str | None = None) -> None:
        self.request = request
        self.response_id = response_id or new_response_id()
        self.message_id = "msg_" + secrets.token_hex(24)
        self._base = base_response(self.response_id, request.body, model=MODEL_ID, background=False)

    def text(self) -> str:
        return "".join(self.request.tokens())

    def message(self, text: str, status: str) -> dict[str, Any]:
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": [self.part(text)] if status == "completed" else [],
        }

    @staticmethod
    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def final(self) -> dict[str, Any]:
        """The finished response object (the non-streaming answer, and the last event's)."""
        request = self.request
        response = copy.deepcopy(self._base)
        response["output"] = [self.message(self.text(), "completed")]
        response["usage"] = request.usage()
        if request.truncated:
            response["status"] = "incomplete"
            response["incomplete_details"] = {"reason": "max_output_tokens"}
            response["output"][0]["status"] = "incomplete"
        else:
            response["status"] = "completed"
        return response

    def events(self) -> Iterator[dict[str, Any]]:
        """The streamed events, in OpenAI's order, without their sequence numbers."""
        item = {"item_id": self.message_id, "output_index": 0}
        part = {**item, "content_index": 0}
        yield {"type": "response.created", "response": self._base}
        yield {"type": "response.in_progress", "response": self._base}
        yield {"type": "response.output_item.added", "output_index": 0,
               "item": self.message("", "in_progress")}  # fmt: skip
        yield {"type": "response.content_part.added", **part, "part": self.part("")}
        for token in self.request.tokens():
            yield {"type": "response.output_text.delta", **part, "delta": token, "logprobs": []}
        text = self.text()
        yield {"type": "response.output_text.done", **part, "text": text, "logprobs": []}
        yield {"type": "response.content_part.done", **part, "part": self.part(text)}
        final = self.final()
        yield {"type": "response.output_item.done", "output_index": 0, "item": final["output"][0]}
        kind = "response.incomplete" if self.request.truncated else "response.completed"
        yield {"type": kind, "response": final}


class DemoResponseProducer:
    """Streams one :class:`DemoResponse` at the model's pace; a
    :data:`~trio_streams.core.producer.Producer`."""

    def __init__(self, model: DemoModel, response: DemoResponse) -> None:
        self._model = model
        self._response = response

    async def __call__(self, writer: StreamWriter) -> None:
        events = enumerate(self._response.events())
        await self._model.pace(
            writer, (encode_event({**event, "sequence_number": index}) for index, event in events)
        )
