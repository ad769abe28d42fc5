"""Errors as HTTP answers: :class:`ApiError` raised in a handler, and JSON responses in
the one error shape of :mod:`trio_streams.core.errors`."""

from __future__ import annotations

import json

from quart import Response

from trio_streams.core.errors import (
    AUTHENTICATION,
    INVALID_REQUEST,
    JSON_CONTENT_TYPE,
    NOT_FOUND,
    RATE_LIMIT,
    SERVER_ERROR,
    error_body,
)


class ApiError(Exception):
    """Raised anywhere in a handler; the app turns it into :func:`error_response`."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str = INVALID_REQUEST,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        #: Why the stream asked for ended (stopped, replaced…), for the errors that say so.
        self.reason = reason

    def response(self) -> Response:
        body = error_body(self.status, self.message, self.error_type, self.reason)
        return json_response(body, self.status)


def json_response(payload: object, status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status=status, content_type=JSON_CONTENT_TYPE
    )


def error_response(status: int, message: str, error_type: str) -> Response:
    return json_response(error_body(status, message, error_type), status)


def error_type_for_status(status: int) -> str:
    """The OpenAI type name for an HTTP status the framework raised on its own."""
    if status == 401:
        return AUTHENTICATION
    if status == 404:
        return NOT_FOUND
    if status == 429:
        return RATE_LIMIT
    if status >= 500:
        return SERVER_ERROR
    return INVALID_REQUEST
