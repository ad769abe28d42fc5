"""The session manager: owns every session, every producer task and garbage collection.

Used as ``async with SessionManager(...) as manager:`` around the server's life. Its root
nursery holds one task per producer plus the garbage collector; leaving the block (or
calling :meth:`SessionManager.shutdown`) cancels every producer and finalizes every session,
so no reader is ever left waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import trio

from trio_streams.core.end_reasons import EndReason, Tombstone
from trio_streams.core.keepalive import keep_alive
from trio_streams.core.lifetime import Chore, Lifetime
from trio_streams.core.limits import Capacity, ConversationOwnedError, Limits
from trio_streams.core.producer import Producer, SessionWriter
from trio_streams.core.redact import redact
from trio_streams.core.session import SessionClosedError, SessionInfo, StreamSession
from trio_streams.core.sse import generation_failed_event

logger = logging.getLogger("trio_streams")

VARIANT_SEPARATOR = "::"
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_TTL = 300.0
DEFAULT_GC_INTERVAL = 60.0
DEFAULT_PING_INTERVAL = 5.0
#: Tombstones kept at most (the oldest go first): a client flooding start-and-DELETE
#: cannot grow them without bound, and each is a few hundred bytes.
MAX_TOMBSTONES = 10_000


class ManagerClosedError(Exception):
    """The manager is shutting down and takes no new streams."""


def variant_prefixes(conversation_id: str) -> list[str]:
    """The ids a lookup may name to find ``conversation_id``: ``a::b::c`` → ``a``, ``a::b``."""
    prefixes = []
    start = conversation_id.find(VARIANT_SEPARATOR)
    while start != -1:
        prefixes.append(conversation_id[:start])
        start = conversation_id.find(VARIANT_SEPARATOR, start + len(VARIANT_SEPARATOR))
    return prefixes


class SessionManager(Lifetime):
    """All live and retained sessions of one process, keyed by conversation id."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL,
        gc_interval: float = DEFAULT_GC_INTERVAL,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        limits: Limits | None = None,
        event_ids: bool = True,
        also_running: Callable[[], Iterable[StreamSession]] | None = None,
    ) -> None:
        """``also_running``: the sessions of producers this process runs outside the
        manager (the Redis store's shared sessions produced here). The limits count them
        with the manager's own, so ``max_producers`` and the byte budget hold for the whole
        process whichever store its sessions live in; the manager never cancels,
        finalizes or evicts them."""
        super().__init__()
        self._also_running = also_running
        self.capacity = Capacity(Limits() if limits is None else limits, max_bytes, self)
        self.limits = self.capacity.limits
        self.stats = self.capacity.stats
        self.max_bytes = max_bytes
        #: Stamp every SSE event with ``id: <offset after it>`` (for EventSource resume).
        self.event_ids = event_ids
        self.ttl = ttl
        self.gc_interval = gc_interval
        self.ping_interval = ping_interval
        self._sessions: dict[str, StreamSession] = {}
        # base id -> ids of its "::" variants (insertion ordered), so lookup needs no scan.
        self._variants: dict[str, dict[str, None]] = {}
        # Every session whose producer is running, named or not, for shutdown.
        self._producing: set[StreamSession] = set()
        # Stopped or evicted ids -> why, for the TTL (trio clock time of the removal).
        self._tombstones: dict[str, tuple[Tombstone, float]] = {}

    # -- lifetime ------------------------------------------------------------------------

    def _chores(self) -> Iterable[Chore]:
        return [(self.gc_interval, self.collect_garbage)]

    def shutdown(self) -> None:
        """Refuse new streams, cancel every producer, finalize every session. Idempotent.

        Readers end normally (their responses complete); the caller's own work inside
        ``async with manager`` is not cancelled.
        """
        super().shutdown()
        for session in list(self._producing) + list(self._sessions.values()):
            session.cancel()
            session.finalize(EndReason.SHUTDOWN)

    # -- sessions --------------------------------------------------------------------------

    def start(
        self,
        conversation_id: str | None,
        producer: Producer,
        *,
        ping_interval: float | None = None,
        owner: str | None = None,
    ) -> StreamSession:
        """Create (or replace) the session and start its producer; returns at once.

        The session exists before the producer runs, so it can be read, looked up and
        stopped during prefill. ``conversation_id=None`` makes an anonymous session that is
        never registered: its caller cancels it when its client leaves.

        Raises :class:`CapacityError` when the limits leave no room (after evicting
        finished sessions), and :class:`ConversationOwnedError` when the id belongs to a
        session of another ``owner`` (an API key fingerprint).
        """
        if self._closed or self._nursery is None:
            raise ManagerClosedError("the session manager is not running")
        previous = self._sessions.get(conversation_id) if conversation_id else None
        if previous is not None and previous.owner != owner:
            raise ConversationOwnedError("the conversation id belongs to another API key")
        self.capacity.admit(previous, registered=bool(conversation_id))
        session = StreamSession(conversation_id or "", self.max_bytes)
        session.owner = owner
        if conversation_id:
            self._register(session)
            if previous is not None:
                logger.info("replacing stream %s", redact(conversation_id))
                if not previous.is_done:
                    self.stats.cancels += 1
                previous.cancel()
                previous.finalize(EndReason.REPLACED)
                self.capacity.retire(previous)
        interval = self.ping_interval if ping_interval is None else ping_interval
        self._producing.add(session)
        self._nursery.start_soon(self._run_producer, session, producer, interval)
        return session

    def get(self, conversation_id: str) -> StreamSession | None:
        return self._sessions.get(conversation_id)

    def stop(self, conversation_id: str) -> bool:
        """DELETE: cancel the producer, evict and finalize. Idempotent; ``True`` if found."""
        session = self._sessions.get(conversation_id)
        if session is None:
            return False
        self._unregister(session)
        if not session.is_done:
            self.stats.cancels += 1
        session.cancel()
        session.finalize(EndReason.STOPPED)
        self._bury(session, EndReason.STOPPED)
        self.capacity.retire(session)
        logger.info("stopped stream %s", redact(conversation_id))
        return True

    def tombstone(self, conversation_id: str) -> Tombstone | None:
        """Why ``conversation_id``'s last stopped or evicted session went, within the TTL."""
        found = self._tombstones.get(conversation_id)
        if found is None:
            return None
        tombstone, buried_at = found
        if buried_at <= trio.current_time() - self.ttl:
            del self._tombstones[conversation_id]
            return None
        return tombstone

    def _bury(self, session: StreamSession, reason: EndReason) -> None:
        cid = session.conversation_id
        self._tombstones.pop(cid, None)  # the newest goes last, in removal order
        self._tombstones[cid] = (
            Tombstone(reason, session.generation, session.owner),
            trio.current_time(),
        )
        while len(self._tombstones) > MAX_TOMBSTONES:
            del self._tombstones[next(iter(self._tombstones))]

    def discard(self, session: StreamSession) -> None:
        """Remove ``session`` if it is still the one under its id; cancel and finalize it.

        For a stream that never became one (its upstream answered with an error): unlike
        :meth:`stop` it cannot evict a newer session that has replaced it meanwhile.
        """
        self._unregister(session)
        session.cancel()
        session.finalize()

    def lookup(self, conversation_ids: Iterable[str]) -> list[SessionInfo]:
        """Sessions whose id equals a requested id or is one of its ``::`` variants."""
        found: dict[str, None] = {}
        for requested in conversation_ids:
            if requested in self._sessions:
                found[requested] = None
            found.update(self._variants.get(requested, {}))
        return [self._sessions[cid].info() for cid in found]

    def __len__(self) -> int:
        """Registered sessions, live and finished (anonymous ones are not counted)."""
        return len(self._sessions)

    @property
    def producer_count(self) -> int:
        """Producers running now, anonymous ones and ``also_running`` ones included."""
        return len(self.running())

    def sessions(self) -> list[StreamSession]:
        """Every session that holds memory: registered, running, or still being sent."""
        found = dict.fromkeys(self._sessions.values())
        found.update(dict.fromkeys(self.running()))
        found.update(dict.fromkeys(self.capacity.finished()))
        return list(found)

    def retained_bytes(self) -> int:
        """Bytes held by every session's log right now."""
        return sum(session.retained_bytes for session in self.sessions())

    def reserved_bytes(self) -> int:
        """What the byte budget counts: a running session's cap, a finished one's bytes.

        Always at least :meth:`retained_bytes`, and never above ``limits.max_total_bytes``.
        """
        return self.capacity.reserved_bytes()

    # -- what the capacity (limits.py) needs ------------------------------------------------

    def registered_count(self) -> int:
        return len(self._sessions)

    def is_registered(self, session: StreamSession) -> bool:
        cid = session.conversation_id
        return bool(cid) and self._sessions.get(cid) is session

    def running(self) -> set[StreamSession]:
        """Sessions whose producer runs in this process: the manager's own, and
        ``also_running``'s."""
        if self._also_running is None:
            return self._producing
        return self._producing.union(self._also_running())

    def unregister(self, session: StreamSession, reason: EndReason | None = None) -> None:
        """Remove ``session`` from its id; with ``reason`` (an eviction) keep a tombstone."""
        if reason is not None and self.is_registered(session):
            self._bury(session, reason)
        self._unregister(session)

    def collect_garbage(self) -> int:
        """Evict sessions finalized more than ``ttl`` ago; live ones are never collected."""
        cutoff = trio.current_time() - self.ttl
        expired = [
            session
            for session in self._sessions.values()
            if session.completed_at_clock is not None and session.completed_at_clock <= cutoff
        ]
        for session in expired:
            self._unregister(session)
            self.capacity.retire(session)
        self.stats.evictions_ttl += len(expired)
        # Tombstones are kept for the TTL too (and are oldest first: stop at a young one).
        for cid, (_, buried_at) in list(self._tombstones.items()):
            if buried_at > cutoff:
                break
            del self._tombstones[cid]
        if expired:
            logger.debug("garbage collection evicted %d sessions", len(expired))
        return len(expired)

    # -- internals -------------------------------------------------------------------------

    def _register(self, session: StreamSession) -> None:
        cid = session.conversation_id
        self._sessions[cid] = session
        for prefix in variant_prefixes(cid):
            self._variants.setdefault(prefix, {})[cid] = None

    def _unregister(self, session: StreamSession) -> None:
        cid = session.conversation_id
        if self._sessions.get(cid) is not session:
            return
        del self._sessions[cid]
        for prefix in variant_prefixes(cid):
            variants = self._variants.get(prefix)
            if variants is not None:
                variants.pop(cid, None)
                if not variants:
                    del self._variants[prefix]

    async def _run_producer(
        self, session: StreamSession, producer: Producer, ping_interval: float | None
    ) -> None:
        """Run one producer in its own nursery, under the cancel scope its session owns."""
        writer = SessionWriter(session, event_ids=self.event_ids)
        reason = EndReason.DONE
        try:
            with session.cancel_scope:
                async with trio.open_nursery() as nursery:
                    if ping_interval:
                        nursery.start_soon(keep_alive, session, ping_interval)
                    await producer(writer)
                    nursery.cancel_scope.cancel()
        except SessionClosedError:
            pass
        except Exception as exc:  # a failing producer must end its stream, not the server
            logger.exception("producer of stream %s failed", redact(session.conversation_id))
            writer.write_nowait(generation_failed_event(exc))
            reason = EndReason.FAILED
        finally:
            self._producing.discard(session)
            session.finalize(reason)
            # Still holding bytes the budget must count: registered (until TTL or
            # eviction), or anonymous with a reader that may still be sending them.
            if not self._closed and (self.is_registered(session) or not session.conversation_id):
                self.capacity.retire(session)
