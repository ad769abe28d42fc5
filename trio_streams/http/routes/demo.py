"""The OpenAI-compatible endpoints served by the embedded demo model.

A streaming request with ``X-Conversation-Id`` starts (or replaces) a session before the
first token exists; its response is a reader of that session from offset 0, so the client
that started it and a client that resumes it read exactly the same bytes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from trio_streams.core.errors import INVALID_REQUEST
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.http import auth, validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.routes.chat_start import StartChatStream
from trio_streams.http.routes.streams import stream_response
from trio_streams.producers.demo import MODEL_ID, DemoModel, DemoRequest
from trio_streams.stores.protocol import SessionStore, StreamHandle

logger = logging.getLogger("trio_streams")

CONVERSATION_HEADER = "X-Conversation-Id"
MIN_PING_INTERVAL = 0.001


class ModelNotFoundError(ApiError):
    """A request for a model the demo does not serve: ``404``, as OpenAI answers it.

    OpenAI's body is ``{"error": {"message", "type": "invalid_request_error", "param",
    "code": "model_not_found"}}``. Its ``code`` is a string that the OpenAI SDKs expose (as
    ``error.code``) and that clients match on, so this one error carries it where every
    other error of ours carries the HTTP status.
    """

    CODE = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            404, f"The model '{model}' does not exist; this server serves '{MODEL_ID}'"
        )

    def response(self) -> Response:
        error = {"code": self.CODE, "message": self.message, "type": INVALID_REQUEST}
        return json_response({"error": {**error, "param": "model"}}, self.status)


def completion_request(body: dict[str, Any], *, chat: bool) -> DemoRequest:
    """Validate the fields the demo model reads; a 400 names the first bad one.

    The demo serves one model, ``demo``; a request without ``model`` means it too. Any
    other model is a 404 (after the 400s: a malformed request is told what is malformed).
    """
    if "model" in body and not isinstance(body["model"], str):
        raise ApiError(400, "'model' must be a string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ApiError(400, "'stream' must be a boolean")
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "'messages' must be an array of message objects")
    else:
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str) and not (
            isinstance(prompt, list) and all(isinstance(p, str) for p in prompt)
        ):
            raise ApiError(400, "'prompt' must be a string or an array of strings")
    for field in ("max_tokens", "max_completion_tokens"):
        value = body.get(field)
        if isinstance(value, float) and value.is_integer():
            body[field] = value = int(value)  # JSON's 5.0 is the integer 5 (JSON Schema agrees)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ApiError(400, f"'{field}' must be a positive integer")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object")
    if options and not isinstance(options.get("include_usage", False), bool):
        raise ApiError(400, "'stream_options.include_usage' must be a boolean")
    model = body.get("model", MODEL_ID)
    if model != MODEL_ID:
        raise ModelNotFoundError(model)
    return DemoRequest.from_body(body, chat=chat)


def ping_interval(body: dict[str, Any]) -> float | None:
    """The per-request keep-alive interval (``sse_ping_interval``, as llama.cpp names it)."""
    value = body.get("sse_ping_interval")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, "'sse_ping_interval' must be a non-negative number of seconds")
    if value < 0:
        raise ApiError(400, "'sse_ping_interval' must be a non-negative number of seconds")
    if 0 < value < MIN_PING_INTERVAL:  # a near-zero interval would be a busy loop of pings
        raise ApiError(400, f"'sse_ping_interval' must be 0 or at least {MIN_PING_INTERVAL}")
    return float(value)


def conversation_header() -> str | None:
    """The request's ``X-Conversation-Id``, checked (``None`` when absent or empty)."""
    raw_id = request.headers.get(CONVERSATION_HEADER, "")
    return validation.checked_conversation_id(raw_id) if raw_id else None


async def start_session(
    store: SessionStore, producer: Producer, body: dict[str, Any], conversation_id: str | None
) -> StreamHandle:
    """Start (or replace) session ``conversation_id`` (``None``: a plain stream) running
    ``producer``, with the request's keep-alive interval and API key."""
    session = await store.start(
        conversation_id, producer, ping_interval=ping_interval(body), owner=auth.current_owner()
    )
    if conversation_id:
        logger.info("started stream %s", redact(conversation_id))
    return session


async def stream_session(store: SessionStore, producer: Producer, body: dict[str, Any]) -> Response:
    """Start a streaming request's session (``X-Conversation-Id``, or a plain stream) and
    answer with its stream, read from offset 0."""
    ping_interval(body)  # a bad interval is a 400 before a bad conversation id
    conversation_id = conversation_header()
    session = await start_session(store, producer, body, conversation_id)
    return stream_response(session, 0, owns_producer=conversation_id is None)


def register(app: QuartTrio, store: SessionStore, model: DemoModel) -> StartChatStream:
    """Add ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` to ``app``.

    Returns how other routes (the AI SDK's ``/api/chat``) start a chat stream on the demo.
    """

    async def start_chat(body: dict[str, Any], conversation_id: str) -> StreamHandle:
        demo_request = completion_request(body, chat=True)
        return await start_session(store, model.producer(demo_request), body, conversation_id)

    async def complete(*, chat: bool) -> Response:
        body = validation.json_object(await request.get_data(as_text=False))
        demo_request = completion_request(body, chat=chat)
        if not body.get("stream", False):
            ping_interval(body)  # validated alike, streaming or not
            conversation_header()
            return json_response(model.completion(demo_request))
        return await stream_session(store, model.producer(demo_request), body)

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Response:
        return await complete(chat=True)

    @app.post("/v1/completions")
    async def completions() -> Response:
        return await complete(chat=False)

    @app.get("/v1/models")
    async def models() -> Response:
        created = int(time.time())
        entry = {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "trio-streams"}
        return json_response({"object": "list", "data": [entry]})

    return start_chat
