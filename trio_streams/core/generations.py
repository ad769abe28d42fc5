"""Generations: every start or replacement of a session is a new generation with its own id.

A conversation id names whichever generation is current, so a byte offset alone is
ambiguous: after a regenerate, offset N of the old answer is offset N of the new one too,
and a client that resumed there would splice the new answer onto the old. A generation id
pins the offset to one answer. Both stores mint it here (the Redis store also names that
generation's log by it), and the SSE ``id:`` of every event carries it
(``<generation>-<offset>``, see :mod:`trio_streams.core.event_ids`).

Sixteen hex digits (64 random bits): unique enough that no two generations of one id, nor
two producers of one instance, ever share one, and short enough to repeat in every event id.
"""

from __future__ import annotations

import re
import secrets

#: Hex digits of a generation id.
GENERATION_LENGTH = 16
_GENERATION = re.compile(rf"[0-9a-f]{{{GENERATION_LENGTH}}}")
_OFFSET = re.compile(r"[0-9]+")
#: Between the generation and the offset in an event id.
SEPARATOR = "-"


def new_generation() -> str:
    """A fresh generation id."""
    return secrets.token_hex(GENERATION_LENGTH // 2)


def is_generation(value: str) -> bool:
    return _GENERATION.fullmatch(value) is not None


def event_id_prefix(generation: str) -> bytes:
    """What every event id of ``generation`` starts with, before its offset."""
    return (generation + SEPARATOR).encode()


def split_event_id(value: str) -> tuple[str | None, str] | None:
    """``(generation or None, offset digits)`` of an event id, or ``None`` if it is neither
    form: the plain offset (``1234``, as before generations) or ``<generation>-<offset>``."""
    generation, sep, offset = value.rpartition(SEPARATOR)
    if not _OFFSET.fullmatch(offset):
        return None
    if not sep:
        return None, offset
    if not is_generation(generation):
        return None
    return generation, offset
