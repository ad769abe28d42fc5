"""A capped, append-only byte log addressed by logical offsets.

This is the pure data structure under a stream session: no trio, no I/O, so it can be
tested exhaustively (see the hypothesis test) and reused by any store. Byte ``N`` of a
stream keeps the number ``N`` forever; when the cap is exceeded the oldest bytes are
dropped and counted in :attr:`ByteLog.dropped_prefix`.

The retained bytes live in one ``bytearray`` whose front is trimmed lazily: dropping
advances a head index, and the array is compacted only once the dead head outweighs the
live bytes. That keeps appends amortised O(len(data)) instead of a 4 MiB ``memmove`` per
token once a session is full.
"""

from __future__ import annotations


class ByteLog:
    """Append-only bytes with a cap; offsets are logical and never reused."""

    __slots__ = ("_buffer", "_head", "dropped_prefix", "max_bytes", "total_bytes")

    def __init__(self, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._head = 0
        # Plain attributes, not properties: every append and every read step looks at
        # them (issue 7's hot path). Only this class writes them.
        #: How many bytes from the start of the stream are gone for good.
        self.dropped_prefix = 0
        #: Logical end of the stream: ``dropped_prefix + retained_bytes``.
        self.total_bytes = 0

    @property
    def retained_bytes(self) -> int:
        return self.total_bytes - self.dropped_prefix

    def append(self, data: bytes) -> None:
        """Append ``data``, dropping the oldest bytes if the cap would be exceeded.

        A single append larger than the cap keeps only its last ``max_bytes`` bytes,
        exactly as the reference does.
        """
        size = len(data)
        if size == 0:
            return
        self.total_bytes += size
        if size >= self.max_bytes:
            self.dropped_prefix = self.total_bytes - self.max_bytes
            self._buffer = bytearray(memoryview(data)[size - self.max_bytes :])
            self._head = 0
            return
        overflow = self.total_bytes - self.dropped_prefix - self.max_bytes
        if overflow > 0:
            self._head += overflow
            self.dropped_prefix += overflow
            if self._head > len(self._buffer) // 2:
                del self._buffer[: self._head]
                self._head = 0
        self._buffer += data

    def read_from(self, offset: int, limit: int | None = None) -> bytes:
        """Return the retained bytes from logical ``offset`` on (at most ``limit``).

        The caller checks ``offset`` against :attr:`dropped_prefix` first; an offset at or
        beyond the end returns ``b""``.
        """
        if offset < self.dropped_prefix:
            raise ValueError("offset below dropped_prefix")
        start = self._head + offset - self.dropped_prefix
        end = len(self._buffer) if limit is None else min(len(self._buffer), start + limit)
        if start >= end:
            return b""
        return bytes(memoryview(self._buffer)[start:end])

    def tail(self, size: int) -> bytes:
        """The last ``size`` retained bytes (fewer if fewer are retained)."""
        return bytes(memoryview(self._buffer)[max(self._head, len(self._buffer) - size) :])

    def discard(self) -> None:
        """Drop every retained byte; the logical end stays where it is.

        Used when a session is evicted or stopped: its memory is returned at once, even
        if a reader that never reads still holds the session.
        """
        self.dropped_prefix = self.total_bytes
        self._buffer = bytearray()
        self._head = 0

    def compact(self) -> None:
        """Release the dead head and any over-allocation; used once a log stops growing."""
        if self._head or len(self._buffer):
            self._buffer = bytearray(memoryview(self._buffer)[self._head :])
            self._head = 0
