"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Written by hand (the routes are plain Quart handlers), and kept true by tests: every
route of the app appears here and nothing else does, and schemathesis checks real
responses of a live server against these schemas.
"""

from __future__ import annotations

import copy
from importlib.metadata import version
from typing import Any

from trio_streams.http.openapi import responses
from trio_streams.http.openapi.ai_sdk import AI_SDK_PATHS
from trio_streams.http.openapi.components import COMPONENTS
from trio_streams.http.openapi.durable import DURABLE_PATHS
from trio_streams.http.openapi.parts import (
    CONV_PATH,
    CONV_QUERY,
    JSON,
    completion_operation,
    error_response,
    read_operation,
    refs,
    stop_operation,
)

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
                    **refs("404"),
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
                    **refs("401"),
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
                    **refs("401"),
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
                    **refs("401"),
                },
            }
        },
        "/v1/chat/completions": {
            "post": completion_operation(
                "Chat completion (OpenAI-compatible).", "ChatRequest", "Completion"
            )
        },
        "/v1/completions": {
            "post": completion_operation(
                "Text completion (OpenAI-compatible).", "CompletionRequest", "Completion"
            )
        },
        "/v1/stream": {
            "get": read_operation([CONV_QUERY], "Read a stream (query form of the id)."),
            "delete": stop_operation([CONV_QUERY], "Stop a stream (query form of the id)."),
        },
        "/v1/stream/": {
            "get": read_operation([CONV_QUERY], "Read a stream (query form, trailing slash)."),
            "delete": stop_operation([CONV_QUERY], "Stop a stream (query form, trailing slash)."),
        },
        "/v1/stream/{conversation_id}": {
            "get": read_operation([CONV_PATH], "Read a stream from a byte offset."),
            "delete": stop_operation([CONV_PATH], "Stop a stream: cancel its producer."),
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
                    **refs("400", "401", "413"),
                },
            }
        },
    },
    "components": COMPONENTS,
}
_DOCUMENT["paths"].update(AI_SDK_PATHS)
_DOCUMENT["paths"].update(DURABLE_PATHS)


_UPSTREAM_ERRORS = {
    "502": error_response(
        "The upstream model server is unreachable, or answered an error that is not JSON."
    ),
    "504": error_response("The upstream model server did not answer within its timeouts."),
}


def _passed_through(summary: str) -> dict[str, Any]:
    """A catch-all route whose every method is the upstream's."""
    return {
        method: {
            "summary": summary,
            "parameters": [
                {"name": "rest", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "default": {"description": "The upstream's answer, status and body unchanged."},
                **refs("401"),
                **_UPSTREAM_ERRORS,
            },
        }
        for method in ("get", "post", "put", "patch", "delete")
    }


#: The routes ``serve --upstream`` adds (see :mod:`trio_streams.http.routes.proxy`).
_PROXY_PATHS: dict[str, Any] = {
    "/v1/{rest}": _passed_through("Any other /v1 route, passed through to the upstream as is."),
    "/{rest}": _passed_through(
        "Any route outside /v1 that this server does not serve (llama-server's /props, "
        "/slots, /tools...), passed through to the upstream's server root as it streams."
    ),
}


def document(*, proxy: bool = False) -> dict[str, Any]:
    """A fresh copy of the document (callers may not mutate the shared one).

    ``proxy``: the routes of ``serve --upstream`` as well.
    """
    result = copy.deepcopy(_DOCUMENT)
    result["paths"].update(copy.deepcopy(responses.PATHS))
    result["components"]["schemas"].update(copy.deepcopy(responses.SCHEMAS))
    if proxy:
        result["paths"].update(copy.deepcopy(_PROXY_PATHS))
    return result
