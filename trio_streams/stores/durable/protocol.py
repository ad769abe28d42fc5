"""The Durable Streams store seam: what ``/ds/v1/stream/…`` needs from wherever streams live.

Every method takes the stream's ``name`` (the path below ``/ds/v1/stream/``, slashes
allowed) and ``owner`` (the API key fingerprint of the request, ``None`` without
authentication): a stream belongs to the key that created it, and any other key is
answered as if it did not exist (``404``; a PUT of its name: ``409``).

The protocol's rules are pure functions of :mod:`trio_streams.core.durable`, so an
implementation only stores and makes each operation atomic:

- positions are byte positions of the stream's log (:mod:`~trio_streams.core.durable.offsets`
  writes them as offsets); JSON streams store each message compact and followed by ``,``
  (:func:`~trio_streams.core.durable.appends.frame_body`);
- an append is decided by :func:`~trio_streams.core.durable.appends.plan_append` on the
  stream's state, and its plan applied as one unit (bytes, producer state, ``Stream-Seq``,
  closure). Appends of one stream are serialized;
- a store remembers where each append starts (a fork's ``Stream-Fork-Sub-Offset`` counts
  into the append at the fork point: :func:`~trio_streams.core.durable.lifecycle.sub_offset_bytes`);
- a fork keeps only its own bytes, from its fork position on; positions below it are read
  from its source (recursively), which it holds a reference on. Deleting or expiring a
  stream that forks reference soft-deletes it: ``410`` to everyone, its name not reusable,
  its bytes still read through its forks; when its last fork goes, it goes too;
- ``Stream-TTL`` is an idle time that every operation but :meth:`head` slides;
  ``Stream-Expires-At`` is absolute (:mod:`~trio_streams.core.durable.lifecycle`). An
  expired stream is gone at once for every operation, and a store's collector (a task
  that sleeps on trio's clock, under the store's ``async with``) frees it;
- readers wait in :meth:`wait` on trio primitives, woken by appends, closes and deletes:
  never polling.

Errors are :class:`~trio_streams.core.durable.errors.DurableStreamError` subclasses,
each with the protocol's status.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from trio_streams.core.durable.errors import DurableStreamError
from trio_streams.core.durable.model import (
    AppendRequest,
    AppendResult,
    AppendStatus,
    CreateRequest,
    CreateResult,
    ForkRequest,
    ReadResult,
    StreamMeta,
)
from trio_streams.core.durable.producers import ProducerClaim

__all__ = [
    "AppendRequest",
    "AppendResult",
    "AppendStatus",
    "CreateRequest",
    "CreateResult",
    "DurableStore",
    "DurableStreamError",
    "DurableStreamsUnsupportedError",
    "ForkRequest",
    "ProducerClaim",
    "ReadResult",
    "StreamMeta",
]


class DurableStreamsUnsupportedError(Exception):
    """The configured session store has no Durable Streams implementation (yet):
    ``/ds/v1/stream/…`` answers ``501`` saying so."""


class DurableStore(Protocol):
    """Where generic Durable Streams live. Used as ``async with store:`` around the
    server's life (its expiry collector runs inside)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> CreateResult:
        """PUT: create the stream (``created``), or confirm it exists with this very
        configuration (``created=False``); ``409`` if it exists otherwise, is
        soft-deleted, or is another owner's. The initial body is framed (JSON) and
        appended; ``request.closed`` creates it closed."""
        ...

    async def fork(
        self, name: str, request: ForkRequest, *, owner: str | None = None
    ) -> CreateResult:
        """PUT with ``Stream-Forked-From``: a stream whose first bytes are its source's.

        ``404``: no such source (or another owner's); ``409``: the source is
        soft-deleted, or the content type differs from the source's, or ``name`` exists
        with another configuration; ``400``: the position is past the source's tail, or
        the sub-offset past the append there. The fork starts open, whatever its source.
        """
        ...

    async def append(
        self, name: str, request: AppendRequest, *, owner: str | None = None
    ) -> AppendResult:
        """POST: append (and/or close), as :func:`~trio_streams.core.durable.appends.plan_append`
        decides. ``404``: no such stream; ``410``: soft-deleted; ``413``: over the size limit."""
        ...

    async def close(
        self, name: str, producer: ProducerClaim | None = None, *, owner: str | None = None
    ) -> AppendResult:
        """POST ``Stream-Closed: true`` with no body: close (idempotent without a
        producer; with one, it takes part in the producer's sequence)."""
        ...

    async def read(
        self,
        name: str,
        position: int | None,
        *,
        limit: int | None = None,
        owner: str | None = None,
    ) -> ReadResult:
        """GET: the bytes from ``position`` (``None``: the tail, ``offset=now``) to the
        tail, at most ``limit`` of them for a non-JSON stream (a JSON stream's read ends
        on a message boundary). Slides a TTL.

        ``404``: no such stream; ``410``: soft-deleted; ``400``: ``position`` past the tail.
        """
        ...

    async def wait(
        self, name: str, position: int, within: float, *, owner: str | None = None
    ) -> bool:
        """Wait until the stream has bytes past ``position``, is closed, or is deleted
        (``True``), or ``within`` seconds pass (``False``). A fork's inherited bytes are
        there at once. Raises like :meth:`read` if the stream is not there to begin with."""
        ...

    async def head(self, name: str, *, owner: str | None = None) -> StreamMeta:
        """HEAD: the stream's metadata; does not slide a TTL. ``404`` / ``410``."""
        ...

    def shutdown(self) -> None:
        """Refuse new operations and wake every waiting reader: :meth:`wait` then raises
        :class:`~trio_streams.core.durable.errors.ShuttingDownError` (``503``), so no
        reader is left waiting when the server stops. Idempotent."""
        ...

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        """DELETE: remove the stream and its bytes (soft-delete while forks read through
        it); its waiting readers wake. ``404``: no such stream; ``410``: soft-deleted."""
        ...


class HasDurableStreams(Protocol):
    """A session store that also holds Durable Streams (``trio-streams serve`` with
    that store serves ``/ds/v1/stream/…`` from it)."""

    @property
    def durable_streams(self) -> DurableStore: ...
