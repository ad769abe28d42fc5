"""The Responses API's response object, as trio-streams writes it before a model answers.

The fields follow OpenAI's reference (and the ``openai`` SDK's ``Response`` type): what the
request asked for is echoed, what only the model knows (output, usage) starts empty.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

#: Request fields the response object echoes as they were sent.
_ECHOED = (
    "instructions",
    "max_output_tokens",
    "previous_response_id",
    "temperature",
    "top_p",
    "user",
)


def new_response_id() -> str:
    """A fresh id in OpenAI's form: ``resp_`` and 48 hex digits, unguessable (it is the
    only key to the response, as a conversation id is to its stream)."""
    return "resp_" + secrets.token_hex(24)


def base_response(
    response_id: str, body: dict[str, Any], *, model: str, background: bool
) -> dict[str, Any]:
    """The response object of a request ``body`` before the model has answered."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "queued" if background else "in_progress",
        "background": background,
        "error": None,
        "incomplete_details": None,
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "store": body.get("store", True) is not False,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": None,
    }
    for field in _ECHOED:
        response[field] = body.get(field)
    return response
