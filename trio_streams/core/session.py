"""One resumable stream: its byte log, its readers, and the cancel scope of its producer.

Readers never poll. A reader that has caught up parks in a :class:`trio.lowlevel.ParkingLot`;
every append and the finalize unpark them all. Because trio only switches tasks at
checkpoints, "check for bytes, then park" needs no lock and cannot miss a wake-up.

Cancellation is a :class:`trio.CancelScope` created with the session, before the producer
runs: a DELETE that lands before the producer even started (during prefill, say) still
stops it, because entering an already-cancelled scope cancels at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator

import trio

from trio_streams.core.bytelog import ByteLog
from trio_streams.core.end_reasons import EndReason
from trio_streams.core.generations import new_generation
from trio_streams.core.session_info import SessionInfo as SessionInfo  # re-exported: its old home

#: Largest chunk one ``read`` step yields. A reader whose client stops reading holds at
#: most one chunk (plus the copies Hypercorn makes of it and the socket buffers), however
#: large the session is. Replay speed is mostly a cost per chunk: 64 KiB gave 23-41 % of
#: raw loopback for a 4 MiB replay, 256 KiB 33-53 % (``scripts/bench/bench.py --only replay``).
MAX_READ_CHUNK = 256 * 1024


class OffsetLostError(Exception):
    """The requested offset is below ``dropped_prefix``: those bytes are gone."""

    def __init__(self, offset: int, dropped_prefix: int) -> None:
        super().__init__(f"offset {offset} is below dropped prefix {dropped_prefix}")
        self.offset = offset
        self.dropped_prefix = dropped_prefix


class OffsetBeyondEndError(Exception):
    """The requested offset is past the end of a *finished* stream: no byte will ever be
    there (a live session's reader waits instead)."""

    def __init__(self, offset: int, total_bytes: int) -> None:
        super().__init__(f"offset {offset} is beyond the end of the stream ({total_bytes} bytes)")
        self.offset = offset
        self.total_bytes = total_bytes


def check_resume_offset(offset: int, *, dropped_prefix: int, total_bytes: int, done: bool) -> None:
    """Raise if a reader cannot start at ``offset``: lost below ``dropped_prefix``, or past
    the end of a finished stream. (Both stores check the same way.)"""
    if offset < dropped_prefix:
        raise OffsetLostError(offset, dropped_prefix)
    if done and offset > total_bytes:
        raise OffsetBeyondEndError(offset, total_bytes)


class SessionClosedError(Exception):
    """Raised to a producer that writes to a session that was finalized."""


class StreamSession:
    """The bytes one producer wrote, readable from any retained offset, live or replayed."""

    def __init__(self, conversation_id: str, max_bytes: int, generation: str | None = None) -> None:
        self.conversation_id = conversation_id
        #: This start (or replacement) of the session; event ids carry it.
        self.generation = generation or new_generation()
        #: Why the stream ended (set by the first finalize), ``None`` while it runs.
        self.end_reason: EndReason | None = None
        #: Why its retained bytes were freed before its readers had them (eviction).
        self.removed: EndReason | None = None
        self.cancel_scope = trio.CancelScope()
        self.started_at = int(time.time())
        #: Unix seconds of finalize, 0 while running (as the API reports it).
        self.completed_at = 0
        #: trio clock time of finalize; garbage collection ages sessions on this clock so
        #: that TTLs are testable under ``autojump_clock``.
        self.completed_at_clock: float | None = None
        #: trio clock time of the last append; the keep-alive task measures idleness on it.
        self.last_append_clock = trio.current_time()
        self._log = ByteLog(max_bytes)
        self._done = False
        #: Readers parked at the end of the log. Dropped at finalize (nobody parks on a
        #: finished session), so an idle finished session does not carry it.
        self._waiters: trio.lowlevel.ParkingLot | None = trio.lowlevel.ParkingLot()
        self.reader_count = 0
        #: Fingerprint of the API key that created the session (None without auth).
        self.owner: str | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def is_done(self) -> bool:
        return self._done

    @property
    def is_cancelled(self) -> bool:
        return self.cancel_scope.cancel_called

    @property
    def total_bytes(self) -> int:
        return self._log.total_bytes

    @property
    def dropped_prefix(self) -> int:
        return self._log.dropped_prefix

    @property
    def retained_bytes(self) -> int:
        return self._log.retained_bytes

    def tail(self, size: int) -> bytes:
        """The last ``size`` retained bytes of the stream."""
        return self._log.tail(size)

    def info(self) -> SessionInfo:
        return SessionInfo(
            conversation_id=self.conversation_id,
            is_done=self._done,
            total_bytes=self._log.total_bytes,
            started_at=self.started_at,
            completed_at=self.completed_at,
            generation=self.generation,
            dropped_prefix=self._log.dropped_prefix,
        )

    # -- producer side ----------------------------------------------------------------------

    def append(self, data: bytes) -> bool:
        """Append bytes and wake every reader; ``False`` (and nothing stored) once finalized."""
        waiters = self._waiters
        if waiters is None:
            return False
        if data:
            self._log.append(data)
            self.last_append_clock = trio.current_time()
            if waiters:  # the common case under load: the reader is still sending
                waiters.unpark_all()
        return True

    def finalize(self, reason: EndReason = EndReason.DONE) -> None:
        """Mark the stream complete and wake every reader. Idempotent: the first call's
        ``reason`` is the one readers are told."""
        if self._done:
            return
        self._done = True
        self.end_reason = reason
        self.completed_at = int(time.time())
        self.completed_at_clock = trio.current_time()
        self._log.compact()
        if self._waiters is not None:
            self._waiters.unpark_all()
            self._waiters = None

    def release(self, reason: EndReason = EndReason.EVICTED) -> None:
        """Finalize and free the retained bytes: readers still behind end at once, told
        ``reason``.

        Eviction uses it, so that memory comes back even while a client that never reads
        keeps its connection (and so the session object) alive.
        """
        self.finalize(reason)
        if self._log.retained_bytes:
            self.removed = reason
        self._log.discard()

    def ending(self) -> EndReason | None:
        """Why a reader's read ended: the bytes were freed under it, or the stream ended."""
        return self.removed or self.end_reason

    def cancel(self) -> None:
        """Stop the producer through its cancel scope. Idempotent; does not finalize."""
        self.cancel_scope.cancel()

    # -- reader side ----------------------------------------------------------------------------

    def check_offset(self, offset: int) -> None:
        """Raise :class:`OffsetLostError` if ``offset`` is no longer retained, and
        :class:`OffsetBeyondEndError` if it is past the end of the finished stream."""
        check_resume_offset(
            offset,
            dropped_prefix=self._log.dropped_prefix,
            total_bytes=self._log.total_bytes,
            done=self._done,
        )

    async def read(self, offset: int = 0) -> AsyncGenerator[bytes, None]:
        """Yield the bytes from ``offset`` on, following the stream until it is finalized.

        Each chunk is everything available at that moment, up to :data:`MAX_READ_CHUNK`,
        so a reader that fell behind catches up in few writes and a stuck one pins little.
        Raises :class:`OffsetLostError` if ``offset`` is (or, for a slow reader, becomes)
        older than what the log retains. A reader whose task is cancelled (its client
        left) ends at once: parking is a checkpoint.
        """
        if offset < 0:
            raise ValueError("offset must be non-negative")
        log = self._log
        self.reader_count += 1
        try:
            while True:
                if offset < log.dropped_prefix:  # check_offset, inlined: once per chunk
                    if self.removed is not None:
                        return  # evicted under the reader: ending() tells it why
                    raise OffsetLostError(offset, log.dropped_prefix)
                if offset < log.total_bytes:
                    # Everything available, up to MAX_READ_CHUNK: a reader that fell
                    # behind (its client was slow, or the server busy) catches up in few
                    # writes, and a stuck one pins little.
                    chunk = log.read_from(offset, MAX_READ_CHUNK)
                    offset += len(chunk)
                    # No checkpoint of our own here: the consumer's send is one, and a
                    # scheduler pass per chunk cost more than the coalescing it bought
                    # once producers write what is due together (``scripts/bench/bench.py``).
                    yield chunk
                    continue
                waiters = self._waiters
                if waiters is None:  # finalized, and everything was delivered
                    return
                await waiters.park()
        finally:
            self.reader_count -= 1
