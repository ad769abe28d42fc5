"""The values that cross the Durable Streams store seam: requests, results, metadata.

Positions are byte positions of a stream's log (see :mod:`.offsets` for how they are
written); a fork's positions continue its source's, so an offset means the same byte in
both up to the fork point.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from trio_streams.core.durable.headers import Expiry
from trio_streams.core.durable.producers import ProducerClaim


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A PUT: the stream's configuration and initial bytes (as sent: JSON framing is the
    store's job, through :func:`.appends.frame_body`)."""

    content_type: str
    expiry: Expiry = field(default_factory=Expiry)
    closed: bool = False
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """A PUT with ``Stream-Forked-From``: a new stream that starts as ``source``'s bytes up
    to ``position`` (``None``: its tail) plus ``sub_offset`` bytes (or, for JSON, messages)
    of the append that starts there.

    ``content_type`` ``None``: the source's. ``expiry`` unset: the source's.
    """

    source: str
    position: int | None = None
    sub_offset: int = 0
    content_type: str | None = None
    expiry: Expiry = field(default_factory=Expiry)
    closed: bool = False
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A POST: bytes to append (``b""`` with ``close``: close only)."""

    data: bytes
    content_type: str | None = None
    stream_seq: str | None = None
    producer: ProducerClaim | None = None
    close: bool = False


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What HEAD (and every read) says about a stream."""

    name: str
    content_type: str
    #: The position after the last byte (the offset an append will write at).
    tail: int
    closed: bool = False
    #: As configured (``Stream-TTL``, the idle time after which the stream expires).
    ttl_seconds: int | None = None
    #: As configured (``Stream-Expires-At``).
    expires_at: str | None = None
    #: The source this stream was forked from, and where (internal: forks are transparent).
    forked_from: str | None = None
    fork_position: int | None = None


@dataclass(frozen=True, slots=True)
class CreateResult:
    #: ``False``: it already existed with the same configuration (``200``, not ``201``).
    created: bool
    meta: StreamMeta


class AppendStatus(enum.Enum):
    #: Bytes were appended (and the stream closed, if asked).
    APPENDED = "appended"
    #: Close only: nothing appended, the stream is (now) closed.
    CLOSED = "closed"
    #: An idempotent producer's retry: nothing appended (``204``).
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class AppendResult:
    status: AppendStatus
    #: The stream's tail after the request.
    tail: int
    closed: bool
    #: For producer requests: the epoch echoed and the highest sequence accepted.
    producer: ProducerClaim | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Bytes from ``start`` to ``end`` (the next offset) and the stream as it was then."""

    data: bytes
    start: int
    end: int
    meta: StreamMeta

    @property
    def up_to_date(self) -> bool:
        return self.end >= self.meta.tail

    @property
    def closed_at_end(self) -> bool:
        """The reader reached the end of a closed stream: nothing more will ever come."""
        return self.meta.closed and self.up_to_date
