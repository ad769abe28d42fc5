"""What every Durable Streams store does the same way, whatever holds its streams.

The memory and Redis stores differ in where a stream lives and how an operation is made
atomic; closing a stream, refusing work once shut down, and the size limit mean the same
in both, so they are written here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from trio_streams.core.durable.appends import too_large
from trio_streams.core.durable.errors import ShuttingDownError, StreamTooLargeError
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
