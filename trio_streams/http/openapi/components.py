"""The ``components`` of the OpenAPI document: security schemes, schemas, responses."""

from __future__ import annotations

from typing import Any

from trio_streams.core.end_reasons import EndReason
from trio_streams.http.openapi.parts import (
    COMMON_FIELDS,
    COMPLETION_RESPONSE,
    GENERATION_SCHEMA,
    MESSAGE,
    error_response,
)

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
    },
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "type"],
                    "properties": {
                        "code": {"type": "integer"},
                        "message": {"type": "string"},
                        "type": {
                            "type": "string",
                            "enum": [
                                "invalid_request_error",
                                "authentication_error",
                                "not_found_error",
                                "conflict_error",
                                "rate_limit_error",
                                "unavailable_error",
                                "server_error",
                            ],
                        },
                        "reason": {
                            "description": "Why the stream asked for ended, on the "
                            "errors that answer for one (404 stopped or evicted, 409 "
                            "replaced).",
                            "type": "string",
                            "enum": [reason.value for reason in EndReason],
                        },
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "sessions"],
            "properties": {
                "status": {"type": "string", "const": "ok"},
                "sessions": {"type": "integer", "minimum": 0},
            },
        },
        "Models": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"type": "string", "const": "list"},
                "data": {"type": "array", "items": {"type": "object"}},
            },
        },
        "ChatRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "messages": {"type": "array", "items": MESSAGE},
                **COMMON_FIELDS,
            },
        },
        "CompletionRequest": {
            "type": "object",
            "properties": {
                "prompt": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"type": "string"}},
                    ]
                },
                **COMMON_FIELDS,
            },
        },
        "Completion": COMPLETION_RESPONSE,
        "SseEvent": {
            "type": "object",
            "description": "One Server-Sent Event. The byte offsets that 'from' counts "
            "are offsets in the raw stream, ': ping' keep-alive comments included.",
            "properties": {
                "data": {"type": "string"},
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer"},
            },
        },
        "LookupRequest": {
            "type": "object",
            "properties": {
                "conversation_ids": {
                    "description": "An array of at most --max-lookup-ids (default "
                    "100) ids; non-string, empty or invalid ids are ignored. Anything "
                    "but an array gives [] (as the reference does).",
                    "anyOf": [{"type": "array", "maxItems": 100}, {"not": {"type": "array"}}],
                }
            },
        },
        "SessionInfo": {
            "type": "object",
            "required": [
                "conversation_id",
                "is_done",
                "total_bytes",
                "started_at",
                "completed_at",
                "generation",
                "dropped_prefix",
            ],
            "properties": {
                "conversation_id": {"type": "string"},
                "is_done": {"type": "boolean"},
                "total_bytes": {"type": "integer", "minimum": 0},
                "started_at": {"type": "integer"},
                "completed_at": {"type": "integer", "description": "0 while running."},
                "generation": {
                    **GENERATION_SCHEMA,
                    "description": "The current generation: every start or replacement "
                    "is a new one. Pin it to resume ('generation').",
                },
                "dropped_prefix": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Where the retained bytes start: a resume from below "
                    "it is a 400 (offset lost), from it gets all that is kept.",
                },
            },
        },
    },
    "responses": {
        "400": error_response("Invalid request: a bad id, offset, body or field."),
        "401": error_response(
            "Missing or invalid API key (only when keys are configured).",
            **{"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
        ),
        "404": error_response(
            "Stream not found or expired (or another key's); a stream stopped (DELETE) "
            "or evicted within the TTL says so in its message and 'reason'; on any route, "
            "a path that names no route (a path id with a line break never does)."
        ),
        "409": error_response("The conversation id belongs to another API key's session."),
        "413": error_response("The request body is larger than --max-body-bytes."),
        "429": error_response(
            "At capacity: only running streams hold the limits.",
            **{"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
        ),
        "503": error_response("The server is shutting down."),
    },
}
