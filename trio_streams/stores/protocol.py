"""The store seam: what the HTTP layer needs from wherever sessions live.

Two stores implement it: :class:`~trio_streams.stores.memory.MemoryStore` (the default;
one process owns its sessions) and :class:`~trio_streams.stores.redis.store.RedisStore`
(sessions shared by every instance through Redis Streams). The methods are async because
a shared store answers over the network; the in-memory one answers at once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from types import TracebackType
from typing import Protocol, Self

from trio_streams.core.end_reasons import EndReason
from trio_streams.core.manager import SessionManager
from trio_streams.core.producer import Producer
from trio_streams.core.session import SessionInfo


class StoreUnavailableError(Exception):
    """The shared store cannot be reached; the HTTP layer answers ``503``."""


class StreamHandle(Protocol):
    """One generation of a session as a reader sees it: its bytes from an offset, why
    they ended, and its cancel."""

    @property
    def generation(self) -> str:
        """The generation this handle reads (event ids carry it)."""
        ...

    def read(self, offset: int = 0) -> AsyncGenerator[bytes, None]:
        """The bytes from ``offset`` on, following the stream until it is finalized.

        Raises :class:`~trio_streams.core.session.OffsetLostError` when ``offset`` is (or
        becomes) older than what the log retains.
        """
        ...

    def cancel(self) -> None:
        """Stop the producer (used for plain streams whose client left)."""
        ...

    def ending(self) -> EndReason | None:
        """Why the stream ended, once a :meth:`read` has ended (``None``: not known here,
        e.g. the shared store became unreachable; the client resumes)."""
        ...


class SessionStore(Protocol):
    """Where sessions live: started, read, looked up and stopped through here.

    Used as ``async with store:`` around the server's life; leaving the block (or
    :meth:`shutdown`) cancels this instance's producers and finalizes their sessions.

    ``owner`` is the fingerprint of the API key of the request (``None`` without
    authentication): a session belongs to the key that started it, and any other key is
    answered as if it did not exist.
    """

    @property
    def manager(self) -> SessionManager:
        """The in-memory manager behind the store (plain streams only, for Redis)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...

    async def start(
        self,
        conversation_id: str | None,
        producer: Producer,
        *,
        ping_interval: float | None = None,
        owner: str | None = None,
    ) -> StreamHandle:
        """Create (or replace) the session and start its producer on this instance.

        ``conversation_id=None`` is a plain stream: never shared, never listed. Raises
        :class:`~trio_streams.core.limits.ConversationOwnedError` if the id is another owner's.
        """
        ...

    async def open(
        self,
        conversation_id: str,
        offset: int,
        *,
        generation: str | None = None,
        owner: str | None = None,
    ) -> StreamHandle | None:
        """The session to read from ``offset``; ``None`` if unknown, expired or another
        owner's. ``generation`` pins the resume to one generation.

        Raises, so the HTTP layer can answer before streaming:
        :class:`~trio_streams.core.session.OffsetLostError` if ``offset`` is below what the
        log retains; :class:`~trio_streams.core.session.OffsetBeyondEndError` if it is past
        the end of a finished session; :class:`~trio_streams.core.end_reasons.StreamGoneError`
        if the pinned generation was replaced, or the session was stopped or evicted
        (its tombstone, kept for the TTL, says which).
        """
        ...

    async def stop(
        self, conversation_id: str, *, owner: str | None = None, generation: str | None = None
    ) -> bool:
        """DELETE: cancel the producer wherever it runs, evict and finalize. Idempotent.

        With ``generation``, only if that is still the session's generation, checked and
        stopped in one step: a Stop meant for the answer a client shows leaves alone a
        newer one that another client (or tab) started meanwhile. ``False`` if nothing
        was stopped (unknown, another owner's, or another generation).
        """
        ...

    async def cancel(self, conversation_id: str, *, owner: str | None = None) -> bool:
        """Stop the producer wherever it runs, but keep the session and its log (unlike
        :meth:`stop`): the producer ends it, and what it wrote stays readable until the
        TTL. Idempotent; ``False`` if unknown, expired or another owner's."""
        ...

    async def discard(self, handle: StreamHandle) -> None:
        """Remove a session that never became a stream (its upstream answered an error).

        Unlike :meth:`stop` it leaves alone a newer session that replaced it meanwhile.
        """
        ...

    async def lookup(
        self, conversation_ids: Iterable[str], *, owner: str | None = None
    ) -> list[SessionInfo]:
        """``owner``'s sessions whose id equals a requested id or is one of its ``::``
        variants."""
        ...

    def local_session_count(self) -> int:
        """Sessions this instance holds or produces (for ``/health``; never blocks)."""
        ...

    def shutdown(self) -> None:
        """Refuse new streams, cancel this instance's producers, end its readers."""
        ...
