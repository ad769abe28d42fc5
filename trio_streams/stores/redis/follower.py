"""One blocking ``XREAD`` per live session per instance, shared by that instance's readers.

A thousand clients following one stream through one instance need one Redis connection
waiting in ``XREAD BLOCK``, not a thousand. The follower keeps the entries it fetched
(the recent tail, bounded) and wakes its readers through a
:class:`trio.lowlevel.ParkingLot`, as the in-memory session does; a reader that is behind
the tail (a resume from an old offset) reads its backlog with the ``RANGE`` script (the
entries joined inside Redis, one reply per chunk) and then joins.

The follower starts at the log's current end (``XREVRANGE … COUNT 1``), so its tail
always covers every offset from there on. It ends at the terminal marker, when its
session is gone, when Redis has been unreachable for a whole lease period (its readers
end; clients resume later), or when its last reader leaves.

Its blocking reads go through the followers' own pool (``pool.FollowerReads``):
they never hold up the store's commands, and they take turns when more sessions are
followed than that pool holds. Its other reads (``XREVRANGE``, the ``RANGE`` script) do
not block and use the command client.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Awaitable, Callable
from typing import Any

import coredis
import trio

from trio_streams.core.session import MAX_READ_CHUNK, OffsetLostError
from trio_streams.stores.redis import scripts as redis_scripts
from trio_streams.stores.redis.pool import FollowerReads

#: Entries one XREAD returns at most; a reader far behind catches up in batches.
READ_BATCH = 1024
#: Entries a backlog read takes from the stream at a time, until it holds
#: ``MAX_READ_CHUNK`` bytes.
BACKLOG_PAGE = 256
#: The tail a follower keeps for its readers: at most this many entries and bytes.
TAIL_ENTRIES = 4096
TAIL_BYTES = 1 << 20


def parse_entry(entry: Any) -> tuple[int, bytes | None]:
    """``(end offset, bytes)`` of a log entry; bytes is ``None`` for the terminal marker."""
    end_text, _, sequence = entry.identifier.partition(b"-")
    if sequence != b"0":
        return int(end_text), None
    data: bytes = entry.field_values[b"d"]
    return int(end_text), data


class LogFollower:
    """Follows one log generation for every reader of it on this instance."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        reads: FollowerReads,
        log: str,
        *,
        block_ms: int,
        retry_for: float,
        redis_errors: tuple[type[BaseException], ...],
        still_there: Callable[[int], Awaitable[bool]],
        on_end: Callable[[LogFollower], None],
    ) -> None:
        self._client = client
        self._range = client.register_script(redis_scripts.RANGE)
        self._reads = reads
        self.log = log
        self._block_ms = block_ms
        self._retry_for = retry_for
        self._redis_errors = redis_errors
        self._still_there = still_there
        self._on_end = on_end
        #: Every entry ending at or before ``end`` exists in Redis or was seen here.
        self.end = 0
        #: No more bytes will come through this follower (complete, gone or stopped).
        self.finished = False
        self.ready = trio.Event()
        self.readers = 0
        self.cancel_scope = trio.CancelScope()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._data: list[bytes] = []
        self._tail_bytes = 0
        self._lot = trio.lowlevel.ParkingLot()

    # -- for readers ---------------------------------------------------------------------

    def take(self, offset: int) -> bytes | None:
        """The tail's bytes from ``offset`` on, or ``None`` if the tail does not hold them.

        Entries are contiguous except after an append larger than the cap, which keeps
        only its last bytes: the bytes before it are gone, and ``None`` sends the reader
        to :meth:`backlog`, which tells it so.
        """
        if not self._ends or offset < self._starts[0]:
            return None
        parts: list[bytes] = []
        for index in range(bisect_right(self._ends, offset), len(self._ends)):
            start = self._starts[index]
            if start > offset:
                break
            parts.append(self._data[index][offset - start :])
            offset = self._ends[index]
        return b"".join(parts) if parts else None

    async def backlog(self, offset: int) -> bytes | None:
        """Bytes from ``offset`` read from Redis (the ``RANGE`` script, up to
        :data:`~trio_streams.core.session.MAX_READ_CHUNK` in one reply); ``None`` if unreachable.

        Raises :class:`OffsetLostError` if the entry holding ``offset`` was trimmed.
        """
        try:
            reply: list[Any] = await self._range(
                keys=[self.log], args=[offset + 1, BACKLOG_PAGE, MAX_READ_CHUNK]
            )
        except self._redis_errors:
            return None
        start, data = int(reply[0]), reply[1]
        if start < 0 or start > offset:
            first_start = self._starts[0] if self._starts else self.end
            raise OffsetLostError(offset, first_start)
        chunk: bytes = data[offset - start :]
        return chunk

    async def park(self) -> None:
        await self._lot.park()

    # -- the follower task ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self.cancel_scope:
                await self._follow()
        finally:
            self.finished = True
            self.ready.set()
            self._lot.unpark_all()
            self._on_end(self)

    async def _follow(self) -> None:
        last_id = await self._start()
        if last_id is None:
            return
        failing_since: float | None = None
        news_at = trio.current_time()
        while True:
            try:
                reply, full_block = await self._reads.xread(
                    self.log, last_id, count=READ_BATCH, block_ms=self._block_ms
                )
                failing_since = None
            except self._redis_errors:
                now = trio.current_time()
                failing_since = now if failing_since is None else failing_since
                if now - failing_since >= self._retry_for:
                    return
                await trio.sleep(0.2)
                continue
            if not reply:
                # A lease period without news: the check may finalize an orphan. (A
                # shorter turn, taken while other followers wait, says less: the check
                # waits until a lease period has passed since the last news.)
                now = trio.current_time()
                if full_block or now - news_at >= self._block_ms / 1000:
                    if not await self._still_there(self.end):
                        return
                    news_at = now
                continue
            news_at = trio.current_time()
            for entries in reply.values():
                for entry in entries:
                    end, data = parse_entry(entry)
                    if data is None:
                        self._lot.unpark_all()
                        return  # the terminal marker: complete
                    self._remember(end - len(data), end, data)
                    last_id = f"{end}-0"
            self._lot.unpark_all()

    async def _start(self) -> str | None:
        """Begin at the log's current end; ``None`` if there is nothing to follow."""
        last: tuple[Any, ...] | None = None
        with trio.move_on_after(self._retry_for):
            while last is None:
                try:
                    last = await self._client.xrevrange(self.log, "+", "-", 1)
                except self._redis_errors:
                    await trio.sleep(0.2)
        if last is None:
            return None  # Redis unreachable for a whole lease period
        if last:
            end, data = parse_entry(last[0])
            self.end = end
            if data is None:
                self.ready.set()
                return None  # already complete: readers read the backlog only
        self.ready.set()
        return f"{self.end}-0"

    def _remember(self, start: int, end: int, data: bytes) -> None:
        self._starts.append(start)
        self._ends.append(end)
        self._data.append(data)
        self._tail_bytes += len(data)
        self.end = end
        excess = 0
        while len(self._ends) - excess > TAIL_ENTRIES or (
            self._tail_bytes > TAIL_BYTES and len(self._ends) - excess > 1
        ):
            self._tail_bytes -= len(self._data[excess])
            excess += 1
        if excess:
            del self._starts[:excess], self._ends[:excess], self._data[:excess]
