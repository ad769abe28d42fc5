"""The producing instance's writes to Redis: one flusher task, one round trip for many
appends.

A producer's bytes are stamped with their SSE ids at once, on this instance, and wait in
their session's outbox. The :class:`Flusher` sends whatever every session has waiting in
one ``APPEND_MANY`` script call, and while that round trip is out the next batch
gathers: a busy instance makes one round trip for many appends, an idle one sends each
append at once. Only what Redis has acknowledged goes into the session's local log
(``LocalProducer.session``, a core :class:`~trio_streams.core.session.StreamSession`),
which this instance's readers read as they read the memory store's. So no client ever
holds a byte that Redis does not: a reader on this instance lags the producer by the
flush it waits for (at most the round trip under way, then its own), a reader on another
instance by that and one pub/sub push, and a resume anywhere finds every byte it was
sent, at the same offset.

Bounds, so that a producer cannot run away from Redis (an outage, or a Redis slower
than the producers): a write waits while its session has :data:`OUTBOX_BYTES` unsent,
or the instance :data:`PENDING_BYTES`. An instance that dies loses what its outboxes
held, at most that much; readers never saw those bytes, and the lease finalizes the
session with the interruption event right after the last byte Redis has. A batch that
Redis has not taken within a lease (unreachable, or refusing writes: out of memory, a
read-only replica) is given up: its producers are stopped, as the lease would have them
be, and their readers here end, so no reader waits on writes that cannot land.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from trio_streams.stores.redis.commands import REDIS_ERRORS, RedisCommands

if TYPE_CHECKING:
    from trio_streams.stores.redis.producing import LocalProducer

#: A producer waits while its session has this many bytes not yet in Redis (or half its
#: log's cap, if less: one flush then never appends more than the cap holds, so a local
#: reader that had caught up is never overtaken by a single batch)...
OUTBOX_BYTES = 64 * 1024
#: ...or while the whole instance has this many.
PENDING_BYTES = 8 * 1024 * 1024
#: One round trip carries the outboxes of as many sessions as fit in about this much.
FLUSH_BYTES = 1024 * 1024

logger = logging.getLogger("trio_streams")


class Flusher:
    """This instance's one writer to Redis: every session's appends, batched."""

    def __init__(self, commands: RedisCommands) -> None:
        self._commands = commands
        self._outbox_bytes = max(1, min(OUTBOX_BYTES, commands.max_bytes // 2))
        #: Sessions with bytes waiting, in the order they got them (a fair queue).
        self._dirty: dict[LocalProducer, None] = {}
        self._work = trio.lowlevel.ParkingLot()
        #: Writers waiting for room, finalizers waiting for their outbox to empty.
        self._flushed = trio.lowlevel.ParkingLot()
        #: Bytes in every outbox, sent or not, not yet acknowledged.
        self.pending_bytes = 0
        #: Producers that may still write (the flusher runs until they are all done).
        self._producers = 0
        self._stopping = False
        #: Round trips and appends so far (for tests and figures).
        self.round_trips = 0
        self.appends = 0

    # -- producers -----------------------------------------------------------------------

    def register(self) -> None:
        self._producers += 1

    def unregister(self, local: LocalProducer) -> None:
        """``local`` is done: drop what it still has waiting (lost, see the module)."""
        self.forget(local)
        self._producers -= 1
        self._work.unpark_all()

    def stop_when_idle(self) -> None:
        """Shutdown: end the task once every producer has finalized."""
        self._stopping = True
        self._work.unpark_all()

    def add(self, local: LocalProducer, data: bytes) -> None:
        """Queue ``data`` (already stamped) after everything ``local`` has queued."""
        local.pending += data
        local.written += len(data)
        self.pending_bytes += len(data)
        self.appends += 1
        if local not in self._dirty:
            self._dirty[local] = None
            self._work.unpark()

    def full(self, local: LocalProducer) -> bool:
        return len(local.pending) >= self._outbox_bytes or self.pending_bytes >= PENDING_BYTES

    async def room(self, local: LocalProducer) -> None:
        """Wait until ``local`` may queue more (or its session has moved on)."""
        while self.full(local) and not local.closed:
            await self._flushed.park()

    async def drained(self, local: LocalProducer) -> None:
        """Wait until Redis has every byte ``local`` queued (or its session moved on)."""
        while local.pending and not local.closed:
            await self._flushed.park()

    def forget(self, local: LocalProducer) -> None:
        """Stop sending ``local``'s bytes; a reply still on its way is ignored."""
        if not local.closed:
            local.closed = True
            self.pending_bytes -= len(local.pending)
            local.pending.clear()
        self._dirty.pop(local, None)
        self._flushed.unpark_all()

    # -- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            while not self._dirty:
                if self._stopping and self._producers <= 0:
                    return
                await self._work.park()
            batch = self._take()
            if batch:
                await self._send(batch)
            # Let go of the batch before parking: it holds its sessions (their logs), which
            # must be freed once finished, not kept until this instance's next append.
            del batch
            self._flushed.unpark_all()

    def _take(self) -> list[tuple[LocalProducer, bytes]]:
        """The next sessions' outboxes, oldest first, up to about :data:`FLUSH_BYTES`."""
        batch: list[tuple[LocalProducer, bytes]] = []
        size = 0
        while self._dirty and size < FLUSH_BYTES:
            local = next(iter(self._dirty))
            del self._dirty[local]
            if local.closed or not local.pending:
                continue
            data = bytes(local.pending)
            batch.append((local, data))
            size += len(data)
        return batch

    async def _send(self, batch: list[tuple[LocalProducer, bytes]]) -> None:
        """One round trip; retried unchanged until Redis answers, so that a batch whose
        reply was lost is recognized (each append names the end it extends) and not
        applied twice. Given up after a lease (:meth:`_give_up`)."""
        args: list[str | int | bytes] = [self._commands.max_bytes]
        for local, data in batch:
            args += [local.conversation_id, local.generation, local.session.total_bytes, data]
        deadline = trio.current_time() + self._commands.lease_seconds
        delay = 0.05
        while True:
            error: BaseException | None = None
            with trio.move_on_at(deadline):
                try:
                    results = await self._commands.run("APPEND_MANY", *args)
                    break
                except REDIS_ERRORS as exc:
                    error = exc
                    if all(local.closed for local, _ in batch):
                        return  # every producer of the batch gave up: nothing to wait for
                    await trio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            if trio.current_time() >= deadline:
                self._give_up(batch, error)
                return
        self.round_trips += 1
        for (local, data), result in zip(batch, results, strict=True):
            if local.closed:
                continue  # forgotten while the round trip was out
            if int(result) < 0:
                # Finalized, replaced or stopped elsewhere: the producer's next write
                # learns it; its bytes have nowhere to go.
                self.forget(local)
                continue
            del local.pending[: len(data)]
            self.pending_bytes -= len(data)
            local.session.append(data)

    def _give_up(
        self, batch: list[tuple[LocalProducer, bytes]], error: BaseException | None
    ) -> None:
        """Redis took no write of ``batch`` for a lease: stop its producers (another
        instance may finalize their sessions by now, as for a dead instance) and end
        their readers here, who resume from what Redis has."""
        stopped = [local for local, _ in batch if not local.closed]
        for local in stopped:
            local.unwritable = True
            self.forget(local)
            local.cancel_scope.cancel()
        if stopped:
            logger.warning(
                "session store took no write for %.0f s (%s): stopped %d producers; "
                "their readers resume",
                self._commands.lease_seconds,
                error or "no answer",
                len(stopped),
            )
