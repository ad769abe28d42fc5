"""Sessions shared by every instance through Redis (or Valkey) Streams.

Every instance serves every session: the log, the metadata and the lease live in Redis
(names in ``redis_keys.py``, atomic changes in ``redis_scripts.py``), and only the
producer task runs on the instance that started it.

- **Log**: one stream entry per append, whose id is the logical offset just after it
  (``E-0``), so ``from=N`` is a read after ``N-0`` and the first entry is sliced.
  The readers of one log on this instance share a follower (``redis_follower.py``)
  waiting in one blocking ``XREAD``: Redis wakes it on the next ``XADD``; there is no
  polling loop here. A finalize adds the terminal marker ``T-1``.
- **Connections**: those blocking reads have a connection pool of their own
  (``redis_pool.py``), so appends, lease renewals, stops, lookups and pub/sub never wait
  behind them. Past that pool's size, followers take turns: readers get bytes later.
- **Cancel across instances**: each instance listens on its own pub/sub channel; DELETE
  or a replacement anywhere publishes ``<gen> <id>`` to the owner, which cancels that
  producer's cancel scope.
- **Leases**: the owner renews ``lease:<id>`` (a key with a PX expiry) every third of
  the lease period. A follower's blocking ``XREAD`` times out after one lease period
  without news; it then checks the lease and, if it expired while the session is live
  (the owner died), finalizes the session with an SSE error event. That is a bounded
  wait per lease period, not a poll for data. Lookup and GET do the same check.
- **Outages**: an HTTP request that needs Redis while it is down gets ``503``
  (:class:`~trio_streams.stores.protocol.StoreUnavailableError`). A producer's writes wait and
  retry (backpressure) until Redis is back; readers retry for up to one lease period,
  then end their response so the client can resume from the bytes it has.
- Plain streams (no conversation id) are never shared: they stay in an in-memory
  :class:`~trio_streams.core.manager.SessionManager`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import anyio
import coredis
import trio
from coredis.exceptions import RedisError

from trio_streams.core.event_ids import EventIdStamper
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
from trio_streams.core.session import (
    OffsetLostError,
    SessionClosedError,
    SessionInfo,
    StreamSession,
)
from trio_streams.core.sse import (
    DONE_TAIL,
    PING,
    ends_with_done,
    error_event,
    generation_failed_event,
)
from trio_streams.stores.protocol import StoreUnavailableError, StreamHandle
from trio_streams.stores.redis import scripts as redis_scripts
from trio_streams.stores.redis.follower import LogFollower
from trio_streams.stores.redis.keys import PREFIX, control_channel, log_key, meta_key
from trio_streams.stores.redis.pool import (
    DEFAULT_COMMAND_CONNECTIONS,
    DEFAULT_FOLLOWER_CONNECTIONS,
    FollowerReads,
    command_client,
)

logger = logging.getLogger("trio_streams")

DEFAULT_LEASE_SECONDS = 10.0
#: Errors that mean "Redis cannot serve this now": connection refused or lost, timeouts,
#: and Redis's own refusals (out of memory, still loading after a restart). Background
#: work (appends, renewals, followers) waits them out; HTTP requests answer 503. coredis
#: may also surface a connection closed under it (a blocking read's connection is dropped
#: when that read is cancelled) as anyio's Closed/BrokenResourceError: a retry gets a new one.
REDIS_ERRORS = (
    RedisError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)
ORPHAN_MESSAGE = "generation interrupted: the server instance producing it stopped"


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn "Redis cannot serve this" into :class:`StoreUnavailableError` (HTTP ``503``).

    Besides an unreachable server, that includes Redis's own refusals (out of memory,
    loading its dataset after a restart, read-only replica).
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StoreUnavailableError(f"session store unavailable: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(eq=False)
class _LocalProducer:
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


class RedisStream:
    """A :class:`~trio_streams.stores.protocol.StreamHandle` on one generation of a shared
    session."""

    def __init__(
        self,
        store: RedisStore,
        conversation_id: str,
        generation: str,
        local: _LocalProducer | None = None,
    ) -> None:
        self._store = store
        self.conversation_id = conversation_id
        self.generation = generation
        self._local = local

    def read(self, offset: int = 0) -> AsyncGenerator[bytes, None]:
        return self._store._read(self.conversation_id, self.generation, offset)

    def cancel(self) -> None:
        if self._local is not None:
            self._local.cancel_scope.cancel()


class _RedisWriter:
    """The :class:`~trio_streams.core.producer.StreamWriter` that appends to the shared log."""

    def __init__(self, store: RedisStore, local: _LocalProducer) -> None:
        self._store = store
        self._local = local

    async def write(self, data: bytes) -> None:
        if not data:
            await trio.lowlevel.checkpoint()
            return
        if await self._store._append(self._local, data) < 0:
            # Finalized, replaced or stopped elsewhere: a cancel, if one is pending,
            # raises here; otherwise the producer learns its stream is closed.
            await trio.lowlevel.checkpoint()
            raise SessionClosedError("the session was finalized")
        self._local.last_append_clock = trio.current_time()


class RedisStore:
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
    ) -> None:
        """``follower_connections``: sessions this instance follows at once, each with a
        blocking read on a connection of its own; past it, their readers take turns
        (``redis_pool.FollowerReads``). ``command_connections``: everything else, shared.
        """
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.url = url
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.ping_interval = ping_interval
        self.lease_seconds = lease_seconds
        #: Stamp every SSE event with ``id: <offset after it>``, as the in-memory store does.
        self.event_ids = event_ids
        self.instance_id = instance_id or uuid.uuid4().hex
        #: Commands: scripts, XRANGE, pub/sub. Never a blocking read.
        self.client: coredis.Redis[bytes] = command_client(
            url, connections=command_connections, connect_timeout=connect_timeout
        )
        #: The followers' blocking reads, on their own pool.
        self.follower_reads = FollowerReads(
            url, connections=follower_connections, connect_timeout=connect_timeout
        )
        self._scripts = {
            name: self.client.register_script(getattr(redis_scripts, name))
            for name in ("START", "APPEND", "FINALIZE", "STOP", "RENEW", "OPEN", "CHECK", "LOOKUP")
        }
        #: Plain streams (no conversation id) never leave this instance.
        self.memory = SessionManager(
            max_bytes=max_bytes,
            ttl=ttl,
            gc_interval=gc_interval,
            ping_interval=ping_interval,
            event_ids=event_ids,
            limits=limits,
        )
        # generation -> producer running here (a generation is unique to one session).
        self._producing: dict[str, _LocalProducer] = {}
        # generation -> the follower shared by this instance's readers of that log.
        self._followers: dict[str, LogFollower] = {}
        self._listener_scope = trio.CancelScope()
        self._listening = trio.Event()
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._exit_stack: AsyncExitStack | None = None

    # -- lifetime ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.client)
            await stack.enter_async_context(self.follower_reads.client)
            await stack.enter_async_context(self.memory)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            self._nursery.start_soon(self._listen_for_cancels)
            # Cancels published before we listen would be missed (the lease renewal
            # catches those too, within a third of a lease): wait briefly, not forever,
            # so that an instance can start while Redis is down.
            with trio.move_on_after(2.0):
                await self._listening.wait()
            if not self._listening.is_set():
                logger.warning("session store %s unreachable for now", _without_password(self.url))
            logger.info(
                "sessions shared through %s as instance %s",
                _without_password(self.url),
                self.instance_id[:8],
            )
            self._exit_stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.shutdown()
        assert self._exit_stack is not None
        return await self._exit_stack.__aexit__(exc_type, exc, tb)

    def shutdown(self) -> None:
        """Refuse new streams, cancel this instance's producers (each finalizes its
        session in Redis on its way out) and end this instance's readers. Idempotent."""
        self._closed = True
        self.memory.shutdown()
        for local in list(self._producing.values()):
            local.cancel_scope.cancel()
        for follower in list(self._followers.values()):
            follower.cancel_scope.cancel()
        self._listener_scope.cancel()

    @property
    def manager(self) -> SessionManager:
        """The in-memory manager of this instance's plain streams (never shared)."""
        return self.memory

    @property
    def closed(self) -> bool:
        return self._closed

    def local_session_count(self) -> int:
        """Producers running on this instance (sessions live in Redis, not here)."""
        return len(self._producing)

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
        local = _LocalProducer(
            conversation_id,
            uuid.uuid4().hex,
            stamper=EventIdStamper() if self.event_ids else None,
        )
        with _unavailable():
            replaced = await self._run(
                "START",
                conversation_id,
                local.generation,
                self.instance_id,
                int(time.time()),
                self._lease_ms(),
                self._ttl_seconds(),
                owner or "",
            )
        if replaced and _text(replaced[0]) == "owned":
            raise ConversationOwnedError("the conversation id belongs to another API key")
        if replaced:
            old_owner, old_generation = (_text(value) for value in replaced)
            logger.info("replacing stream %s", redact(conversation_id))
            await self._cancel_producer(old_owner, conversation_id, old_generation)
        self._producing[local.generation] = local
        if self._closed:
            # Shutdown began while Redis answered: still run the task, so that the
            # session is finalized, but cancelled from the start like every other.
            local.cancel_scope.cancel()
        interval = self.ping_interval if ping_interval is None else ping_interval
        self._nursery.start_soon(self._run_producer, local, producer, interval)
        return RedisStream(self, conversation_id, local.generation, local)

    async def open(
        self, conversation_id: str, offset: int, *, owner: str | None = None
    ) -> StreamHandle | None:
        with _unavailable():
            found = await self._run(
                "OPEN",
                conversation_id,
                int(time.time()),
                self._ttl_seconds(),
                self.max_bytes,
                self._orphan_event(),
            )
        if not found or _text(found[2] or "") != (owner or ""):
            return None  # unknown, expired, or another API key's: all answered alike
        generation, dropped = _text(found[0]), int(found[1])
        if offset < dropped:
            raise OffsetLostError(offset, dropped)
        return RedisStream(self, conversation_id, generation)

    async def stop(self, conversation_id: str, *, owner: str | None = None) -> bool:
        with _unavailable():
            result = await self._run(
                "STOP", conversation_id, int(time.time()), self._ttl_seconds(), owner or ""
            )
        if not result:
            return False
        owner, generation, was_live = (_text(value) for value in result)
        if was_live == "1":
            await self._cancel_producer(owner, conversation_id, generation)
        logger.info("stopped stream %s", redact(conversation_id))
        return True

    async def discard(self, handle: StreamHandle) -> None:
        if isinstance(handle, StreamSession):
            self.memory.discard(handle)  # a plain stream, never shared
            return
        handle.cancel()
        if not isinstance(handle, RedisStream):
            return
        with _unavailable():
            generation, key = await self.client.hmget(
                meta_key(handle.conversation_id), ["gen", "key"]
            )
        # Only while it is still this generation: a newer session under the id stays.
        # (A replacement landing between this read and the stop is a race we accept:
        # it needs the same id re-sent within the upstream's error reply.)
        if generation is not None and _text(generation) == handle.generation:
            await self.stop(handle.conversation_id, owner=_text(key) if key else None)

    async def lookup(
        self, conversation_ids: Iterable[str], *, owner: str | None = None
    ) -> list[SessionInfo]:
        requested = list(conversation_ids)
        if not requested:
            return []
        with _unavailable():
            flat = await self._run(
                "LOOKUP",
                int(time.time()),
                self._ttl_seconds(),
                self.max_bytes,
                self._orphan_event(),
                *requested,
            )
        return [
            SessionInfo(
                conversation_id=_text(flat[index]),
                is_done=_text(flat[index + 1]) == "1",
                total_bytes=int(flat[index + 2]),
                started_at=int(flat[index + 3]),
                completed_at=int(flat[index + 4]),
            )
            for index in range(0, len(flat), 6)
            if _text(flat[index + 5] or "") == (owner or "")
        ]

    # -- producers -----------------------------------------------------------------------

    async def _run_producer(
        self, local: _LocalProducer, producer: Producer, ping_interval: float | None
    ) -> None:
        """Run one producer under its cancel scope; finalize its session in Redis after."""
        failure = ""
        try:
            with local.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._renew_lease, local)
                    if ping_interval:
                        nursery.start_soon(self._keep_alive, local, ping_interval)
                    await producer(_RedisWriter(self, local))
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # a failing producer must end its stream, not the server
            if not _only(exc, (SessionClosedError,)):
                logger.exception("producer of stream %s failed", redact(local.conversation_id))
                failure = generation_failed_event(exc).decode()
        finally:
            self._producing.pop(local.generation, None)
            # Finalize even when cancelled. If Redis stays unreachable (for a lease period,
            # or 2 s when shutting down), the lease expires and a reader finalizes it.
            patience = min(self.lease_seconds, 2.0) if self._closed else self.lease_seconds
            with trio.move_on_after(patience) as scope:
                scope.shield = True
                await self._retrying(
                    "FINALIZE",
                    local.conversation_id,
                    local.generation,
                    int(time.time()),
                    self._ttl_seconds(),
                    failure,
                    self.max_bytes,
                )

    async def _append(self, local: _LocalProducer, data: bytes, *, stamp: bool = True) -> int:
        async with local.append_lock:
            if stamp and local.stamper is not None:
                # Under the lock: the ids are exact offsets, no ping can slip in between.
                data = local.stamper.stamp(data, local.total_bytes)
            result = int(
                await self._retrying(
                    "APPEND",
                    local.conversation_id,
                    local.generation,
                    data,
                    self.max_bytes,
                    local.total_bytes,
                )
            )
            if result >= 0:
                local.total_bytes = result
                local.tail = (local.tail + data[-DONE_TAIL:])[-DONE_TAIL:]
            return result

    async def _keep_alive(self, local: _LocalProducer, interval: float) -> None:
        """Append ``: ping`` whenever the stream has been silent for ``interval`` seconds
        (the same rule as the in-memory ``keepalive.keep_alive``), until ``data: [DONE]``."""
        while True:
            await trio.sleep_until(local.last_append_clock + interval)
            if trio.current_time() - local.last_append_clock >= interval:
                if ends_with_done(local.tail):
                    return
                # Pings are comments: no id, as in memory (keepalive.py appends them raw).
                if await self._append(local, PING, stamp=False) < 0:
                    return
                local.last_append_clock = trio.current_time()

    async def _renew_lease(self, local: _LocalProducer) -> None:
        """Keep the lease alive while the producer runs; stop it if the session moved on.

        A renewal that finds the session replaced, stopped or finalized elsewhere cancels
        the producer: that covers a cancel message missed during a Redis outage.
        """
        while True:
            await trio.sleep(self.lease_seconds / 3)
            try:
                renewed = await self._run(
                    "RENEW", local.conversation_id, local.generation, self._lease_ms()
                )
            except REDIS_ERRORS:
                continue
            if not renewed:
                local.cancel_scope.cancel()
                return

    async def _cancel_producer(self, owner: str, conversation_id: str, generation: str) -> None:
        """Cancel a producer wherever it runs: here directly, elsewhere by pub/sub."""
        if owner == self.instance_id:
            self._cancel_local(generation)
            return
        # If this fails, the owner's next lease renewal finds the session gone and stops.
        with suppress(*REDIS_ERRORS):
            await self.client.publish(control_channel(owner), f"{generation} {conversation_id}")

    def _cancel_local(self, generation: str) -> None:
        local = self._producing.get(generation)
        if local is not None:
            local.cancel_scope.cancel()

    async def _listen_for_cancels(self) -> None:
        channel = control_channel(self.instance_id)
        with self._listener_scope:
            while True:
                try:
                    async with self.client.pubsub(
                        channels=[channel], ignore_subscribe_messages=True
                    ) as messages:
                        self._listening.set()
                        async for message in messages:
                            generation, _, _ = _text(message["data"]).partition(" ")
                            self._cancel_local(generation)
                except BaseException as exc:
                    # coredis's subscriber tasks may end with ClosedResourceError next to
                    # our Cancelled when shutdown cancels them: that is the end we asked for.
                    if self._closed:
                        return
                    if not _only(exc, REDIS_ERRORS):
                        raise
                    await trio.sleep(0.5)

    # -- readers -------------------------------------------------------------------------

    async def _read(
        self, conversation_id: str, generation: str, offset: int
    ) -> AsyncGenerator[bytes, None]:
        """Follow one log from ``offset``: the tail from this instance's shared follower
        (one blocking XREAD, never a poll), older bytes from ``XRANGE``."""
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
                    offset += len(chunk)
                    yield chunk
                    continue
                if follower.finished:
                    return
                await follower.park()
        finally:
            follower.readers -= 1
            if follower.readers == 0:
                # Forget it now, not when its task ends: a reader arriving meanwhile must
                # get a follower of its own, not one that is about to stop.
                follower.cancel_scope.cancel()
                self._forget_follower(generation, follower)

    def _follower(self, conversation_id: str, generation: str) -> LogFollower | None:
        """This instance's follower of a log generation, started on its first reader."""
        follower = self._followers.get(generation)
        if follower is not None:
            return follower
        if self._closed or self._nursery is None:
            return None

        async def still_there(end: int) -> bool:
            return await self._still_there(conversation_id, generation, end)

        follower = LogFollower(
            self.client,
            self.follower_reads,
            log_key(conversation_id, generation),
            block_ms=self._lease_ms(),
            retry_for=self.lease_seconds,
            redis_errors=REDIS_ERRORS,
            still_there=still_there,
            on_end=lambda ended: self._forget_follower(generation, ended),
        )
        self._followers[generation] = follower
        self._nursery.start_soon(follower.run)
        return follower

    def _forget_follower(self, generation: str, follower: LogFollower) -> None:
        if self._followers.get(generation) is follower:
            del self._followers[generation]

    async def _still_there(self, conversation_id: str, generation: str, offset: int) -> bool:
        try:
            result = await self._run(
                "CHECK",
                conversation_id,
                generation,
                int(time.time()),
                self._ttl_seconds(),
                self.max_bytes,
                self._orphan_event(),
                offset,
            )
        except REDIS_ERRORS:
            return True  # the next XREAD meets the outage and retries
        return bool(result)

    # -- helpers -------------------------------------------------------------------------

    async def _run(self, name: str, *args: str | int | bytes) -> Any:
        stamp = "1" if self.event_ids else "0"
        return await self._scripts[name](keys=[], args=[PREFIX, stamp, *args])

    async def _retrying(self, name: str, *args: str | int | bytes) -> Any:
        """Run a script until Redis answers (a producer waits out an outage)."""
        delay = 0.05
        while True:
            try:
                return await self._run(name, *args)
            except REDIS_ERRORS:
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    def _ttl_seconds(self) -> int:
        # Readers still need the log a moment after the session ends, even with TTL 0.
        return max(1, round(self.ttl))

    def _orphan_event(self) -> str:
        return error_event(ORPHAN_MESSAGE).decode()


def _without_password(url: str) -> str:
    """``url`` fit for a log line: a password in it is replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _only(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """True if ``exc`` is one of ``kinds``, alone or in (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kinds) for inner in exc.exceptions)
    return isinstance(exc, kinds)
