"""The Redis store's producer side: the producers running on this instance.

Each runs under its own cancel scope (cancelled by DELETE or a replacement, here or via
the control channel), appends to its session's log in Redis with the id stamping and
keep-alive of the in-memory store, keeps its lease alive, and finalizes the session in
Redis on its way out, whatever ended it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.core.session import SessionClosedError
from trio_streams.core.sse import DONE_TAIL, PING, ends_with_done, generation_failed_event
from trio_streams.stores.redis.commands import RedisCommands, only

logger = logging.getLogger("trio_streams")


@dataclass(eq=False)
class LocalProducer:
    """A producer running on this instance, for one generation of one session."""

    conversation_id: str
    generation: str
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: The log's end as this producer wrote it: an append names the end it expects to
    #: extend, so a retry after a lost reply cannot append the same bytes twice.
    total_bytes: int = 0
    #: Appends of one producer (its own writes and keep-alive pings) go one at a time.
    append_lock: trio.Lock = field(default_factory=trio.Lock)
    #: trio clock time of the last append; keep-alive measures idleness on it.
    last_append_clock: float = field(default_factory=trio.current_time)
    #: Adds ``id: <offset after the event>`` to each event (``None``: ids are off).
    stamper: EventIdStamper | None = None
    #: The last bytes appended (``sse.DONE_TAIL`` of them): keep-alive ends after DONE.
    tail: bytes = b""


class RedisWriter:
    """The :class:`~trio_streams.core.producer.StreamWriter` that appends to the shared log."""

    def __init__(self, producing: Producing, local: LocalProducer) -> None:
        self._producing = producing
        self._local = local

    async def write(self, data: bytes) -> None:
        if not data:
            await trio.lowlevel.checkpoint()
            return
        if await self._producing.append(self._local, data) < 0:
            # Finalized, replaced or stopped elsewhere: a cancel, if one is pending,
            # raises here; otherwise the producer learns its stream is closed.
            await trio.lowlevel.checkpoint()
            raise SessionClosedError("the session was finalized")
        self._local.last_append_clock = trio.current_time()


class Producing:
    """This instance's producers, by generation (unique to one session)."""

    def __init__(
        self,
        commands: RedisCommands,
        renew_lease: Callable[[LocalProducer], Awaitable[None]],
    ) -> None:
        self._commands = commands
        self._renew_lease = renew_lease
        self.running: dict[str, LocalProducer] = {}
        #: Set by shutdown: finalizing then waits at most 2 s for Redis.
        self.closing = False

    def get(self, generation: str) -> LocalProducer | None:
        return self.running.get(generation)

    def cancel_all(self) -> None:
        """Shutdown: cancel every producer (each finalizes its session on its way out)."""
        self.closing = True
        for local in list(self.running.values()):
            local.cancel_scope.cancel()

    async def run(
        self, local: LocalProducer, producer: Producer, ping_interval: float | None
    ) -> None:
        """Run one producer under its cancel scope; finalize its session in Redis after."""
        commands = self._commands
        failure = ""
        try:
            with local.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew_lease, local)
                    if ping_interval:
                        nursery.start_soon(self.keep_alive, local, ping_interval)
                    await producer(RedisWriter(self, local))
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # a failing producer must end its stream, not the server
            if not only(exc, (SessionClosedError,)):
                logger.exception("producer of stream %s failed", redact(local.conversation_id))
                failure = generation_failed_event(exc).decode()
        finally:
            self.running.pop(local.generation, None)
            # Finalize even when cancelled. If Redis stays unreachable (for a lease period,
            # or 2 s when shutting down), the lease expires and a reader finalizes it.
            lease = commands.lease_seconds
            patience = min(lease, 2.0) if self.closing else lease
            with trio.move_on_after(patience) as scope:
                scope.shield = True
                await commands.retrying(
                    "FINALIZE",
                    local.conversation_id,
                    local.generation,
                    int(time.time()),
                    commands.ttl_seconds,
                    failure,
                    commands.max_bytes,
                )

    async def append(self, local: LocalProducer, data: bytes, *, stamp: bool = True) -> int:
        """Append ``data`` to the log; the log's new end, or -1 if the session moved on."""
        async with local.append_lock:
            if stamp and local.stamper is not None:
                # Under the lock: the ids are exact offsets, no ping can slip in between.
                data = local.stamper.stamp(data, local.total_bytes)
            result = int(
                await self._commands.retrying(
                    "APPEND",
                    local.conversation_id,
                    local.generation,
                    data,
                    self._commands.max_bytes,
                    local.total_bytes,
                )
            )
            if result >= 0:
                local.total_bytes = result
                local.tail = (local.tail + data[-DONE_TAIL:])[-DONE_TAIL:]
            return result

    async def keep_alive(self, local: LocalProducer, interval: float) -> None:
        """Append ``: ping`` whenever the stream has been silent for ``interval`` seconds
        (the same rule as the in-memory ``keepalive.keep_alive``), until ``data: [DONE]``."""
        while True:
            await trio.sleep_until(local.last_append_clock + interval)
            if trio.current_time() - local.last_append_clock >= interval:
                if ends_with_done(local.tail):
                    return
                # Pings are comments: no id, as in memory (keepalive.py appends them raw).
                if await self.append(local, PING, stamp=False) < 0:
                    return
                local.last_append_clock = trio.current_time()
