"""Server-Sent Events framing: the few byte shapes trio-streams writes itself."""

from __future__ import annotations

import json
from typing import Any

#: The keep-alive comment written while a stream is idle (SPEC §4). Clients ignore it.
PING = b": ping\n\n"
#: The OpenAI end-of-stream sentinel.
DONE = b"data: [DONE]\n\n"


def data_event(payload: Any) -> bytes:
    """One ``data:`` event carrying ``payload`` as compact JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str, error_type: str = "server_error", code: int = 500) -> bytes:
    """The in-band error event a stream ends with when its producer fails.

    Same shape as the HTTP errors, so OpenAI SDKs raise it as an ``APIError``.
    """
    return data_event({"error": {"code": code, "message": message, "type": error_type}})


def generation_failed_event(exc: BaseException) -> bytes:
    """The error event for a producer that raised ``exc`` (either store writes it).

    A producer's own nursery wraps its exception in a group of one; the message names the
    exception inside, which is what the producer actually raised.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return error_event(f"generation failed: {str(exc) or type(exc).__name__}")
