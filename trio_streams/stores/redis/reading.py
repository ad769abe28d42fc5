"""The Redis store's reader side: this instance's readers of shared logs.

A session produced on this instance is read from its local log (``LocalProducer.session``,
filled as Redis acknowledges each batch): no Redis command per reader or per append, as
with the memory store. If that log ends without this instance having finalized the
session (replaced, stopped or orphaned elsewhere, or Redis unreachable), its readers go on
from Redis at their offset, so they get what the others get.

The readers of any other log on this instance share a follower (``follower.py``) that
gets the log's entries pushed through the instance's one pub/sub connection
(``subscriber.py``); there is no polling loop, and no connection per session. Older bytes
than the follower keeps come from the log's byte segments, one ``GETRANGE`` of up to
1 MiB each (the ``RANGE`` script where there are none), each read while the reader
writes the one before. After one lease period without
news a follower checks the lease and, if it expired while the session is live (the owner
died), finalizes the session with an SSE error event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

import coredis
import trio

from trio_streams.core.end_reasons import EndReason
from trio_streams.stores.redis.commands import REDIS_ERRORS, RedisCommands
from trio_streams.stores.redis.follower import LogFollower
from trio_streams.stores.redis.keys import log_key, segment_key_parts
from trio_streams.stores.redis.producing import LocalProducer
from trio_streams.stores.redis.subscriber import Subscriber


class RedisStream:
    """A :class:`~trio_streams.stores.protocol.StreamHandle` on one generation of a
    shared session."""

    def __init__(
        self,
        reading: Reading,
        conversation_id: str,
        generation: str,
        local: LocalProducer | None = None,
    ) -> None:
        self._reading = reading
        self.conversation_id = conversation_id
        self.generation = generation
        self._local = local
        self._ending: EndReason | None = None

    async def read(self, offset: int = 0) -> AsyncGenerator[bytes, None]:
        local = self._local
        if local is not None:
            async for chunk in local.session.read(offset):
                offset += len(chunk)
                yield chunk
            if local.finalized_here:
                self._ending = local.session.end_reason
                return  # the local log ended where Redis's did
            if local.unwritable:
                return  # no end known here: the client resumes (503 until Redis takes writes)

        def ended(reason: EndReason | None) -> None:
            self._ending = reason

        reading = self._reading.read(self.conversation_id, self.generation, offset, ended)
        async for chunk in reading:
            yield chunk

    def cancel(self) -> None:
        if self._local is not None:
            self._local.cancel_scope.cancel()

    def ending(self) -> EndReason | None:
        """The log's end reason; ``shutdown`` if this instance is shutting down (its
        readers resume elsewhere)."""
        if self._reading.closed:
            return EndReason.SHUTDOWN
        return self._ending


class Reading:
    """The followers of this instance, one per log generation that has readers here."""

    def __init__(
        self,
        commands: RedisCommands,
        client: coredis.Redis[bytes],
    ) -> None:
        self._commands = commands
        self._client = client
        #: The one pub/sub connection that brings this instance its followed logs.
        self.subscriber = Subscriber(client)
        # generation -> the follower shared by this instance's readers of that log.
        self._followers: dict[str, LogFollower] = {}
        #: Where followers run; set by the store while it is open.
        self.nursery: trio.Nursery | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self) -> None:
        """End every reader on this instance (each response ends; clients resume)."""
        self._closed = True
        for follower in list(self._followers.values()):
            follower.cancel_scope.cancel()
        self.subscriber.shutdown()

    async def read(
        self,
        conversation_id: str,
        generation: str,
        offset: int,
        ended: Callable[[EndReason | None], None],
    ) -> AsyncGenerator[bytes, None]:
        """Follow one log from ``offset``: the tail from this instance's shared follower
        (pushed through pub/sub, never a poll), older bytes from the log's segments.
        ``ended`` is told why the log ended (``None``: it did not, as far as we know)."""
        if offset < 0:
            raise ValueError("offset must be non-negative")
        follower = self._follower(conversation_id, generation)
        if follower is None:
            return  # shutting down
        follower.readers += 1
        try:
            await follower.ready.wait()
            while True:
                if offset < follower.end:
                    chunk = follower.take(offset)
                    if chunk is None:
                        chunk = await follower.backlog(offset)
                        if chunk is None:
                            return  # Redis unreachable: the client resumes later
                        self._read_ahead(follower, offset + len(chunk))
                    offset += len(chunk)
                    yield chunk
                    continue
                if follower.finished:
                    ended(follower.end_reason if follower.complete else None)
                    return
                await follower.park()
        finally:
            follower.readers -= 1
            if follower.readers == 0:
                # Forget it now, not when its task ends: a reader arriving meanwhile must
                # get a follower of its own, not one that is about to stop.
                follower.cancel_scope.cancel()
                self._forget(generation, follower)

    def _read_ahead(self, follower: LogFollower, offset: int) -> None:
        """A reader is replaying its backlog: read its next chunk while it writes this one."""
        if self.nursery is not None and offset < follower.end and not follower.holds(offset):
            self.nursery.start_soon(follower.prefetch, offset)

    def _follower(self, conversation_id: str, generation: str) -> LogFollower | None:
        """This instance's follower of a log generation, started on its first reader."""
        follower = self._followers.get(generation)
        if follower is not None:
            return follower
        if self._closed or self.nursery is None:
            return None

        async def still_there(end: int) -> bool:
            return await self._still_there(conversation_id, generation, end)

        follower = LogFollower(
            self._client,
            self.subscriber,
            log_key(conversation_id, generation),
            segment_key_parts(conversation_id, generation),
            block_ms=self._commands.lease_ms,
            retry_for=self._commands.lease_seconds,
            redis_errors=REDIS_ERRORS,
            still_there=still_there,
            on_end=lambda ended: self._ended(generation, ended),
        )
        self._followers[generation] = follower
        self.nursery.start_soon(follower.run)
        return follower

    def _ended(self, generation: str, follower: LogFollower) -> None:
        """A complete log's follower serves its readers' backlog reads until the last
        leaves (readers arriving meanwhile share them); any other is forgotten now."""
        if not (follower.complete and follower.readers):
            self._forget(generation, follower)

    def _forget(self, generation: str, follower: LogFollower) -> None:
        if self._followers.get(generation) is follower:
            del self._followers[generation]

    async def _still_there(self, conversation_id: str, generation: str, offset: int) -> bool:
        commands = self._commands
        result = await commands.run(
            "CHECK",
            conversation_id,
            generation,
            int(time.time()),
            commands.ttl_seconds,
            commands.max_bytes,
            commands.orphan_event,
            offset,
        )
        return bool(result)
