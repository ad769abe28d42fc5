"""JSON mode (streams created as ``application/json``): message boundaries on a byte log.

Each message is stored compact (no insignificant whitespace) and followed by ``,``, so
the stream stays one byte log whose offsets are byte positions like any other stream's,
and every message boundary is a position just after a ``,``. A read of positions
``[a, b)`` is served as ``[`` + those bytes without their last ``,`` + ``]``.

A POST whose body is an array appends each element as a message (one level flattened);
an empty array is refused on POST and creates an empty stream on PUT.
"""

from __future__ import annotations

import json
import math
from typing import Any

from trio_streams.core.durable.errors import BadRequestError

JSON = "application/json"
SEPARATOR = b","


def is_json(content_type: str | None) -> bool:
    """Whether a stream of ``content_type`` (already normalized) is in JSON mode."""
    return content_type == JSON


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e999``) is refused, as it
    could not be written back as JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _compact(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\udc00"): keep it escaped, as JSON allows
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def frame(body: bytes, *, initial: bool = False) -> bytes:
    """The log bytes of a JSON body: each message compact and followed by ``,``.

    ``initial`` (a PUT's body) allows an empty array. Raises :class:`BadRequestError`
    for a body that is not JSON, or an empty array on append.
    """
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite
        )
        if isinstance(value, list):
            if not value:
                if initial:
                    return b""
                raise BadRequestError("Empty JSON arrays cannot be appended")
            return b"".join(_compact(item) + SEPARATOR for item in value)
        return _compact(value) + SEPARATOR
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"Invalid JSON body: {exc}") from None
    except RecursionError:  # parsing it, or writing it back one level deeper
        raise BadRequestError("Invalid JSON body: nested too deeply") from None


def as_array(data: bytes) -> bytes:
    """Log bytes (whole messages, each followed by ``,``) as one JSON array."""
    if data.endswith(SEPARATOR):
        data = data[:-1]
    return b"[" + data + b"]"
