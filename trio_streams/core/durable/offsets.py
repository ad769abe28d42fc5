"""Offsets: the opaque, lexicographically ordered positions of the protocol.

A stream is one byte log; an offset names a byte position in it. Generic streams write
``<segment>_<position>``, both zero-padded to 16 decimal digits, so that string order is
position order. The segment is always ``0000000000000000`` for now (reserved; it keeps
the format the conformance suite's fork tests write by hand, ``0000000000000000_0…0``).

An LLM session is read through the protocol too (``/ds/v1/session/<id>``); its offsets
carry the generation they read: ``<generation>_<position>``, the generation being the
session's 16-hex-digit id (:mod:`trio_streams.core.generations`). Offsets of one
generation share their prefix, so they sort by position; an offset of a replaced
generation names a stream that is gone (``410``).

``-1`` (the start) and ``now`` (the tail) are the protocol's sentinels; the server never
writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trio_streams.core.generations import GENERATION_LENGTH, is_generation

#: Digits of each part of an offset.
DIGITS = 16
#: The largest position an offset can hold.
MAX_POSITION = 10**DIGITS - 1
START = "-1"
NOW = "now"
ZERO_SEGMENT = "0" * DIGITS
_OFFSET = re.compile(rf"([0-9]{{{DIGITS}}}|[0-9a-f]{{{GENERATION_LENGTH}}})_([0-9]{{{DIGITS}}})")


class InvalidOffsetError(ValueError):
    """Not an offset this server writes, nor a sentinel (``400``)."""


@dataclass(frozen=True, slots=True)
class Offset:
    """A parsed ``offset`` parameter: ``start`` (``-1``), ``now``, or a position.

    ``prefix`` is the part before ``_``: the zero segment of generic streams, or a
    session's generation.
    """

    position: int = 0
    prefix: str = ZERO_SEGMENT
    start: bool = False
    now: bool = False


def format_offset(position: int, prefix: str = ZERO_SEGMENT) -> str:
    """The offset of byte ``position`` (``prefix``: the zero segment or a generation)."""
    if not 0 <= position <= MAX_POSITION:
        raise ValueError(f"position {position} out of range")
    return f"{prefix}_{position:0{DIGITS}d}"


def parse_offset(raw: str | None) -> Offset:
    """The ``offset`` query parameter; absent means the start, as ``-1`` does.

    Raises :class:`InvalidOffsetError` for anything else, including the empty string.
    """
    if raw is None or raw == START:
        return Offset(start=True)
    if raw == NOW:
        return Offset(now=True)
    match = _OFFSET.fullmatch(raw)
    if match is None:
        raise InvalidOffsetError(f"invalid offset {raw[:80]!r}")
    prefix, digits = match.groups()
    if prefix != ZERO_SEGMENT and not is_generation(prefix):
        raise InvalidOffsetError(f"invalid offset {raw[:80]!r}")
    return Offset(position=int(digits), prefix=prefix)


def parse_stream_offset(raw: str) -> int:
    """A generic stream's offset (a ``Stream-Fork-Offset``, say): its position."""
    parsed = parse_offset(raw)
    if parsed.start or parsed.now or parsed.prefix != ZERO_SEGMENT:
        raise InvalidOffsetError(f"invalid offset {raw[:80]!r}")
    return parsed.position
