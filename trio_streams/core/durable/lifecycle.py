"""Creating, forking and expiring streams, decided without I/O.

Expiry: ``Stream-TTL`` is an idle time (every read or write but HEAD slides it);
``Stream-Expires-At`` is absolute and never moves. A store computes deadlines on its own
clock (the memory store: trio's, so tests run under ``autojump_clock``), given ``now``
on that clock and the Unix time ``now_unix`` to convert an absolute expiry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from trio_streams.core.durable.errors import BadRequestError, ConflictError
from trio_streams.core.durable.headers import Expiry, normalize_content_type
from trio_streams.core.durable.json_mode import is_json
from trio_streams.core.durable.model import ForkRequest, StreamMeta


def deadline(expiry: Expiry, *, now: float, now_unix: float) -> float | None:
    """When a stream of ``expiry`` expires, on the store's clock (``None``: never)."""
    if expiry.ttl_seconds is not None:
        return now + expiry.ttl_seconds
    if expiry.expires_at_unix is not None:
        return now + (expiry.expires_at_unix - now_unix)
    return None


def slid(meta: StreamMeta, current: float | None, *, now: float) -> float | None:
    """The deadline after an access at ``now``: a TTL restarts, an absolute one stays."""
    if meta.ttl_seconds is not None:
        return now + meta.ttl_seconds
    return current


def is_expired(current: float | None, *, now: float) -> bool:
    return current is not None and now >= current


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What a PUT asks a stream to be: a repeated PUT of an existing stream must ask for
    the same (``200``), else it is a ``409``."""

    content_type: str
    expiry: Expiry
    closed: bool
    forked_from: str | None = None
    fork_position: int | None = None


def check_same_config(meta: StreamMeta, wanted: StreamConfig) -> None:
    """Nothing if the stream that exists (``meta``) is the one ``wanted``; else the
    ``409`` every store answers."""
    same = (
        normalize_content_type(meta.content_type) == normalize_content_type(wanted.content_type)
        and meta.ttl_seconds == wanted.expiry.ttl_seconds
        and meta.expires_at == wanted.expiry.expires_at
        and meta.closed == wanted.closed
        and meta.forked_from == wanted.forked_from
        and meta.fork_position == wanted.fork_position
    )
    if not same:
        raise ConflictError("A stream exists at this URL with another configuration")


@dataclass(frozen=True, slots=True)
class ForkPlan:
    """What a fork is, once its source is known: every store creates (or confirms) this."""

    content_type: str
    #: Where the fork starts in its source (the sub-offset counted in).
    position: int
    expiry: Expiry
    #: No expiry was asked for: the fork has its source's (``expiry`` is it).
    inherits_expiry: bool
    source: str
    closed: bool

    @property
    def config(self) -> StreamConfig:
        return StreamConfig(self.content_type, self.expiry, self.closed, self.source, self.position)


def plan_fork(
    request: ForkRequest,
    source: StreamMeta,
    append_at: Callable[[int], bytes | None],
    *,
    source_expiry: Expiry | None = None,
) -> ForkPlan:
    """Decide a fork of ``source``: its content type (``409`` if not the source's), its
    position (``400`` past the tail or past the append there) and its expiry.

    ``append_at(position)`` gives the bytes of the source's append that starts there
    (``None``: none does); it is called only for a sub-offset. ``source_expiry`` is the
    source's as the store keeps it (``None``: as ``source`` says, without a Unix time).
    """
    content_type = request.content_type or source.content_type
    if normalize_content_type(content_type) != normalize_content_type(source.content_type):
        raise ConflictError("A fork has its source's content type")
    position = source.tail if request.position is None else request.position
    if position > source.tail:
        raise BadRequestError("Stream-Fork-Offset is past the end of the source stream")
    if request.sub_offset:
        position += sub_offset_bytes(append_at(position), request.sub_offset, source.content_type)
    inherits = request.expiry.ttl_seconds is None and request.expiry.expires_at is None
    if not inherits:
        expiry = request.expiry
    elif source_expiry is not None:
        expiry = source_expiry
    else:
        expiry = Expiry(ttl_seconds=source.ttl_seconds, expires_at=source.expires_at)
    return ForkPlan(content_type, position, expiry, inherits, request.source, request.closed)


def sub_offset_bytes(append: bytes | None, sub_offset: int, content_type: str) -> int:
    """How many bytes of ``append`` (the append that starts at the fork point; ``None``:
    there is none) a ``Stream-Fork-Sub-Offset`` takes: that many bytes, or for a JSON
    stream that many messages. More than the append holds is a ``400``."""
    if sub_offset == 0:
        return 0
    if append is None:
        raise BadRequestError("Stream-Fork-Sub-Offset: no append starts at the fork offset")
    if not is_json(normalize_content_type(content_type)):
        if sub_offset > len(append):
            raise BadRequestError("Stream-Fork-Sub-Offset is past the end of the append")
        return sub_offset
    ends = message_ends(append)
    if sub_offset > len(ends):
        raise BadRequestError("Stream-Fork-Sub-Offset is past the append's last message")
    return ends[sub_offset - 1]


def message_ends(framed: bytes) -> list[int]:
    """The end (after its ``,``) of each message of framed JSON log bytes."""
    text = framed.decode("utf-8")
    decoder = json.JSONDecoder()
    ends: list[int] = []
    index = position = 0
    while index < len(text):
        _, end = decoder.raw_decode(text, index)
        end += 1  # the separator
        position += len(text[index:end].encode("utf-8"))
        ends.append(position)
        index = end
    return ends
