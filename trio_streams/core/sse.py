"""Server-Sent Events framing: the few byte shapes trio-streams writes itself."""

from __future__ import annotations

import json
import re
from typing import Any

from trio_streams.core.errors import SERVER_ERROR, error_body

#: The keep-alive comment written while a stream is idle (SPEC §4). Clients ignore it.
PING = b": ping\n\n"
#: The OpenAI end-of-stream sentinel.
DONE = b"data: [DONE]\n\n"
#: The sentinel as one line of the last event in some bytes (which may carry our ``id:``
#: line after it, and any line endings an upstream chose).
_EOL = rb"(?:\r\n|\r|\n)"
_DONE_LAST = re.compile(
    rb"(?:^|[\r\n])data: ?\[DONE\]" + _EOL + rb"(?:id:[^\r\n]*" + _EOL + rb")?" + _EOL + rb"\Z"
)
#: Enough of a stream's end to hold the sentinel event with an ``id:`` line.
DONE_TAIL = 64


def ends_with_done(tail: bytes) -> bool:
    """Whether the last event in ``tail`` (a stream's last bytes) is ``data: [DONE]``.

    The keep-alive stops there: the answer is complete, and a ping after the sentinel only
    confuses clients that print what follows it, while the producer finishes its cleanup.
    """
    return _DONE_LAST.search(tail) is not None


def data_event(payload: Any) -> bytes:
    """One ``data:`` event carrying ``payload`` as compact JSON."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def error_event(message: str, error_type: str = SERVER_ERROR, code: int = 500) -> bytes:
    """The in-band error event a stream ends with when its producer fails.

    Same shape as the HTTP errors, so OpenAI SDKs raise it as an ``APIError``.
    """
    return data_event(error_body(code, message, error_type))


def generation_failed_event(exc: BaseException) -> bytes:
    """The error event for a producer that raised ``exc`` (either store writes it).

    A producer's own nursery wraps its exception in a group of one; the message names the
    exception inside, which is what the producer actually raised.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return error_event(f"generation failed: {str(exc) or type(exc).__name__}")
