"""Sessions shared by every instance through Redis (or Valkey) Streams.

Every instance serves every session: the log, the metadata and the lease live in Redis
(names in ``keys.py``, atomic changes in ``scripts.py``), and only the producer task runs
on the instance that started it. :class:`RedisStore` is the store seam over three sides:

- **Producers** (``producing.py``): one stream entry per flushed append, whose id is the
  logical offset just after it (``E-0``), so ``from=N`` is a read after ``N-0``; a
  finalize adds the terminal marker ``T-1``. They write through one flusher task per
  instance (``outbox.py``): whatever every session has waiting goes in one round trip,
  and only what Redis acknowledged reaches the local log that this instance's readers
  read (no Redis command per reader).
- **Readers** elsewhere (``reading.py``): one follower per log per instance, fed by one
  pub/sub connection per instance (``subscriber.py``): the connections of an instance do
  not grow with the sessions it follows.
- **Cancels and leases** (``control.py``): DELETE or a replacement anywhere cancels the
  producer on its owner through pub/sub; leases let a reader finalize the session of a
  dead instance with an SSE error event.
- **Outages**: an HTTP request that needs Redis while it is down gets ``503``
  (:class:`~trio_streams.stores.protocol.StoreUnavailableError`). A producer's writes wait
  and retry (backpressure) until Redis is back; readers retry for up to one lease period,
  then end their response so the client can resume from the bytes it has.
- Plain streams (no conversation id) are never shared: they stay in an in-memory
  :class:`~trio_streams.core.manager.SessionManager`.
- Beside the sessions, the generic Durable Streams of ``/ds``
  (:class:`~trio_streams.stores.durable.redis.RedisDurableStore`) live in the same Redis,
  on the same client and pub/sub connection, open as long as this store is.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from contextlib import AsyncExitStack

import coredis
import trio

from trio_streams.core.end_reasons import EndReason, Tombstone, check_pin
from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.generations import event_id_prefix, new_generation
from trio_streams.core.lifetime import Chore, Lifetime
from trio_streams.core.limits import ConversationOwnedError, Limits
from trio_streams.core.manager import (
    DEFAULT_GC_INTERVAL,
    DEFAULT_MAX_BYTES,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TTL,
    ManagerClosedError,
    SessionManager,
)
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.core.session import SessionInfo, StreamSession, check_resume_offset
from trio_streams.stores.durable.memory import DEFAULT_MAX_STREAM_BYTES
from trio_streams.stores.durable.redis import RedisDurableStore
from trio_streams.stores.protocol import StreamHandle
from trio_streams.stores.redis.commands import RedisCommands, text, unavailable, without_password
from trio_streams.stores.redis.control import Control
from trio_streams.stores.redis.keys import meta_key
from trio_streams.stores.redis.pool import (
    DEFAULT_COMMAND_CONNECTIONS,
    DEFAULT_FOLLOWER_CONNECTIONS,
    command_client,
)
from trio_streams.stores.redis.producing import LocalProducer, Producing
from trio_streams.stores.redis.reading import Reading, RedisStream

logger = logging.getLogger("trio_streams")

DEFAULT_LEASE_SECONDS = 10.0


class RedisStore(Lifetime):
    """The shared store: every instance pointed at the same Redis serves every session."""

    def __init__(
        self,
        url: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL,
        gc_interval: float = DEFAULT_GC_INTERVAL,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        event_ids: bool = True,
        instance_id: str | None = None,
        limits: Limits | None = None,
        connect_timeout: float = 2.0,
        command_connections: int = DEFAULT_COMMAND_CONNECTIONS,
        follower_connections: int = DEFAULT_FOLLOWER_CONNECTIONS,
        ds_max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
    ) -> None:
        """``command_connections``: the most connections of the multiplexed command pool
        (the two pub/sub connections come from it too). ``follower_connections`` is
        deprecated and has no effect: followed sessions share one pub/sub connection.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        super().__init__()
        self.url = url
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.ping_interval = ping_interval
        self.lease_seconds = lease_seconds
        #: Stamp every SSE event with ``id: <offset after it>``, as the in-memory store does.
        self.event_ids = event_ids
        self.instance_id = instance_id or uuid.uuid4().hex
        #: The name of this instance's connections in Redis's ``CLIENT LIST``.
        #: (Redis refuses names with spaces: anything but letters, digits, ``.-_`` goes.)
        self.client_name = "trio-streams-" + re.sub(r"[^\w.-]", "", self.instance_id)[:12]
        #: Commands: scripts, XRANGE, pub/sub. Never a blocking read.
        self.client: coredis.Redis[bytes] = command_client(
            url,
            connections=command_connections,
            connect_timeout=connect_timeout,
            name=self.client_name,
        )
        #: Deprecated, without effect (followers no longer hold a connection each).
        self.follower_connections = follower_connections
        self.commands = RedisCommands(
            self.client,
            event_ids=event_ids,
            lease_seconds=lease_seconds,
            ttl=ttl,
            max_bytes=max_bytes,
        )
        #: Plain streams (no conversation id) never leave this instance. Its limits
        #: count the shared sessions produced here too (``also_running``): each keeps a
        #: local log of up to ``max_bytes`` for this instance's readers, and runs a producer.
        self.memory = SessionManager(
            max_bytes=max_bytes,
            ttl=ttl,
            gc_interval=gc_interval,
            ping_interval=ping_interval,
            event_ids=event_ids,
            limits=limits,
            also_running=self._local_sessions,
        )
        #: Sessions admitted by the limits whose START is still on its way to Redis:
        #: counted already, so that starts answered together cannot overshoot them.
        self._starting: set[StreamSession] = set()
        # The three sides. The control side renews the producers' leases and cancels them.
        self._producing = Producing(self.commands)
        self._control = Control(self.commands, self.client, self.instance_id, self._producing)
        self._reading = Reading(self.commands, self.client)
        self._durable_streams = RedisDurableStore(
            self.client,
            self._reading.subscriber,
            max_stream_bytes=ds_max_stream_bytes,
            gc_interval=gc_interval,
        )

    # -- lifetime ------------------------------------------------------------------------

    async def _open(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.client)
        await stack.enter_async_context(self.memory)
        nursery = await self._open_nursery(stack)
        self._reading.nursery = nursery
        nursery.start_soon(self._control.listen)
        nursery.start_soon(self._producing.flusher.run)
        nursery.start_soon(self._reading.subscriber.run)
        await stack.enter_async_context(self._durable_streams)
        # Cancels published before we listen would be missed (the lease renewal
        # catches those too, within a third of a lease): wait briefly, not forever,
        # so that an instance can start while Redis is down.
        with trio.move_on_after(2.0):
            await self._control.listening.wait()
        if not self._control.listening.is_set():
            logger.warning("session store %s unreachable for now", without_password(self.url))
        logger.info(
            "sessions shared through %s as instance %s",
            without_password(self.url),
            self.instance_id[:8],
        )

    def _chores(self) -> Iterable[Chore]:
        """Every producer's lease renewed, one call per instance every third of a lease."""
        return ((self.commands.lease_seconds / 3, self._control.renew_all),)

    def shutdown(self) -> None:
        """Refuse new streams, cancel this instance's producers (each finalizes its
        session in Redis on its way out) and end this instance's readers. Idempotent."""
        super().shutdown()
        self.memory.shutdown()
        self._producing.cancel_all()
        self._reading.shutdown()
        self._control.shutdown()
        self._durable_streams.shutdown()

    @property
    def manager(self) -> SessionManager:
        """The in-memory manager of this instance's plain streams (never shared)."""
        return self.memory

    @property
    def durable_streams(self) -> RedisDurableStore:
        """The generic Durable Streams served at ``/ds/v1/stream/…``, shared through Redis."""
        return self._durable_streams

    def local_session_count(self) -> int:
        """Producers running on this instance (sessions live in Redis, not here)."""
        return len(self._producing.running)

    def _local_sessions(self) -> list[StreamSession]:
        """The local logs of the shared sessions produced here, starting ones included.

        A producer stopped (DELETE, replaced) leaves the count at once, as a stopped
        session does in memory, not after its finalize's round trip to Redis."""
        return [local.session for local in self._producing.producing()] + list(self._starting)

    # -- the store seam ------------------------------------------------------------------

    async def start(
        self,
        conversation_id: str | None,
        producer: Producer,
        *,
        ping_interval: float | None = None,
        owner: str | None = None,
    ) -> StreamHandle:
        if self._closed or self._nursery is None:
            raise ManagerClosedError("the session store is not running")
        if not conversation_id:
            return self.memory.start(None, producer, ping_interval=ping_interval, owner=owner)
        generation = new_generation()
        local = LocalProducer(
            conversation_id,
            generation,
            StreamSession(conversation_id, self.max_bytes, generation),
            stamper=EventIdStamper(event_id_prefix(generation)) if self.event_ids else None,
        )
        # This instance's limits (--max-producers, --max-total-bytes), as for the memory
        # store; replacing a session produced here frees its producer and reservation.
        self.memory.capacity.admit(
            self._producing.running_session(conversation_id), registered=False
        )
        self._starting.add(local.session)
        try:
            with unavailable():
                replaced = await self.commands.run(
                    "START",
                    conversation_id,
                    local.generation,
                    self.instance_id,
                    int(time.time()),
                    self.commands.lease_ms,
                    self.commands.ttl_seconds,
                    owner or "",
                )
            if replaced and text(replaced[0]) == "owned":
                raise ConversationOwnedError("the conversation id belongs to another API key")
            if replaced:
                old_owner, old_generation = (text(value) for value in replaced)
                logger.info("replacing stream %s", redact(conversation_id))
                await self._control.cancel_producer(old_owner, conversation_id, old_generation)
            self._producing.adopt(local)
        finally:
            self._starting.discard(local.session)
        if self._closed:
            # Shutdown began while Redis answered: still run the task, so that the
            # session is finalized, but cancelled from the start like every other.
            local.cancel_scope.cancel()
        interval = self.ping_interval if ping_interval is None else ping_interval
        self._nursery.start_soon(self._producing.run, local, producer, interval)
        return RedisStream(self._reading, conversation_id, local.generation, local)

    async def open(
        self,
        conversation_id: str,
        offset: int,
        *,
        generation: str | None = None,
        owner: str | None = None,
    ) -> StreamHandle | None:
        with unavailable():
            found = await self.commands.run(
                "OPEN",
                conversation_id,
                int(time.time()),
                self.commands.ttl_seconds,
                self.max_bytes,
                self.commands.orphan_event,
            )
        if not found:
            return None  # unknown or expired
        current, dropped, key, done, total, *tomb = found
        if current is not None and text(key or "") != (owner or ""):
            return None  # another API key's: answered as unknown, tombstone or not
        tombstone = None
        if tomb[0] is not None and text(tomb[2] or "") == (owner or ""):
            tombstone = Tombstone(EndReason(text(tomb[0])), text(tomb[1]), owner)
        check_pin(None if current is None else text(current), generation, tombstone)
        if current is None:
            return None
        current = text(current)
        check_resume_offset(
            offset, dropped_prefix=int(dropped), total_bytes=int(total), done=text(done) == "1"
        )
        # Produced here: read the local log, as the memory store's readers do.
        local = self._producing.get(current)
        return RedisStream(self._reading, conversation_id, current, local)

    async def stop(
        self, conversation_id: str, *, owner: str | None = None, generation: str | None = None
    ) -> bool:
        with unavailable():
            result = await self.commands.run(
                "STOP",
                conversation_id,
                int(time.time()),
                self.commands.ttl_seconds,
                owner or "",
                generation or "",
            )
        if not result:
            return False
        owner, generation, was_live = (text(value) for value in result)
        if was_live == "1":
            await self._control.cancel_producer(owner, conversation_id, generation)
        logger.info("stopped stream %s", redact(conversation_id))
        return True

    async def cancel(self, conversation_id: str, *, owner: str | None = None) -> bool:
        with unavailable():
            generation, instance, done, key = await self.client.hmget(
                meta_key(conversation_id), ["gen", "owner", "done", "key"]
            )
        if generation is None or text(key or b"") != (owner or ""):
            return False
        if text(done or b"") == "0":
            # By generation: a replacement since the read is another producer, left alone.
            await self._control.cancel_producer(
                text(instance or b""), conversation_id, text(generation)
            )
        return True

    async def discard(self, handle: StreamHandle) -> None:
        if isinstance(handle, StreamSession):
            self.memory.discard(handle)  # a plain stream, never shared
            return
        handle.cancel()
        if not isinstance(handle, RedisStream):
            return
        with unavailable():
            generation, key = await self.client.hmget(
                meta_key(handle.conversation_id), ["gen", "key"]
            )
        # Only while it is still this generation: a newer session under the id stays.
        # (A replacement landing between this read and the stop is a race we accept:
        # it needs the same id re-sent within the upstream's error reply.)
        if generation is not None and text(generation) == handle.generation:
            await self.stop(handle.conversation_id, owner=text(key) if key else None)

    async def lookup(
        self, conversation_ids: Iterable[str], *, owner: str | None = None
    ) -> list[SessionInfo]:
        requested = list(conversation_ids)
        if not requested:
            return []
        with unavailable():
            flat = await self.commands.run(
                "LOOKUP",
                int(time.time()),
                self.commands.ttl_seconds,
                self.max_bytes,
                self.commands.orphan_event,
                *requested,
            )
        return [
            SessionInfo(
                conversation_id=text(flat[index]),
                is_done=text(flat[index + 1]) == "1",
                total_bytes=int(flat[index + 2]),
                started_at=int(flat[index + 3]),
                completed_at=int(flat[index + 4]),
                generation=text(flat[index + 6]),
                dropped_prefix=int(flat[index + 7]),
            )
            for index in range(0, len(flat), 8)
            if text(flat[index + 5] or "") == (owner or "")
        ]
