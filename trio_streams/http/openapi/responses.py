"""The OpenAPI description of ``/v1/responses`` and its background-mode routes.

Served with the demo model and with ``--upstream`` alike: a background response is a
session of trio-streams in either case (:mod:`trio_streams.http.routes.responses`).
"""

from __future__ import annotations

from typing import Any

from trio_streams.http.openapi.parts import (
    CONVERSATION_HEADER,
    CONVERSATION_ID_SCHEMA,
    ERROR_REF,
    JSON,
    MODEL_NOT_FOUND,
    SSE,
    STREAM_RESPONSE,
    refs,
)

_RESPONSE_REF = {"$ref": "#/components/schemas/ResponseObject"}
_RESPONSE_ID = {
    "name": "response_id",
    "in": "path",
    "required": True,
    "schema": {**CONVERSATION_ID_SCHEMA, "pattern": "^[!-.0-~]+$"},
    "description": "The id POST /v1/responses answered with ('resp_...').",
}

SCHEMAS: dict[str, Any] = {
    "ResponsesRequest": {
        "type": "object",
        "description": "OpenAI's Responses request. The demo reads 'input' (a string, or "
        "messages whose user text it echoes) and 'max_output_tokens'; the proxy passes "
        "the body to the upstream.",
        "properties": {
            "model": {"type": "string"},
            "input": {"anyOf": [{"type": "string"}, {"type": "array"}]},
            "stream": {"type": "boolean"},
            "background": {
                "type": "boolean",
                "description": "Run it as a session of trio-streams: answer at once (or "
                "stream), then GET, resume and cancel it by its id.",
            },
            "store": {"type": "boolean"},
            "max_output_tokens": {"type": ["integer", "null"], "minimum": 1},
            "sse_ping_interval": {
                "type": ["number", "null"],
                "anyOf": [{"const": 0}, {"minimum": 0.001}],
            },
        },
        # OpenAI's rule: a background response is stored.
        "not": {
            "required": ["background", "store"],
            "properties": {"background": {"const": True}, "store": {"const": False}},
        },
    },
    "ResponseObject": {
        "type": "object",
        "required": ["id", "object", "status", "output"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "status": {
                "enum": [
                    "queued",
                    "in_progress",
                    "completed",
                    "incomplete",
                    "failed",
                    "cancelled",
                ]
            },
            "background": {"type": ["boolean", "null"]},
            "output": {"type": "array", "items": {"type": "object"}},
            "error": {"type": ["object", "null"]},
        },
    },
}

_EVENTS = (
    "Responses events ('event:' and 'data:'), each with its 'sequence_number'; a response "
    "stopped by /cancel ends with 'response.cancelled'."
)

PATHS: dict[str, Any] = {
    "/v1/responses": {
        "post": {
            "summary": "Create a response (OpenAI Responses API); with background: true it "
            "is a session of trio-streams whatever serves the model.",
            "parameters": [CONVERSATION_HEADER],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/ResponsesRequest"}}},
            },
            "responses": {
                "200": {
                    "description": 'With "stream": true the SSE stream; otherwise the '
                    "response object (background: at once, status 'queued').",
                    "headers": STREAM_RESPONSE["headers"],
                    "content": {
                        SSE: {"schema": {"$ref": "#/components/schemas/SseEvent"}},
                        JSON: {"schema": {}},
                    },
                },
                **refs("400", "401", "409", "413", "429", "503"),
                "404": {
                    "description": "No such model.",
                    "content": {JSON: {"schema": {"anyOf": [MODEL_NOT_FOUND, ERROR_REF]}}},
                },
                "502": {"description": "The upstream model server failed (proxy only)."},
                "504": {"description": "The upstream model server timed out (proxy only)."},
            },
        }
    },
    "/v1/responses/{response_id}": {
        "get": {
            "summary": "A background response: its object, or (stream=true) its events "
            "after 'starting_after', then the live ones.",
            "parameters": [
                _RESPONSE_ID,
                {"name": "stream", "in": "query", "schema": {"enum": ["true", "false"]}},
                {
                    "name": "starting_after",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "With stream=true: the sequence number of the last "
                    "event the client has. Absent: every event from the first.",
                },
            ],
            "responses": {
                "200": {
                    "description": "The response object; with stream=true, " + _EVENTS,
                    "headers": STREAM_RESPONSE["headers"],
                    "content": {
                        JSON: {"schema": _RESPONSE_REF},
                        SSE: {"schema": {"$ref": "#/components/schemas/SseEvent"}},
                    },
                },
                **refs("400", "401", "404", "503"),
            },
        }
    },
    "/v1/responses/{response_id}/cancel": {
        "post": {
            "summary": "Cancel a background response: its producer stops, its status "
            "becomes 'cancelled', its partial output stays. Cancelling again is not an "
            "error; a response that had ended keeps its status.",
            "parameters": [_RESPONSE_ID],
            "responses": {
                "200": {
                    "description": "The response object.",
                    "content": {JSON: {"schema": _RESPONSE_REF}},
                },
                **refs("400", "401", "404", "503"),
            },
        }
    },
}
