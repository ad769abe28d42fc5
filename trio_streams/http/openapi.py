"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Written by hand (the routes are plain Quart handlers), and kept true by tests: every
route of the app appears here and nothing else does, and schemathesis checks real
responses of a live server against these schemas.
"""

from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any

from trio_streams.http.validation import MAX_CONVERSATION_ID_LENGTH

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


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _refs(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/{code}"} for code in codes}


STREAM_RESPONSE: dict[str, Any] = {
    "description": "The session's Server-Sent Events bytes from the offset on, following "
    "the stream until it is finalized.",
    "headers": {
        "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
        "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
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
    "description": "Byte offset to read from (absent or empty: 0).",
    "schema": {"type": "integer", "minimum": 0},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "Sent by a reconnecting EventSource: the id of the last event it got "
    "(a byte offset). It wins over 'from'; anything but decimal digits is a 400.",
    "schema": {"type": "string", "pattern": "^[0-9]*$"},
}
CONVERSATION_HEADER = {
    "name": "X-Conversation-Id",
    "in": "header",
    "required": False,
    "description": "Starts (or replaces) the resumable session with this id; without it "
    "(or empty) the stream is plain and stops when its client leaves.",
    "schema": {"type": "string", "maxLength": MAX_CONVERSATION_ID_LENGTH, "pattern": "^[!-~]*$"},
}


def _read(parameters: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [*parameters, FROM_QUERY, LAST_EVENT_ID],
        "responses": {"200": STREAM_RESPONSE, **_refs("400", "401", "404")},
    }


def _stop(parameters: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": parameters,
        "responses": {
            "204": {
                "description": "Always, found or not: the producer is cancelled, the "
                "session evicted and finalized, its readers end."
            },
            **_refs("400", "401", "404"),
        },
    }


def _completion(summary: str, request_schema: str, response_schema: str) -> dict[str, Any]:
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
            **_refs("400", "401", "409", "413", "429", "503"),
            "404": {
                "description": "No such model: the demo serves 'demo' (also when 'model' is "
                "absent) and answers any other as OpenAI does, code 'model_not_found'; the "
                "proxy answers not_found_error when no upstream serves it.",
                "content": {JSON: {"schema": {"anyOf": [MODEL_NOT_FOUND, ERROR_REF]}}},
            },
        },
    }


#: Messages are checked only as far as the demo model reads them: user messages' text.
_MESSAGE = {"type": "object"}
_COMMON_FIELDS: dict[str, Any] = {
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
_COMPLETION_RESPONSE = {
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

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "trio-streams",
        "version": version("trio-streams"),
        "description": "Resumable, cancellable LLM token streams over Server-Sent Events. "
        "With API keys configured, every route but /health and the static page needs "
        "'Authorization: Bearer <key>' or 'X-Api-Key: <key>', and a session is visible "
        "only to the key that created it (another key gets 404, as for a missing id).",
    },
    "security": [{"bearer": []}, {"apiKey": []}, {}],
    "paths": {
        "/health": {
            "get": {
                "summary": "Liveness and the number of sessions (never needs a key).",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The server is up.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Health"}}},
                    }
                },
            }
        },
        "/": {
            "get": {
                "summary": "The chat page (public; open it as /#key=<key> for a keyed server).",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/static/{filename}": {
            "get": {
                "summary": "Static files of the web page (never needs a key).",
                "security": [],
                "parameters": [
                    {
                        "name": "filename",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The file.", "content": {"*/*": {}}},
                    **_refs("404"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_refs("401"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    **_refs("401"),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The models served.",
                "responses": {
                    "200": {
                        "description": "An OpenAI model list.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Models"}}},
                    },
                    **_refs("401"),
                },
            }
        },
        "/v1/chat/completions": {
            "post": _completion("Chat completion (OpenAI-compatible).", "ChatRequest", "Completion")
        },
        "/v1/completions": {
            "post": _completion(
                "Text completion (OpenAI-compatible).", "CompletionRequest", "Completion"
            )
        },
        "/v1/stream": {
            "get": _read([CONV_QUERY], "Read a stream (query form of the id)."),
            "delete": _stop([CONV_QUERY], "Stop a stream (query form of the id)."),
        },
        "/v1/stream/": {
            "get": _read([CONV_QUERY], "Read a stream (query form, trailing slash)."),
            "delete": _stop([CONV_QUERY], "Stop a stream (query form, trailing slash)."),
        },
        "/v1/stream/{conversation_id}": {
            "get": _read([CONV_PATH], "Read a stream from a byte offset."),
            "delete": _stop([CONV_PATH], "Stop a stream: cancel its producer."),
        },
        "/v1/streams/lookup": {
            "post": {
                "summary": "State of the named sessions and their '::' variants.",
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "description": "Any JSON value: only an object with a "
                                "'conversation_ids' array looks anything up (SPEC §3).",
                                "anyOf": [
                                    {"$ref": "#/components/schemas/LookupRequest"},
                                    {"not": {"type": "object"}},
                                ],
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "One entry per session found; only named ids (and "
                        "their variants) are ever revealed. Without a 'conversation_ids' "
                        "array: [].",
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/SessionInfo"},
                                }
                            }
                        },
                    },
                    **_refs("400", "401", "413"),
                },
            }
        },
    },
    "components": {
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
                    "messages": {"type": "array", "items": _MESSAGE},
                    **_COMMON_FIELDS,
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
                    **_COMMON_FIELDS,
                },
            },
            "Completion": _COMPLETION_RESPONSE,
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
                ],
                "properties": {
                    "conversation_id": {"type": "string"},
                    "is_done": {"type": "boolean"},
                    "total_bytes": {"type": "integer", "minimum": 0},
                    "started_at": {"type": "integer"},
                    "completed_at": {"type": "integer", "description": "0 while running."},
                },
            },
        },
        "responses": {
            "400": _error("Invalid request: a bad id, offset, body or field."),
            "401": _error(
                "Missing or invalid API key (only when keys are configured).",
                **{"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
            ),
            "404": _error(
                "Stream not found or expired (or another key's); on any route, a path "
                "that names no route (a path id with a line break never does)."
            ),
            "409": _error("The conversation id belongs to another API key's session."),
            "413": _error("The request body is larger than --max-body-bytes."),
            "429": _error(
                "At capacity: only running streams hold the limits.",
                **{"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}},
            ),
            "503": _error("The server is shutting down."),
        },
    },
}


_UPSTREAM_ERRORS = {
    "502": _error(
        "The upstream model server is unreachable, or answered an error that is not JSON."
    ),
    "504": _error("The upstream model server did not answer within its timeouts."),
}

#: The routes ``serve --upstream`` adds (see :mod:`trio_streams.http.routes.proxy`).
_PROXY_PATHS: dict[str, Any] = {
    "/v1/responses": {
        "post": {
            "summary": "Responses API, passed to the upstream (streams become sessions).",
            "parameters": [CONVERSATION_HEADER],
            "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
            "responses": {
                "200": {
                    "description": 'With "stream": true the SSE stream (a reader of the '
                    "session from offset 0); otherwise the upstream's answer.",
                    "headers": STREAM_RESPONSE["headers"],
                    "content": {SSE: {"schema": {"type": "string"}}, JSON: {"schema": {}}},
                },
                **_refs("400", "401", "409", "413", "429", "503"),
                **_UPSTREAM_ERRORS,
            },
        }
    },
    "/v1/{rest}": {
        method: {
            "summary": "Any other /v1 route, passed through to the upstream as is.",
            "parameters": [
                {"name": "rest", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "default": {"description": "The upstream's answer, status and body unchanged."},
                **_refs("401"),
                **_UPSTREAM_ERRORS,
            },
        }
        for method in ("get", "post", "put", "patch", "delete")
    },
}


def document(*, proxy: bool = False) -> dict[str, Any]:
    """A fresh copy of the document (callers may not mutate the shared one).

    ``proxy``: the routes of ``serve --upstream`` as well.
    """
    result = copy.deepcopy(_DOCUMENT)
    if proxy:
        result["paths"].update(copy.deepcopy(_PROXY_PATHS))
    return result
