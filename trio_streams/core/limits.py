"""Global limits of one server: a byte budget, a session count and a producer count.

Admission works by reservation, which makes the memory bound provable rather than hoped
for: a running session may grow up to its cap (``max_bytes``), so it *reserves* that cap
when it is admitted; once finished, it holds only the bytes it retained. The manager admits
a new stream only if

    running sessions x max_bytes + bytes retained by finished sessions + max_bytes
        <= max_total_bytes

evicting finished sessions oldest-first to get there, and refusing (``429``) when only
running ones are left. Appends then never need a check on the hot path: no running
session can outgrow its reservation, and a finished one never grows. Retained bytes of all
sessions therefore stay within ``max_total_bytes`` whatever clients do; the overhead on top
is per-object bookkeeping plus, per connected reader, at most one read chunk
(:data:`~trio_streams.core.session.MAX_READ_CHUNK`) and its socket buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from trio_streams.core.end_reasons import EndReason
from trio_streams.core.redact import redact
from trio_streams.core.session import StreamSession

logger = logging.getLogger("trio_streams")

DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_PRODUCERS = 256
#: What ``Retry-After`` tells a refused client: running streams finish within seconds
#: (and then become evictable), so a short wait is the honest estimate.
DEFAULT_RETRY_AFTER = 2


@dataclass(frozen=True, slots=True)
class Limits:
    """Capacity of one manager; ``None`` means unlimited."""

    max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES
    max_sessions: int | None = DEFAULT_MAX_SESSIONS
    max_producers: int | None = DEFAULT_MAX_PRODUCERS
    retry_after: int = DEFAULT_RETRY_AFTER

    def check(self, session_max_bytes: int) -> None:
        """Refuse settings under which not even one stream could ever be admitted."""
        if self.max_total_bytes is not None and self.max_total_bytes < session_max_bytes:
            raise ValueError("max_total_bytes must be at least the session cap (max_bytes)")
        for name in ("max_sessions", "max_producers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")


class CapacityError(Exception):
    """No room for a new stream: only running sessions are left to hold the limit."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ConversationOwnedError(Exception):
    """A stream request names a conversation id that another API key's session holds."""


@dataclass(slots=True)
class ManagerStats:
    """Monotonic counters kept by the manager, exported by ``/metrics``."""

    #: Producers stopped by DELETE or replacement (not by finishing).
    cancels: int = 0
    #: Sessions removed before their time: by garbage collection (``ttl``) or for room.
    evictions_ttl: int = 0
    evictions_capacity: int = 0
    #: New streams refused with ``429``, by the limit that refused them.
    rejections: dict[str, int] = field(default_factory=dict)


class SessionRegistry(Protocol):
    """What :class:`Capacity` needs to know of its manager."""

    def registered_count(self) -> int: ...

    def is_registered(self, session: StreamSession) -> bool: ...

    def running(self) -> Iterable[StreamSession]: ...

    def unregister(self, session: StreamSession, reason: EndReason | None = None) -> None: ...


class Capacity:
    """The limits of one manager and the finished sessions it may evict, oldest first.

    The manager tells it when a stream asks to start (:meth:`admit`) and when a session
    finishes, is stopped, replaced or expires (:meth:`retire`); everything else about the
    budget lives here.
    """

    def __init__(self, limits: Limits, max_bytes: int, registry: SessionRegistry) -> None:
        limits.check(max_bytes)
        self.limits = limits
        self.max_bytes = max_bytes
        self.stats = ManagerStats()
        self._registry = registry
        # Finished sessions that still hold bytes, in the order they finished: registered
        # ones, and unregistered ones (anonymous, stopped, replaced, expired) that readers
        # may still be sending. Eviction for room takes them from the front.
        self._finished: dict[StreamSession, None] = {}

    def finished(self) -> list[StreamSession]:
        self._forget_unread()
        return list(self._finished)

    def reserved_bytes(self) -> int:
        """What the budget counts: a running session's cap, a finished one's bytes."""
        self._forget_unread()
        running = sum(1 for session in self._registry.running() if not session.is_done)
        return running * self.max_bytes + sum(s.retained_bytes for s in self._finished)

    def admit(self, replacing: StreamSession | None, *, registered: bool) -> None:
        """Make room for one more stream, evicting finished sessions oldest-first, or
        raise :class:`CapacityError`.

        ``replacing`` is the session the new one will replace: the replacement frees its
        share, except the bytes a reader still holds (those stay counted until that reader
        ends), so it is left out of the counts accordingly (and never evicted here).
        """
        limits = self.limits
        running = sum(1 for s in self._registry.running() if not s.is_done and s is not replacing)
        if limits.max_producers is not None and running >= limits.max_producers:
            self._refuse("producers", "too many streams are running")
        if registered and limits.max_sessions is not None:
            while (
                self._registry.registered_count() - (replacing is not None) >= limits.max_sessions
            ):
                if not self._evict_oldest(replacing, registered_only=True):
                    self._refuse("sessions", "too many sessions")
        if limits.max_total_bytes is not None:
            freed = self._freed_by_replacing(replacing)
            while self.reserved_bytes() - freed + self.max_bytes > limits.max_total_bytes:
                if not self._evict_oldest(replacing, registered_only=False):
                    self._refuse("bytes", "the memory budget is taken by running streams")

    def retire(self, session: StreamSession) -> None:
        """Queue a finished session for eviction: registered ones until they expire,
        unregistered ones (their bytes still counted) while readers may still send them."""
        # An unregistered session nobody reads is held by nothing else: keeping it queued
        # (it was queued when it finished, registered) would keep its bytes until the next
        # admission or lookup ran _forget_unread (never, with no byte budget), so memory
        # would not come back after TTL eviction.
        if self._registry.is_registered(session) or (
            session.retained_bytes and session.reader_count
        ):
            self._finished.setdefault(session, None)  # keeps its place in the order
        else:
            self._finished.pop(session, None)

    def _freed_by_replacing(self, session: StreamSession | None) -> int:
        if session is None:
            return 0
        if not session.is_done:
            counted_now = self.max_bytes
        else:
            counted_now = session.retained_bytes if session in self._finished else 0
        counted_after = session.retained_bytes if session.reader_count else 0
        return counted_now - counted_after

    def _evict_oldest(self, keep: StreamSession | None, *, registered_only: bool) -> bool:
        for session in self._finished:
            if session is keep:
                continue
            if registered_only and not self._registry.is_registered(session):
                continue
            del self._finished[session]
            self._registry.unregister(session, EndReason.EVICTED)  # keeps a tombstone
            session.release(EndReason.EVICTED)  # its readers end now: their bytes make room
            self.stats.evictions_capacity += 1
            logger.info("evicted stream %s for room", redact(session.conversation_id))
            return True
        return False

    def _forget_unread(self) -> None:
        """Stop counting unregistered sessions without readers: nothing holds them now.

        A reader that attached to such a session before it was retired keeps it counted
        until the reader ends; no new reader can attach, as the id no longer finds it.
        """
        gone = [
            s for s in self._finished if s.reader_count == 0 and not self._registry.is_registered(s)
        ]
        for session in gone:
            del self._finished[session]

    def _refuse(self, limit: str, reason: str) -> None:
        self.stats.rejections[limit] = self.stats.rejections.get(limit, 0) + 1
        raise CapacityError(f"Server is at capacity: {reason}", self.limits.retry_after)
