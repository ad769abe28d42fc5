"""The OpenAPI paths of the AI SDK's chat transport (:mod:`trio_streams.http.routes.ai_sdk`)."""

from __future__ import annotations

from typing import Any

from trio_streams.http.openapi.parts import (
    CONVERSATION_ID_SCHEMA,
    JSON,
    SSE,
    STREAM_RESPONSE,
    refs,
)

_CHAT_ID = {
    "name": "chat_id",
    "in": "path",
    "required": True,
    "description": "The chat's id: the session's conversation id, percent-encoded.",
    "schema": CONVERSATION_ID_SCHEMA,
}
_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string", "minLength": 1}},
}
_UI_MESSAGE = {
    "type": "object",
    "required": ["role", "parts"],
    "properties": {
        "role": {"enum": ["system", "user", "assistant"]},
        "parts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"type": "string"}},
            },
            "description": "Text parts are sent on, and images (file parts) of user "
            "messages; reasoning, steps and tool parts are not.",
            "contains": _TEXT_PART,
        },
    },
}
_UI_MESSAGE_STREAM = {
    "description": "The AI SDK's UI message stream (SSE 'data:' parts, then [DONE]), "
    "translated from the session's chat completion chunks.",
    "headers": {
        **STREAM_RESPONSE["headers"],
        "x-vercel-ai-ui-message-stream": {"schema": {"const": "v1"}},
        "X-Stream-Generation": {
            "description": "The session's generation: the activeStreamId of a later stop.",
            "schema": {"type": "string"},
        },
    },
    "content": {
        SSE: {
            "schema": {
                "type": "object",
                "description": "One event: its data is a JSON part ({type, ...}) or [DONE].",
                "required": ["data"],
                "properties": {"data": {"type": "string"}},
            }
        }
    },
}

AI_SDK_PATHS: dict[str, Any] = {
    "/api/chat": {
        "post": {
            "summary": "AI SDK useChat: start (or replace) the chat's session; the answer "
            "as a UI message stream.",
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["id", "messages"],
                            "properties": {
                                "id": CONVERSATION_ID_SCHEMA,
                                "messages": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": _UI_MESSAGE,
                                },
                                "trigger": {"enum": ["submit-message", "regenerate-message"]},
                                "messageId": {"type": ["string", "null"]},
                            },
                            "description": "Any other field (model, temperature, ...) is "
                            "passed on to the chat completion.",
                        }
                    }
                },
            },
            "responses": {
                "200": _UI_MESSAGE_STREAM,
                **refs("400", "401", "409", "413", "429", "503"),
                "404": {
                    "description": "No such model.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                },
            },
        }
    },
    "/api/chat/{chat_id}/stream": {
        "get": {
            "summary": "AI SDK reconnect: the chat's answer replayed from its start, then "
            "followed; 204 when the chat has no session.",
            "parameters": [_CHAT_ID],
            "responses": {
                "200": _UI_MESSAGE_STREAM,
                "204": {"description": "No session for this chat (none, stopped or expired)."},
                **refs("400", "401"),
            },
        }
    },
    "/api/chat/{chat_id}/stop": {
        "post": {
            "summary": "Stop the chat's generation (the SDK's stop() only aborts its fetch).",
            "parameters": [_CHAT_ID],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "activeStreamId": {
                                    "type": ["string", "null"],
                                    "description": "The generation the client was showing "
                                    "(X-Stream-Generation): a newer one is left alone.",
                                },
                                "assistantMessage": {
                                    "type": ["object", "null"],
                                    "description": "Accepted and ignored: the session "
                                    "already holds what the model wrote.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "Always, found or not.",
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"success": {"const": True}},
                            }
                        }
                    },
                },
                **refs("400", "401"),
            },
        }
    },
}
