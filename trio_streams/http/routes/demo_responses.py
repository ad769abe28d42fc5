"""The demo model's ``POST /v1/responses``: streaming or whole, and in background mode.

Validation follows the chat route's: a 400 names the first bad field, then a model other
than ``demo`` is a 404.
"""

from __future__ import annotations

from typing import Any

from quart import Response, request

from trio_streams.core.producer import Producer
from trio_streams.http import validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.routes.demo import (
    ModelNotFoundError,
    conversation_header,
    ping_interval,
    stream_session,
)
from trio_streams.producers.demo import MODEL_ID, DemoModel
from trio_streams.producers.responses.demo import (
    DemoResponse,
    DemoResponseProducer,
    DemoResponseRequest,
)
from trio_streams.stores.protocol import SessionStore


def response_request(body: dict[str, Any]) -> DemoResponseRequest:
    """The fields of a Responses request that the demo reads, checked."""
    if "model" in body and not isinstance(body["model"], str):
        raise ApiError(400, "'model' must be a string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ApiError(400, "'stream' must be a boolean")
    if not isinstance(body.get("input", ""), str | list):
        raise ApiError(400, "'input' must be a string or an array of input items")
    limit = body.get("max_output_tokens")
    if isinstance(limit, float) and limit.is_integer():
        body["max_output_tokens"] = limit = int(limit)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ApiError(400, "'max_output_tokens' must be a positive integer")
    ping_interval(body)
    model = body.get("model", MODEL_ID)
    if model != MODEL_ID:
        raise ModelNotFoundError(model)
    return DemoResponseRequest.from_body(body)


class DemoResponses:
    """The demo's :class:`~trio_streams.http.routes.responses.ResponsesBackend`."""

    def __init__(self, store: SessionStore, model: DemoModel) -> None:
        self._store = store
        self._model = model

    async def plain(self) -> Response:
        body = validation.json_object(await request.get_data(as_text=False))
        response = DemoResponse(response_request(body))
        if not body.get("stream", False):
            conversation_header()  # checked alike, streaming or not
            return json_response(response.final())
        return await stream_session(self._store, DemoResponseProducer(self._model, response), body)

    def background(self, body: dict[str, Any]) -> tuple[Producer, str]:
        response = DemoResponse(response_request(body))
        return DemoResponseProducer(self._model, response), MODEL_ID
