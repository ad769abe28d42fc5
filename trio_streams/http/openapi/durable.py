"""The OpenAPI paths of the Durable Streams protocol at ``/ds`` (routes ``durable_streams``
and ``durable_sessions`` of :mod:`trio_streams.http.routes`).

The protocol itself is specified elsewhere (its ``PROTOCOL.md`` and conformance suite);
this describes what the server accepts and answers, in the document's terms. The live
modes (``live=long-poll``, ``live=sse``) are described, not listed as parameters: a
schema-driven client would otherwise open answers that last up to a minute.
"""

from __future__ import annotations

from typing import Any

from trio_streams.http.openapi.parts import (
    CONV_PATH,
    GENERATION_SCHEMA,
    error_response,
    refs,
)

_OFFSET_PATTERN = "^(-1|now|([0-9]{16}|[0-9a-f]{16})_[0-9]{16})$"
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The stream's name: visible ASCII, '/' allowed, at most 1024 characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[!-~]+$"},
}
_OFFSET = {
    "name": "offset",
    "in": "query",
    "required": False,
    "description": "Where to read from: -1 (the start, as when absent), now (the tail), or "
    "an offset this server wrote (Stream-Next-Offset). Add live=long-poll to wait for "
    "data (204 after --ds-long-poll-timeout), or live=sse for Server-Sent Events (data "
    "and control events, about a minute per connection).",
    "schema": {"type": "string", "pattern": _OFFSET_PATTERN},
}
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "description": "The last Stream-Cursor received (live reads).",
    "schema": {"type": "string"},
}


def _header(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "description": description,
            "schema": schema}  # fmt: skip


_IF_NONE_MATCH = _header(
    "If-None-Match",
    "The ETag of an earlier read of the same range: 304 if unchanged.",
    {"type": "string"},
)


_NEXT_OFFSET = {
    "description": "The offset after the last byte of the answer (or the stream's tail).",
    "schema": {"type": "string"},
}
_GONE = error_response(
    "Deleted (or expired) while forks still read it; for a session, an offset of a "
    "replaced generation or below what the session still keeps."
)
_CONFLICT = error_response(
    "Exists with another configuration, is closed (Stream-Closed: true), the content type "
    "differs, Stream-Seq did not increase, or a Producer-Seq gap (Producer-Expected-Seq, "
    "Producer-Received-Seq)."
)
_READ_RESPONSES: dict[str, Any] = {
    "200": {
        "description": "The bytes from the offset (a JSON stream: its messages as one "
        "array). Stream-Up-To-Date when they reach the tail, Stream-Closed when the tail "
        "of a closed stream is reached.",
        "headers": {"Stream-Next-Offset": _NEXT_OFFSET},
        "content": {"*/*": {}},
    },
    "204": {"description": "A long-poll that timed out, or reached the end of a closed stream."},
    "304": {"description": "Unchanged since the If-None-Match ETag."},
    **refs("400", "401", "404"),
    "410": _GONE,
}

DURABLE_PATHS: dict[str, Any] = {
    "/ds/v1/stream/{name}": {
        "put": {
            "summary": "Durable Streams: create a stream (or confirm it exists with this "
            "configuration), optionally with initial bytes, closed, or forked from another.",
            "parameters": [
                _NAME,
                _header(
                    "Stream-TTL",
                    "Idle seconds before the stream expires (reads and writes restart it).",
                    {"type": "string", "pattern": "^(0|[1-9][0-9]{0,14})$"},
                ),
                _header("Stream-Closed", "true: create it closed.", {"type": "string"}),
            ],
            "requestBody": {"required": False, "content": {"*/*": {}}},
            "responses": {
                "201": {
                    "description": "Created.",
                    "headers": {"Stream-Next-Offset": _NEXT_OFFSET},
                },
                "200": {
                    "description": "It already exists with this configuration.",
                    "headers": {"Stream-Next-Offset": _NEXT_OFFSET},
                },
                **refs("400", "401", "404", "413"),
                "409": _CONFLICT,
            },
        },
        "post": {
            "summary": "Durable Streams: append (Stream-Seq, idempotent producers "
            "Producer-Id/-Epoch/-Seq), and/or close (Stream-Closed: true).",
            "parameters": [_NAME],
            "requestBody": {"required": False, "content": {"*/*": {}}},
            "responses": {
                "200": {"description": "A producer's append was accepted."},
                "204": {"description": "Appended (or closed, or a producer's duplicate)."},
                **refs("400", "401", "404", "413"),
                "403": error_response("A stale Producer-Epoch (Producer-Epoch: the current)."),
                "409": _CONFLICT,
                "410": _GONE,
            },
        },
        "get": {
            "summary": "Durable Streams: read from an offset (catch-up, long-poll or SSE).",
            "parameters": [_NAME, _OFFSET, _CURSOR, _IF_NONE_MATCH],
            "responses": _READ_RESPONSES,
        },
        "delete": {
            "summary": "Durable Streams: delete the stream and its bytes.",
            "parameters": [_NAME],
            "responses": {
                "204": {"description": "Deleted."},
                **refs("400", "401", "404"),
                "410": _GONE,
            },
        },
    },
    "/ds/v1/session/{conversation_id}": {
        "get": {
            "summary": "Durable Streams: read a session's SSE bytes (read-only; offsets are "
            "<generation>_<position>).",
            "parameters": [CONV_PATH, _OFFSET, _CURSOR, _IF_NONE_MATCH],
            "responses": {
                **_READ_RESPONSES,
                "200": {
                    **_READ_RESPONSES["200"],
                    "headers": {
                        "Stream-Next-Offset": _NEXT_OFFSET,
                        "X-Stream-Generation": {"schema": GENERATION_SCHEMA},
                    },
                },
            },
        }
    },
}
