"""One follower per followed log per instance, shared by that instance's readers.

A thousand clients following one stream through one instance need one subscription, not
a thousand. The follower gets the log's new entries pushed through the instance's one
pub/sub connection (``subscriber.py``), keeps them (the recent tail, bounded), and wakes
its readers through a :class:`trio.lowlevel.ParkingLot`, as the in-memory session does;
a reader that is behind the tail (a resume from an old offset) reads its backlog from the
log's byte segments (one ``GETRANGE`` to a segment's end, up to 1 MiB; else the
``RANGE`` script, up to 256 KiB per reply) and then joins.

The follower starts at the log's end as it is once subscribed (``XREVRANGE … COUNT 1``),
so its tail covers every offset from there on. A message that does not continue its tail
(one lost while the connection was down, or sent before the subscription) makes it read
the log from its end with ``RANGE``, as does every acknowledgement of its subscription.
It ends at the terminal marker, when its session is gone, when Redis has been
unreachable for a whole lease period (its readers end; clients resume later), or when
its last reader leaves. After a lease period without news it checks the lease, which
finalizes the session of a dead producer with the interruption event.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import coredis
import trio

from trio_streams.core.end_reasons import EndReason
from trio_streams.core.session import MAX_READ_CHUNK, OffsetLostError
from trio_streams.stores.redis import scripts as redis_scripts
from trio_streams.stores.redis.keys import SEGMENT_BYTES, segment_name
from trio_streams.stores.redis.subscriber import Subscriber

#: Entries a backlog read takes from the stream at a time, until it holds
#: ``MAX_READ_CHUNK`` bytes.
BACKLOG_PAGE = 256
#: Backlog chunks a follower keeps for its other readers (the last few read).
BACKLOG_CHUNKS = 4
#: The tail a follower keeps for its readers: at most this many entries and bytes.
TAIL_ENTRIES = 4096
TAIL_BYTES = 1 << 20


def end_reason(value: Any) -> EndReason:
    """The ``end`` field of a terminal marker (``1`` before reasons were kept: done)."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return EndReason(text)
    except ValueError:
        return EndReason.DONE


def parse_entry(entry: Any) -> tuple[int, bytes | None]:
    """``(end offset, bytes)`` of a log entry; bytes is ``None`` for the terminal marker."""
    end_text, _, sequence = entry.identifier.partition(b"-")
    if sequence != b"0":
        return int(end_text), None
    data: bytes = entry.field_values[b"d"]
    return int(end_text), data


