"""The in-process store: one process owns its sessions (the default).

A thin adapter of :class:`~trio_streams.core.manager.SessionManager` to the store seam
(:class:`~trio_streams.stores.protocol.SessionStore`): it answers at once, and checks the
owner (API key) that the manager itself does not know about. Beside the sessions it holds
the generic Durable Streams of ``/ds``
(:class:`~trio_streams.stores.durable.memory.MemoryDurableStore`), open as long as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack

from trio_streams.core.end_reasons import check_pin
from trio_streams.core.lifetime import Lifetime
from trio_streams.core.manager import SessionManager
from trio_streams.core.producer import Producer
from trio_streams.core.session import SessionInfo, StreamSession
from trio_streams.stores.durable.memory import MemoryDurableStore
from trio_streams.stores.protocol import SessionStore, StreamHandle


def as_store(sessions: SessionStore | SessionManager) -> tuple[SessionStore, SessionManager]:
    """A store and its in-memory manager, from either (a bare manager is a MemoryStore)."""
    if isinstance(sessions, SessionManager):
        return MemoryStore(sessions), sessions
    return sessions, sessions.manager


class MemoryStore(Lifetime):
    """The in-process store: a :class:`SessionManager` seen through the store seam."""

    def __init__(
        self, manager: SessionManager, durable_streams: MemoryDurableStore | None = None
    ) -> None:
        super().__init__()
        self._manager = manager
        self._durable_streams = MemoryDurableStore() if durable_streams is None else durable_streams

    @property
    def manager(self) -> SessionManager:
        return self._manager

    @property
    def durable_streams(self) -> MemoryDurableStore:
        """The generic Durable Streams served at ``/ds/v1/stream/…``."""
        return self._durable_streams

    async def _open(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.manager)
        await stack.enter_async_context(self._durable_streams)

    async def start(
        self,
        conversation_id: str | None,
        producer: Producer,
        *,
        ping_interval: float | None = None,
        owner: str | None = None,
    ) -> StreamHandle:
        return self.manager.start(
            conversation_id, producer, ping_interval=ping_interval, owner=owner
        )

    async def open(
        self,
        conversation_id: str,
        offset: int,
        *,
        generation: str | None = None,
        owner: str | None = None,
    ) -> StreamHandle | None:
        session = self.manager.get(conversation_id)
        if session is not None and session.owner != owner:
            return None  # another API key's: answered as unknown, tombstone or not
        tombstone = self.manager.tombstone(conversation_id)
        if tombstone is not None and tombstone.owner != owner:
            tombstone = None
        check_pin(None if session is None else session.generation, generation, tombstone)
        if session is None:
            return None
        session.check_offset(offset)
        return session

    async def stop(
        self, conversation_id: str, *, owner: str | None = None, generation: str | None = None
    ) -> bool:
        session = self.manager.get(conversation_id)
        if session is None or session.owner != owner:
            return False
        if generation is not None and session.generation != generation:
            return False
        return self.manager.stop(conversation_id)

    async def cancel(self, conversation_id: str, *, owner: str | None = None) -> bool:
        session = self.manager.get(conversation_id)
        if session is None or session.owner != owner:
            return False
        session.cancel()
        return True

    async def discard(self, handle: StreamHandle) -> None:
        if isinstance(handle, StreamSession):
            self.manager.discard(handle)
        else:
            handle.cancel()

    async def lookup(
        self, conversation_ids: Iterable[str], *, owner: str | None = None
    ) -> list[SessionInfo]:
        found = self.manager.lookup(conversation_ids)
        return [info for info in found if self._owned(info.conversation_id, owner)]

    def _owned(self, conversation_id: str, owner: str | None) -> bool:
        session = self.manager.get(conversation_id)
        return session is not None and session.owner == owner

    def local_session_count(self) -> int:
        return len(self.manager)

    def shutdown(self) -> None:
        super().shutdown()
        self.manager.shutdown()
        self._durable_streams.shutdown()
