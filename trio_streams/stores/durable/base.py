"""What every Durable Streams store does the same way, whatever holds its streams.

The memory and Redis stores differ in where a stream lives and how an operation is made
atomic; closing a stream, refusing work once shut down, and the size limit mean the same
in both, so they are written here once, and so are the refusals they both answer (the
same status and message whichever store holds the stream).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from trio_streams.core.durable.appends import too_large
from trio_streams.core.durable.errors import (
    ConflictError,
    DurableStreamError,
    ShuttingDownError,
    StreamGoneError,
    StreamNotFoundError,
    StreamTooLargeError,
)
from trio_streams.core.durable.model import AppendRequest, AppendResult
from trio_streams.core.durable.producers import ProducerClaim
from trio_streams.core.lifetime import Lifetime


class DurableStoreBase(Lifetime, ABC):
    """Base of the :class:`~trio_streams.stores.durable.protocol.DurableStore`
    implementations: ``max_stream_bytes`` bounds every stream (inherited bytes included)."""

    def __init__(self, *, max_stream_bytes: int) -> None:
        super().__init__()
        self.max_stream_bytes = max_stream_bytes

    @abstractmethod
    async def append(
        self, name: str, request: AppendRequest, *, owner: str | None = None
    ) -> AppendResult: ...

    async def close(
        self, name: str, producer: ProducerClaim | None = None, *, owner: str | None = None
    ) -> AppendResult:
        """A close is an append without bytes: it takes part in the producer's sequence
        and its checks, as the protocol says."""
        return await self.append(
            name, AppendRequest(b"", producer=producer, close=True), owner=owner
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDownError("The server is shutting down")

    def _too_large(self) -> StreamTooLargeError:
        return too_large(self.max_stream_bytes)


def missing(*, gone: bool) -> DurableStreamError:
    """A stream not there to read or write: ``410`` if deleted (or expired) while forks
    still read it, else ``404`` (never was, is gone, or is another API key's)."""
    if gone:
        return StreamGoneError("Stream was deleted")
    return StreamNotFoundError("Stream not found")


def source_missing(*, gone: bool) -> DurableStreamError:
    """A fork's source not there: ``409`` if soft-deleted (forks still read it, but no
    new one may start), else ``404``."""
    if gone:
        return ConflictError("The stream to fork from was deleted")
    return StreamNotFoundError("The stream to fork from does not exist")


def name_taken(*, by_deleted: bool) -> ConflictError:
    """A PUT of a name that a soft-deleted stream still holds (``by_deleted``), or that
    another API key's stream holds: ``409``."""
    if by_deleted:
        return ConflictError("A deleted stream's URL cannot be reused while forks read it")
    return ConflictError("The stream belongs to another API key")