class Failing:
    """How long something has kept failing, for a loop that gives up after ``patience``
    of it (any success in between starts the count again)."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._since: float | None = None

    def too_long(self) -> bool:
        """Note a failure now; whether failures have lasted ``patience`` by now."""
        now = trio.current_time()
        if self._since is None:
            self._since = now
        return now - self._since >= self.patience

    def over(self) -> None:
        """It worked: the next failure starts a new count."""
        self._since = None


class LogFollower:
    """Follows one log generation for every reader of it on this instance."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        subscriber: Subscriber,
        log: str,
        segments: tuple[str, str],
        *,
        block_ms: int,
        retry_for: float,
        redis_errors: tuple[type[BaseException], ...],
        still_there: Callable[[int], Awaitable[bool]],
        on_end: Callable[[LogFollower], None],
    ) -> None:
        self._client = client
        self._range = client.register_script(redis_scripts.RANGE)
        self._subscriber = subscriber
        self.log = log
        #: What its segments' names have around their index (``keys.segment_key_parts``).
        self._segments = segments
        self._channel = log.encode()
        self._block_ms = block_ms
        self._retry_for = retry_for
        self._redis_errors = redis_errors
        #: What counts against :attr:`_retry_for`: Redis's errors, and no answer in time.
        self._failures: tuple[type[BaseException], ...] = (*redis_errors, trio.TooSlowError)
        self._still_there = still_there
        self._on_end = on_end
        #: Every entry ending at or before ``end`` exists in Redis or was seen here.
        self.end = 0
        #: No more bytes will come through this follower (complete, gone or stopped).
        self.finished = False
        #: It reached the terminal marker: every byte is in Redis, none will come. Readers
        #: arriving now may still share it (and its backlog reads).
        self.complete = False
        #: Why the log ended, from its terminal marker (once :attr:`complete`).
        self.end_reason: EndReason | None = None
        self.ready = trio.Event()
        self.readers = 0
        self.cancel_scope = trio.CancelScope()
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._data: list[bytes] = []
        self._tail_bytes = 0
        self._lot = trio.lowlevel.ParkingLot()
        #: The last backlog chunks read, by offset, and the reads under way.
        self._chunks: dict[int, bytes] = {}
        self._fetching: dict[int, trio.Event] = {}
        #: The follower task waits here for work: a gap, a (re)subscription, the end.
        self._work = trio.lowlevel.ParkingLot()
        #: The log's end is known: messages continue the tail from :attr:`end`.
        self._started = False
        #: The subscription was acknowledged since the last read of the log.
        self._resync = False
        #: The furthest end a message announced (past :attr:`end`: there is a gap).
        self._wanted = 0
        #: The terminal marker's offset, once announced.
        self._terminal: int | None = None
        self._terminal_reason = EndReason.DONE
        #: :attr:`end` when the follower last looked for news (quiet means unchanged).
        self._news_end = 0
        #: trio clock time since which the pub/sub connection is down (``None``: up).
        self._down_since: float | None = None

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
        """Bytes from ``offset`` (see :meth:`_read_backlog`), read once for every reader
        of this log here that asks for the same offset at about the same time: a hundred
        clients replaying a finished answer from 0 cost Redis one replay, not a hundred."""
        while True:
            chunk = self._chunks.get(offset)
            if chunk is not None:
                return chunk
            fetching = self._fetching.get(offset)
            if fetching is None:
                break
            await fetching.wait()  # then the cache holds it, or that read failed: retry
        done = self._fetching[offset] = trio.Event()
        try:
            chunk = await self._read_backlog(offset)
            if chunk is not None:
                self._chunks[offset] = chunk
                if len(self._chunks) > BACKLOG_CHUNKS:
                    del self._chunks[next(iter(self._chunks))]
            return chunk
        finally:
            del self._fetching[offset]
            done.set()

    def holds(self, offset: int) -> bool:
        """Whether the bytes at ``offset`` are at hand: in the tail or a kept chunk, or
        being read already."""
        in_tail = bool(self._starts) and self._starts[0] <= offset
        return in_tail or offset in self._chunks or offset in self._fetching

    async def prefetch(self, offset: int) -> None:
        """Read the backlog chunk at ``offset`` ahead of the reader that will ask for it
        once it has written the one before: the Redis round trip then overlaps that write,
        and a replay no longer waits for Redis and its client in turn."""
        with suppress(OffsetLostError):  # the reader's own read reports it
            await self.backlog(offset)

    async def _read_backlog(self, offset: int) -> bytes | None:
        """Bytes from ``offset`` read from Redis; ``None`` if unreachable.

        The log's byte segment (``keys.segment_key``) serves it in one ``GETRANGE``, to the
        segment's end (up to :data:`~.keys.SEGMENT_BYTES`). Where that segment has no such
        bytes (trimmed, expired, after a gap, a log capped below a segment, or written
        before segments existed), the ``RANGE`` script reads the stream (or, for a finished
        log that kept its bytes in segments only, those segments): exactly
        :data:`~trio_streams.core.session.MAX_READ_CHUNK` in one reply, less only at the
        log's end.

        Raises :class:`OffsetLostError` if the entry holding ``offset`` was trimmed.
        """
        index, within = divmod(offset, SEGMENT_BYTES)
        try:
            chunk: bytes = await self._client.getrange(
                segment_name(self._segments, index), within, SEGMENT_BYTES - 1
            )
            if chunk:
                return chunk
            reply = await self._read_range(offset)
        except self._redis_errors:
            return None
        start, chunk = int(reply[0]), reply[1]
        if start < 0 or start > offset:
            first_start = self._starts[0] if self._starts else self.end
            raise OffsetLostError(offset, first_start)
        assert isinstance(chunk, bytes)
        return chunk

    async def _read_range(self, offset: int) -> list[Any]:
        """The ``RANGE`` script's reply from ``offset``: from the stream's entries, or from
        the segments of a finished log that kept its bytes only there."""
        reply: list[Any] = await self._range(
            keys=[self.log], args=[offset, BACKLOG_PAGE, MAX_READ_CHUNK, *self._segments]
        )
        return reply

    async def park(self) -> None:
        await self._lot.park()

    # -- from the subscriber ---------------------------------------------------------------

    def push(self, payload: bytes) -> None:
        """A published entry: ``d<end> <bytes>`` or the terminal marker ``e<total>``."""
        if payload[:1] == b"d":
            head, _, data = payload.partition(b" ")
            end = int(head[1:])
            if not self._started or end <= self.end:
                return  # before the start, or already here
            if end - len(data) == self.end:
                self._remember(self.end, end, data)
                self._lot.unpark_all()
                return
            self._wanted = max(self._wanted, end)  # a gap: read the log
        elif payload[:1] == b"e":
            head, _, reason = payload.partition(b" ")
            self._terminal = int(head[1:])
            self._terminal_reason = end_reason(reason or b"done")
        self._work.unpark_all()

    def subscribed(self) -> None:
        """(Re)subscribed: whatever came before is read from the log."""
        self._down_since = None
        self._resync = True
        self._work.unpark_all()

    def disconnected(self) -> None:
        if self._down_since is None:
            self._down_since = trio.current_time()
        self._work.unpark_all()

    # -- the follower task ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self.cancel_scope:
                self._subscriber.add(self._channel, self)
                if not self._subscriber.connected:
                    self.disconnected()
                await self._follow()
        finally:
            self._subscriber.remove(self._channel, self)
            self.finished = True
            self.ready.set()
            self._lot.unpark_all()
            self._on_end(self)

    def _has_work(self) -> bool:
        if self._resync or self.end < self._wanted:
            return True
        return self._terminal is not None and self._started

    async def _follow(self) -> None:
        reads_failing = Failing(self._retry_for)
        # Apart: the checks may fail while reads work (Redis out of memory refuses the
        # check's finalize of an orphan, not a read), and a read must not hide that.
        checks_failing = Failing(self._retry_for)
        news_at = trio.current_time()
        block = self._block_ms / 1000
        while True:
            if self._has_work():
                try:
                    with trio.fail_after(self._retry_for):  # a paused Redis never answers
                        complete = await self._sync()
                    if complete:
                        self.complete = True
                        return
                    reads_failing.over()
                    news_at = trio.current_time()
                except self._failures:
                    if reads_failing.too_long():
                        return
                    await trio.sleep(0.2)
                continue
            if self._down_since is not None:
                # No connection, so no news: end after a lease period of it.
                if trio.current_time() - self._down_since >= self._retry_for:
                    return
                with trio.move_on_after(0.2):
                    await self._work.park()
                continue
            with trio.move_on_at(news_at + block) as waited:
                await self._work.park()
            if not waited.cancelled_caught:
                continue
            if self.end > self._news_end:
                self._news_end = self.end  # news came in through push: not quiet
                news_at = trio.current_time()
                continue
            # A lease period without news: the check may finalize an orphan (its
            # terminal marker then arrives like any other).
            try:
                with trio.fail_after(self._retry_for):
                    there = await self._still_there(self.end)
            except self._failures:
                # Redis can neither say nor finalize (down, paused, out of memory): after
                # a lease of such checks the readers end, and their clients resume later.
                if checks_failing.too_long():
                    return
            else:
                if not there:
                    return
                checks_failing.over()
            self._resync = True  # and read whatever a lost message may have held
            news_at = trio.current_time()

    async def _sync(self) -> bool:
        """Read the log from :attr:`end`; ``True`` if it is complete (no more to come)."""
        self._resync = False
        if not self._started:
            last: tuple[Any, ...] = await self._client.xrevrange(self.log, "+", "-", 1)
            if last:
                end, data = parse_entry(last[0])
                self.end = self._news_end = end
                if data is None:
                    self.end_reason = end_reason(last[0].field_values[b"end"])
                    return True  # already complete: readers read the backlog only
            self._started = True
            self.ready.set()
            return False
        while True:
            reply = await self._read_range(self.end)
            start, data = int(reply[0]), reply[1]
            complete = len(reply) > 2
            if start >= 0:
                # Messages may have brought some of these bytes meanwhile.
                skip = max(0, self.end - start)
                if skip < len(data):
                    self._remember(start + skip, start + len(data), data[skip:])
                    self._lot.unpark_all()
            if complete:
                self.end_reason = end_reason(reply[2])
                return True
            if start < 0 or len(data) < MAX_READ_CHUNK:
                if self._terminal is not None and self.end >= self._terminal:
                    self.end_reason = self._terminal_reason
                    return True
                self._wanted = min(self._wanted, self.end)
                return False

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
