"""The building blocks of the OpenAPI document: parameters, responses, operations.

Shared by the routes the server always has and by the proxy's (``serve --upstream``).
"""

from __future__ import annotations

from typing import Any

from trio_streams.core.generations import GENERATION_LENGTH
from trio_streams.http.validation import MAX_CONVERSATION_ID_LENGTH, MAX_OFFSET

JSON = "application/json"
SSE = "text/event-stream"
ERROR_REF = {"$ref": "#/components/schemas/Error"}
#: OpenAI's own error for an unknown model: its ``code`` is a string, not the status.
MODEL_NOT_FOUND: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "type", "param"],
            "properties": {
                "code": {"const": "model_not_found"},
                "message": {"type": "string"},
                "type": {"const": "invalid_request_error"},
                "param": {"const": "model"},
            },
        }
    },
}
CONVERSATION_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_CONVERSATION_ID_LENGTH,
    "pattern": "^[!-~]+$",
    "description": "Visible ASCII only; treat it as a secret. '<id>::<model>' is a "
    "per-model variant found by lookup of '<id>'.",
}


def error_response(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def refs(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{code}"} for code in codes}


GENERATION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": f"^[0-9a-f]{{{GENERATION_LENGTH}}}$",
}
STREAM_RESPONSE: dict[str, Any] = {
    "description": "The session's Server-Sent Events bytes from the offset on, following "
    "the stream until it is finalized. Each event's id is '<generation>-<offset after "
    "it>'. A stream that ended without its answer (stopped, replaced, evicted) or whose "
    "server is shutting down (resume elsewhere) ends with one more event, outside the "
    "session's bytes (no id, no offset): ': end <reason>' then an OpenAI-shaped error "
    "whose type is stream_stopped, stream_replaced, stream_evicted or server_shutdown.",
    "headers": {
        "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
        "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
        "X-Stream-Generation": {
            "description": "The generation this response reads: pin it to resume.",
            "schema": GENERATION_SCHEMA,
        },
    },
    "content": {SSE: {"schema": {"$ref": "#/components/schemas/SseEvent"}}},
}

CONV_QUERY = {
    "name": "conv_id",
    "in": "query",
    "required": True,
    "description": "The conversation id (query form; missing or empty is a 400).",
    "schema": CONVERSATION_ID_SCHEMA,
}
CONV_PATH = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "description": "The conversation id, percent-encoded; it may contain '/'.",
    "schema": CONVERSATION_ID_SCHEMA,
}
FROM_QUERY = {
    "name": "from",
    "in": "query",
    "required": False,
    "description": "Byte offset to read from (absent or empty: 0). Past the end of a "
    "finished stream it is a 400; a live stream waits for it.",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
}
GENERATION_QUERY = {
    "name": "generation",
    "in": "query",
    "required": False,
    "description": "Pins the resume to this generation (lookup's 'generation', or the "
    "X-Stream-Generation of the response that started it): if the session was replaced "
    "since, the answer is a 409, never bytes of the new generation. Without it, 'from' "
    "reads the current generation (llama.cpp's meaning); empty is the same as absent.",
    "schema": {"anyOf": [GENERATION_SCHEMA, {"const": ""}]},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Sent by a reconnecting EventSource: the id of the last event it got, "
    "'<generation>-<offset>' (pinned, as with 'generation') or a plain byte offset. It "
    "wins over 'from' (and its generation over 'generation'); anything else is a 400.",
    "schema": {
        "type": "string",
        "pattern": f"^(([0-9a-f]{{{GENERATION_LENGTH}}}-)?[0-9]{{1,18}})?$",
    },
}
REPLACED_RESPONSE = {
    "description": "The pinned generation was replaced by a newer request with this "
    "conversation id (type conflict_error, reason 'replaced').",
    "content": {JSON: {"schema": ERROR_REF}},
}
CONVERSATION_HEADER = {
    "name": "X-Conversation-Id",
    "in": "header",
    "required": False,
    "description": "Starts (or replaces) the resumable session with this id; without it "
    "(or empty) the stream is plain and stops when its client leaves.",
    "schema": {"type": "string", "maxLength": MAX_CONVERSATION_ID_LENGTH, "pattern": "^[!-~]*$"},
}


def read_operation(parameters: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [*parameters, FROM_QUERY, GENERATION_QUERY, LAST_EVENT_ID],
        "responses": {
            "200": STREAM_RESPONSE,
            **refs("400", "401", "404"),
            "409": REPLACED_RESPONSE,
        },
    }


STOP_GENERATION_QUERY = {
    **GENERATION_QUERY,
    "description": "Stops the session only if this is still its generation (lookup's "
    "'generation', or the X-Stream-Generation of the response that started it), checked "
    "and stopped in one step: a newer generation started meanwhile is left alone, and "
    "the answer is still a 204. Empty is the same as absent.",
}


def stop_operation(parameters: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [*parameters, STOP_GENERATION_QUERY],
        "responses": {
            "204": {
                "description": "Always, found or not: the producer is cancelled, the "
                "session evicted and finalized, its readers end (with 'generation', only "
                "if that is still the session's generation)."
            },
            **refs("400", "401", "404"),
        },
    }


def completion_operation(summary: str, request_schema: str, response_schema: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [CONVERSATION_HEADER],
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{request_schema}"}}},
        },
        "responses": {
            "200": {
                "description": 'With "stream": true the SSE stream (a reader of the '
                "session from offset 0); otherwise the whole completion as JSON.",
                "headers": STREAM_RESPONSE["headers"],
                "content": {
                    SSE: {"schema": {"$ref": "#/components/schemas/SseEvent"}},
                    JSON: {"schema": {"$ref": f"#/components/schemas/{response_schema}"}},
                },
            },
            **refs("400", "401", "409", "413", "429", "503"),
            "404": {
                "description": "No such model: the demo serves 'demo' (also when 'model' is "
                "absent) and answers any other as OpenAI does, code 'model_not_found'; the "
                "proxy answers not_found_error when no upstream serves it.",
                "content": {JSON: {"schema": {"anyOf": [MODEL_NOT_FOUND, ERROR_REF]}}},
            },
        },
    }


#: Messages are checked only as far as the demo model reads them: user messages' text.
MESSAGE = {"type": "object"}
COMMON_FIELDS: dict[str, Any] = {
    "model": {"type": "string", "description": "The demo serves 'demo', the default."},
    "stream": {"type": "boolean"},
    "max_tokens": {"type": ["integer", "null"], "minimum": 1},
    "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
    "stream_options": {
        "type": ["object", "null"],
        "properties": {"include_usage": {"type": "boolean"}},
    },
    "sse_ping_interval": {
        "type": ["number", "null"],
        "description": "Seconds of silence before a ': ping' comment for this stream; 0 "
        "disables; otherwise at least 0.001.",
        "anyOf": [{"const": 0}, {"minimum": 0.001}],
    },
}
COMPLETION_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
    },
}
