"""The Redis store's producer side: the producers running on this instance.

Each runs under its own cancel scope (cancelled by DELETE or a replacement, here or via
the control channel), writes with the id stamping and keep-alive of the in-memory store,
has its lease kept alive (with every other producer's of the instance, by
``control.py``), and finalizes the session in Redis on its way out, whatever ended
it. Its bytes go to Redis through this instance's :class:`~.outbox.Flusher` (batched
with every other session's) and, once Redis has them, into a local
:class:`~trio_streams.core.session.StreamSession` that this instance's readers read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import trio

from trio_streams.core.end_reasons import EndReason
from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.core.session import SessionClosedError, StreamSession
from trio_streams.core.sse import (
    DONE_TAIL,
    PING,
    ends_with_done,
    error_event,
    generation_failed_event,
)
from trio_streams.stores.redis.commands import RedisCommands, only
from trio_streams.stores.redis.outbox import Flusher

logger = logging.getLogger("trio_streams")

#: The error event a log ends with when its producer is stopped by this instance's
#: shutdown: for readers elsewhere the answer is cut for good (the producer's request died
#: with the instance), as with an orphaned session; readers here are told to resume.
SHUTDOWN_MESSAGE = "generation interrupted: the server instance producing it shut down"


@dataclass(eq=False)
class LocalProducer:
    """A producer running on this instance, for one generation of one session."""

    conversation_id: str
    generation: str
    #: What Redis has acknowledged, as this instance's readers read it.
    session: StreamSession
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: The log's end with the bytes still waiting in :attr:`pending`: where the next
    #: write's ids count from.
    written: int = 0
    #: Stamped bytes not yet acknowledged by Redis; they start at ``session.total_bytes``.
    pending: bytearray = field(default_factory=bytearray)
    #: Nothing more goes to Redis: the session moved on there (finalized, replaced or
    #: stopped elsewhere), or the producer is done.
    closed: bool = False
    #: This producer's own FINALIZE ended the session: the local log holds all of it.
    finalized_here: bool = False
    #: Redis took none of its bytes for a whole lease (unreachable, or refusing writes:
    #: out of memory, a read-only replica): the producer was stopped, and this instance's
    #: readers of it end without an end event, so that their clients resume from Redis.
    unwritable: bool = False
    #: trio clock time of the last write; keep-alive measures idleness on it.
    last_append_clock: float = field(default_factory=trio.current_time)
    #: Adds ``id: <offset after the event>`` to each event (``None``: ids are off).
    stamper: EventIdStamper | None = None
    #: The last bytes written (``sse.DONE_TAIL`` of them): keep-alive ends after DONE.
    tail: bytes = b""


class RedisWriter:
    """The :class:`~trio_streams.core.producer.StreamWriter` of a shared session."""

    def __init__(self, producing: Producing, local: LocalProducer) -> None:
        self._producing = producing
        self._local = local

    async def write(self, data: bytes) -> None:
        local = self._local
        if data and self._producing.flusher.full(local):
            await self._producing.flusher.room(local)  # backpressure: Redis is behind
        if local.closed:
            # Finalized, replaced or stopped elsewhere: a cancel, if one is pending,
            # raises here; otherwise the producer learns its stream is closed.
            await trio.lowlevel.checkpoint()
            raise SessionClosedError("the session was finalized")
        if data:
            self._producing.put(local, data)
            local.last_append_clock = trio.current_time()
        await trio.lowlevel.checkpoint()


class Producing:
    """This instance's producers, by generation (unique to one session)."""

    def __init__(self, commands: RedisCommands) -> None:
        self._commands = commands
        self.flusher = Flusher(commands)
        self.running: dict[str, LocalProducer] = {}
        #: Set by shutdown: finalizing then waits at most 2 s for Redis.
        self.closing = False

    def get(self, generation: str) -> LocalProducer | None:
        return self.running.get(generation)

    def producing(self) -> list[LocalProducer]:
        """The producers running here that nothing has stopped yet (a stopped one is
        only waiting for its finalize's round trip to Redis)."""
        return [local for local in self.running.values() if not local.cancel_scope.cancel_called]

    def running_session(self, conversation_id: str) -> StreamSession | None:
        """The local log of ``conversation_id``'s producer, if one still runs here."""
        for local in self.producing():
            if local.conversation_id == conversation_id:
                return local.session
        return None

    def adopt(self, local: LocalProducer) -> None:
        """``local`` runs here from now on (the flusher stays until it has finalized)."""
        self.running[local.generation] = local
        self.flusher.register()

    def cancel_all(self) -> None:
        """Shutdown: cancel every producer (each finalizes its session on its way out)."""
        self.closing = True
        for local in list(self.running.values()):
            local.cancel_scope.cancel()
        self.flusher.stop_when_idle()

    def put(self, local: LocalProducer, data: bytes, *, stamp: bool = True) -> None:
        """Stamp ``data`` at the log's end (with what is still waiting) and queue it."""
        if stamp and local.stamper is not None:
            # No checkpoint since ``written`` was read: the ids are exact offsets.
            data = local.stamper.stamp(data, local.written)
        local.tail = (local.tail + data[-DONE_TAIL:])[-DONE_TAIL:]
        self.flusher.add(local, data)

    async def run(
        self, local: LocalProducer, producer: Producer, ping_interval: float | None
    ) -> None:
        """Run one producer under its cancel scope; finalize its session in Redis after."""
        failure = b""
        try:
            with local.cancel_scope:
                async with trio.open_nursery() as nursery:
                    if ping_interval:
                        nursery.start_soon(self.keep_alive, local, ping_interval)
                    await producer(RedisWriter(self, local))
                    nursery.cancel_scope.cancel()
            if local.cancel_scope.cancelled_caught and self.closing:
                failure = error_event(SHUTDOWN_MESSAGE)
        except Exception as exc:  # a failing producer must end its stream, not the server
            if not only(exc, (SessionClosedError,)):
                logger.exception("producer of stream %s failed", redact(local.conversation_id))
                failure = generation_failed_event(exc)
        finally:
            try:
                await self._finalize(local, failure)
            finally:
                # Whatever Redis did not get by now is lost: the lease finalizes the
                # session after the last byte it has (readers here never saw the rest).
                self.flusher.unregister(local)
                local.session.finalize(EndReason.FAILED if failure else EndReason.DONE)
                self.running.pop(local.generation, None)

    async def _finalize(self, local: LocalProducer, failure: bytes) -> None:
        """Flush what is waiting, then finalize in Redis, even when cancelled. If Redis
        stays unreachable (for a lease period, or 2 s when shutting down), the lease
        expires and a reader finalizes the session."""
        commands = self._commands
        lease = commands.lease_seconds
        patience = min(lease, 2.0) if self.closing else lease
        with trio.move_on_after(patience) as scope:
            scope.shield = True
            if failure and not local.closed:
                self.put(local, failure)  # stamped like any event, as the memory store does
            await self.flusher.drained(local)
            if local.closed:
                return  # the session moved on: whoever ended it finalized it
            finalized = await commands.retrying(
                "FINALIZE",
                local.conversation_id,
                local.generation,
                int(time.time()),
                commands.ttl_seconds,
                "",
                commands.max_bytes,
            )
            local.finalized_here = bool(finalized)

    async def keep_alive(self, local: LocalProducer, interval: float) -> None:
        """Write ``: ping`` whenever the stream has been silent for ``interval`` seconds
        (the same rule as the in-memory ``keepalive.keep_alive``), until ``data: [DONE]``.

        As there, the clock is compared with the deadline the sleep used, never
        ``now - last >= interval``, which can round below ``interval`` and spin."""
        while True:
            await trio.sleep_until(local.last_append_clock + interval)
            if trio.current_time() >= local.last_append_clock + interval:
                if ends_with_done(local.tail) or local.closed:
                    return
                # Pings are comments: no id, as in memory (keepalive.py appends them raw).
                # None while Redis is behind: the readers would not get them anyway.
                if not self.flusher.full(local):
                    self.put(local, PING, stamp=False)
                local.last_append_clock = trio.current_time()
