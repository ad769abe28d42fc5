"""The one error shape of trio-streams, OpenAI-style: ``{"error": {code, message, type}}``.

The HTTP layer answers it as a JSON body, and a stream that fails after its ``200`` ends
with it as an SSE event: one shape, so an OpenAI SDK raises the same ``APIError`` either way.
"""

from __future__ import annotations

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

INVALID_REQUEST = "invalid_request_error"
NOT_FOUND = "not_found_error"
AUTHENTICATION = "authentication_error"
SERVER_ERROR = "server_error"
UNAVAILABLE = "unavailable_error"
RATE_LIMIT = "rate_limit_error"
CONFLICT = "conflict_error"


def error_body(
    status: int, message: str, error_type: str, reason: str | None = None
) -> dict[str, object]:
    """The error object; ``reason`` (why a stream ended, see ``end_reasons.py``) is added
    only to the errors that answer for a stream that ended."""
    error: dict[str, object] = {"code": status, "message": message, "type": error_type}
    if reason is not None:
        error["reason"] = reason
    return {"error": error}
