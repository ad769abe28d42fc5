"""Checks on what clients send: conversation ids, offsets, JSON bodies.

Each check raises :class:`~trio_streams.http.errors.ApiError` with the message the SPEC gives,
so handlers stay straight-line code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from trio_streams.core.generations import is_generation, split_event_id
from trio_streams.http.errors import ApiError

MAX_CONVERSATION_ID_LENGTH = 256
# Visible ASCII only: ids such as "conv::org/model:Q8_0" must pass; whitespace and control
# characters (log injection, header smuggling) must not.
_CONVERSATION_ID = re.compile(r"[\x21-\x7e]+")
_OFFSET = re.compile(r"[0-9]+")
#: The largest offset a stream can have (Redis stream ids are 64-bit): anything longer is
#: no position in any stream (llama.cpp's ``stoull`` refuses it too).
MAX_OFFSET = 2**63 - 1


def conversation_id(raw: str | None) -> str:
    """A valid conversation id from a path or query, or a 400."""
    if not raw:
        raise ApiError(400, "Missing conversation id in path")
    return checked_conversation_id(raw)


def checked_conversation_id(raw: str) -> str:
    if len(raw) > MAX_CONVERSATION_ID_LENGTH:
        raise ApiError(
            400, f"Invalid conversation id: longer than {MAX_CONVERSATION_ID_LENGTH} characters"
        )
    if not _CONVERSATION_ID.fullmatch(raw):
        raise ApiError(400, "Invalid conversation id: only visible ASCII characters are allowed")
    return raw


def is_conversation_id(value: object) -> bool:
    """Whether ``value`` could name a session (lookup ignores anything else, as SPEC says
    for non-string and empty ids: no session can have an invalid id)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CONVERSATION_ID_LENGTH
        and _CONVERSATION_ID.fullmatch(value) is not None
    )


def offset(raw: str | None) -> int:
    """The ``from`` query parameter: a non-negative decimal integer; absent or empty is 0.

    Stricter than ``int()`` (no sign, spaces, underscores or non-ASCII digits) and than
    the reference's ``stoull``, which accepts ``-1`` and wraps it.
    """
    if raw is None or raw == "":
        return 0
    if not _OFFSET.fullmatch(raw):
        raise ApiError(400, "Invalid 'from' offset")
    return _in_range(raw, "Invalid 'from' offset")


def _in_range(digits: str, message: str) -> int:
    # A 26-digit offset would otherwise reach Redis as a stream id it refuses.
    if len(digits) > 19 or int(digits) > MAX_OFFSET:
        raise ApiError(400, f"{message}: out of range (at most {MAX_OFFSET})")
    return int(digits)


def generation(raw: str | None) -> str | None:
    """The ``generation`` query parameter: a generation id, or absent (not pinned)."""
    if raw is None or raw == "":
        return None
    if not is_generation(raw):
        raise ApiError(400, "Invalid 'generation': expected the generation id a lookup reports")
    return raw


def last_event_id(raw: str) -> tuple[str | None, int]:
    """The ``Last-Event-ID`` header: one of our event ids, ``<generation>-<offset>``, or
    the plain offset of the ids before generations; ``(generation or None, offset)``."""
    parsed = split_event_id(raw)
    message = "Invalid 'Last-Event-ID': expected <generation>-<offset> or a byte offset"
    if parsed is None:
        raise ApiError(400, message)
    event_generation, digits = parsed
    return event_generation, _in_range(digits, message)


def json_value(data: str | bytes) -> Any:
    """A request body that must be JSON (any value)."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid body: {exc}") from None
    except RecursionError:  # "[[[[…" deeper than the parser's stack: hostile, not a 500
        raise ApiError(400, "invalid body: nested too deeply") from None


def json_object(data: str | bytes) -> dict[str, Any]:
    """A request body that must be a JSON object."""
    body = json_value(data)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid body: expected a JSON object")
    return body
