"""The AI SDK's chat transport (``useChat`` with ``resume: true``), served at ``/api/chat``.

``/api/chat`` is the AI SDK's default, so a React app whose requests reach trio-streams
there needs no transport options at all. The routes are a view of ordinary sessions:

- ``POST /api/chat`` starts (or replaces) the session whose conversation id is the chat's
  ``id``, generating through the same backend as ``/v1/chat/completions``, and answers the
  UI message stream;
- ``GET /api/chat/{id}/stream`` (the SDK's reconnect call) replays the session's answer from
  its start and follows it; ``204`` when the chat has no session;
- ``POST /api/chat/{id}/stop`` (the stop endpoint the AI SDK docs ask for, since the SDK's
  own ``stop()`` only aborts its fetch) cancels the generation; with the docs' body field
  ``activeStreamId`` (the generation the client saw, from ``X-Stream-Generation``) it
  leaves a newer generation alone.

The session stores the model's chat completion chunks, so ``/v1/stream/{id}``, lookup,
DELETE, the limits, the keys and the Redis store all see the same session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from trio_streams.core.end_reasons import StreamGoneError
from trio_streams.core.session import OffsetLostError
from trio_streams.core.ui_message_stream import UI_MESSAGE_STREAM_HEADER, UIMessageStreamTranslator
from trio_streams.core.ui_messages import UIMessageError, chat_messages
from trio_streams.http import auth, validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.routes.chat_start import StartChatStream
from trio_streams.http.routes.streams import GENERATION_HEADER, STREAM_HEADERS
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.stores.protocol import SessionStore, StreamHandle

PREFIX = "/api/chat"
#: Fields of the SDK's request body that describe the chat, not the model call; every
#: other field (``model``, ``temperature``, … set through the transport's ``body``) is
#: passed on to the chat completion.
_CHAT_FIELDS = frozenset({"id", "messages", "trigger", "messageId"})
TRIGGERS = ("submit-message", "regenerate-message")


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The streaming chat completion request for the SDK's request ``body``."""
    trigger = body.get("trigger", "submit-message")
    if trigger not in TRIGGERS:
        raise ApiError(400, f"'trigger' must be one of {', '.join(TRIGGERS)}")
    if not isinstance(body.get("messageId"), str | None):
        raise ApiError(400, "'messageId' must be a string or null")
    try:
        messages = chat_messages(body.get("messages"))
    except UIMessageError as exc:
        raise ApiError(400, str(exc)) from None
    passed_on = {key: value for key, value in body.items() if key not in _CHAT_FIELDS}
    return {**passed_on, "messages": messages, "stream": True}


def ui_message_stream_response(session: StreamHandle) -> Response:
    """The UI message stream of ``session``, translated from its first byte as it is read."""

    async def body() -> AsyncIterator[bytes]:
        translator = UIMessageStreamTranslator()
        try:
            async with aclosing(session.read(0)) as chunks:
                async for chunk in chunks:
                    parts = translator.feed(chunk)
                    if parts:
                        yield parts
        except OffsetLostError:
            yield translator.error("The answer outgrew the session's byte cap")
            return
        # Stopped, replaced, the server going away: the SDK learns it as a part of its own.
        ending = translator.end(session.ending())
        if ending:
            yield ending

    headers = {
        **STREAM_HEADERS,
        UI_MESSAGE_STREAM_HEADER[0]: UI_MESSAGE_STREAM_HEADER[1],
        GENERATION_HEADER: session.generation,
    }
    return EventStreamResponse(body(), headers=headers)


def register(app: QuartTrio, store: SessionStore, start_chat: StartChatStream) -> None:
    """Add ``/api/chat`` and its reconnect and stop routes to ``app``."""

    @app.post(PREFIX)
    async def send_messages() -> Response:
        body = validation.json_object(await request.get_data(as_text=False))
        raw_id = body.get("id")
        if not isinstance(raw_id, str) or not raw_id:
            raise ApiError(400, "'id' (the chat id) must be a non-empty string")
        chat_id = validation.checked_conversation_id(raw_id)
        started = await start_chat(chat_body(body), chat_id)
        if isinstance(started, Response):  # the model server refused the request
            return started
        return ui_message_stream_response(started)

    @app.get(f"{PREFIX}/<path:chat_id>/stream")
    async def reconnect(chat_id: str) -> Response:
        conversation_id = validation.conversation_id(chat_id)
        try:
            session = await store.open(conversation_id, 0, owner=auth.current_owner())
        except OffsetLostError:
            raise ApiError(400, "Stream offset lost: the answer outgrew the byte cap") from None
        except StreamGoneError:  # stopped or evicted: nothing is active to resume
            session = None
        if session is None:
            return Response("", status=204)
        return ui_message_stream_response(session)

    @app.post(f"{PREFIX}/<path:chat_id>/stop")
    async def stop(chat_id: str) -> Response:
        conversation_id = validation.conversation_id(chat_id)
        owner = auth.current_owner()
        body = validation.json_object(await request.get_data(as_text=False) or b"{}")
        pinned = body.get("activeStreamId")
        if not isinstance(pinned, str | None):
            raise ApiError(400, "'activeStreamId' must be a string or null")
        if not isinstance(body.get("assistantMessage"), dict | None):
            raise ApiError(400, "'assistantMessage' must be a UI message object or null")
        # Pinned to the generation the client was showing (the X-Stream-Generation of its
        # stream), a stop that arrives after a newer message started leaves that one alone.
        await store.stop(conversation_id, owner=owner, generation=pinned or None)
        return json_response({"success": True})
