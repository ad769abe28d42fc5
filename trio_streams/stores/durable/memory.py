"""The in-process Durable Streams store: every stream a byte log in this process.

Each operation runs without a checkpoint between reading a stream's state and changing
it, so under trio it is atomic without a lock: the producer checks and the append of
:func:`~trio_streams.core.durable.appends.plan_append` cannot interleave with another
request's. Readers wait on the stream's :class:`trio.Event`, which every append, close
and delete sets (and replaces): they never poll.

Expiry is on trio's clock: an expired stream is gone for every operation at once, and
the collector (a task that sleeps ``gc_interval`` under this store's ``async with``)
frees the ones nobody touches again.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Iterable

import trio

from trio_streams.core.durable import json_mode
from trio_streams.core.durable.appends import frame_body, plan_append
from trio_streams.core.durable.errors import (
    BadRequestError,
    StoreFullError,
)
from trio_streams.core.durable.headers import Expiry, normalize_content_type
from trio_streams.core.durable.lifecycle import (
    StreamConfig,
    check_same_config,
    deadline,
    is_expired,
    plan_fork,
    slid,
)
from trio_streams.core.durable.model import (
    AppendRequest,
    AppendResult,
    CreateRequest,
    CreateResult,
    ForkRequest,
    ReadResult,
    StreamMeta,
)
from trio_streams.core.durable.producers import ProducerClaim, ProducerState
from trio_streams.core.lifetime import Chore
from trio_streams.stores.durable.base import (
    DurableStoreBase,
    missing,
    name_taken,
    source_missing,
)

#: Largest stream (its inherited bytes included) by default: as a session's log.
DEFAULT_MAX_STREAM_BYTES = 4 * 1024 * 1024
#: Streams held at once, and the bytes of all of them, by default (as for sessions).
DEFAULT_MAX_STREAMS = 10_000
DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
DEFAULT_GC_INTERVAL = 60.0
#: What the byte budget counts for an append beside its bytes (where it starts), and for
#: a producer beside its id (its state): the budget bounds the memory a client can make
#: the store hold, and a flood of one-byte appends, each from a new producer with a long
#: id, holds far more than its bytes.
APPEND_COST = 8
PRODUCER_COST = 64


class _Stream:
    """One stream's state. A fork holds only its own bytes, from ``base`` on."""

    def __init__(
        self,
        name: str,
        owner: str | None,
        content_type: str,
        expiry: Expiry,
        *,
        source: _Stream | None = None,
        base: int = 0,
    ) -> None:
        self.name = name
        self.owner = owner
        self.content_type = content_type
        self.expiry = expiry
        self.source = source
        self.base = base
        self.log = bytearray()
        #: Where each append starts (absolute positions, ascending; 8 bytes each).
        self.append_starts = array("q")
        self.closed = False
        self.closed_by: ProducerClaim | None = None
        self.deadline: float | None = None
        self.last_seq: str | None = None
        self.producers: dict[str, ProducerState] = {}
        #: What the byte budget counts for this stream (:func:`cost`).
        self.cost = 0
        self.ref_count = 0
        self.soft_deleted = False
        self.removed = False
        self.changed = trio.Event()

    @property
    def tail(self) -> int:
        return self.base + len(self.log)

    def meta(self) -> StreamMeta:
        return StreamMeta(
            name=self.name,
            content_type=self.content_type,
            tail=self.tail,
            closed=self.closed,
            ttl_seconds=self.expiry.ttl_seconds,
            expires_at=self.expiry.expires_at,
            forked_from=None if self.source is None else self.source.name,
            fork_position=None if self.source is None else self.base,
        )

    def write(self, data: bytes) -> None:
        if data:
            self.append_starts.append(self.tail)
            self.log += data

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``: below ``base`` from the source chain."""
        if start >= self.base:
            return bytes(self.log[start - self.base : end - self.base])
        assert self.source is not None
        inherited = self.source.read(start, min(end, self.base))
        if end <= self.base:
            return inherited
        return inherited + bytes(self.log[: end - self.base])

    def append_at(self, position: int) -> bytes | None:
        """The bytes of the append that starts at ``position`` (``None``: none does)."""
        if position < self.base:
            assert self.source is not None
            found = self.source.append_at(position)
            return None if found is None else found[: self.base - position]
        index = bisect.bisect_left(self.append_starts, position)
        if index == len(self.append_starts) or self.append_starts[index] != position:
            return None
        end = self.append_starts[index + 1] if index + 1 < len(self.append_starts) else self.tail
        return self.read(position, end)


class MemoryDurableStore(DurableStoreBase):
    """Durable Streams held in this process (the store of ``trio-streams serve``)."""

    def __init__(
        self,
        *,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
        max_streams: int | None = DEFAULT_MAX_STREAMS,
        max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES,
        gc_interval: float = DEFAULT_GC_INTERVAL,
    ) -> None:
        super().__init__(max_stream_bytes=max_stream_bytes)
        self.max_streams = max_streams
        self.max_total_bytes = max_total_bytes
        self.gc_interval = gc_interval
        self._streams: dict[str, _Stream] = {}
        #: What the byte budget counts (:func:`cost`) of every stream's own appends and
        #: producers (soft-deleted streams included).
        self.total_bytes = 0

    # -- lifetime ------------------------------------------------------------------------

    def _chores(self) -> Iterable[Chore]:
        return [(self.gc_interval, self.collect_garbage)]

    def shutdown(self) -> None:
        """Refuse every operation and wake every waiting reader (to be told so)."""
        super().shutdown()
        for stream in self._streams.values():
            stream.wake()

    def __len__(self) -> int:
        return len(self._streams)

    def collect_garbage(self) -> int:
        """Free every expired stream (soft-delete those that forks still read through)."""
        now = trio.current_time()
        expired = [
            stream
            for stream in self._streams.values()
            if not stream.soft_deleted and is_expired(stream.deadline, now=now)
        ]
        for stream in expired:
            self._expire(stream)
        return len(expired)

    # -- the seam --------------------------------------------------------------------------

    async def create(
        self, name: str, request: CreateRequest, *, owner: str | None = None
    ) -> CreateResult:
        self._check_open()
        existing = self._existing(name, owner)
        if existing is not None:
            config = StreamConfig(request.content_type, request.expiry, request.closed)
            return self._confirmed(existing, config)
        stream = _Stream(name, owner, request.content_type, request.expiry)
        return self._add(stream, request.body, closed=request.closed)

    async def fork(
        self, name: str, request: ForkRequest, *, owner: str | None = None
    ) -> CreateResult:
        self._check_open()
        source = self._streams.get(request.source)
        if source is not None and (source.owner != owner or source.removed):
            source = None
        if source is not None and not source.soft_deleted and self._has_expired(source):
            self._expire(source)
            source = None if source.removed else source
        if source is None:
            raise source_missing(gone=False)
        if source.soft_deleted:
            raise source_missing(gone=True)
        plan = plan_fork(request, source.meta(), source.append_at, source_expiry=source.expiry)
        existing = self._existing(name, owner)
        if existing is not None:
            return self._confirmed(existing, plan.config)
        fork = _Stream(
            name, owner, plan.content_type, plan.expiry, source=source, base=plan.position
        )
        return self._add(fork, request.body, closed=request.closed)

    async def append(
        self, name: str, request: AppendRequest, *, owner: str | None = None
    ) -> AppendResult:
        self._check_open()
        stream = self._live(name, owner)
        claim = request.producer
        plan = plan_append(
            stream.meta(),
            request,
            producer_state=None if claim is None else stream.producers.get(claim.producer_id),
            last_seq=stream.last_seq,
            closed_by=stream.closed_by,
            max_bytes=self.max_stream_bytes,
        )
        new_producer = None
        if plan.producer_state is not None and plan.producer_state[0] not in stream.producers:
            new_producer = plan.producer_state[0]
        self._check_room(cost(plan.data, new_producer))
        self._write(stream, plan.data, new_producer)
        if plan.producer_state is not None:
            producer_id, state = plan.producer_state
            stream.producers[producer_id] = state
        if plan.stream_seq is not None:
            stream.last_seq = plan.stream_seq
        if plan.close and not stream.closed:
            stream.closed = True
            stream.closed_by = plan.closed_by
        self._touch(stream)
        if plan.data or plan.close:
            stream.wake()
        return plan.result

    async def read(
        self,
        name: str,
        position: int | None,
        *,
        limit: int | None = None,
        owner: str | None = None,
    ) -> ReadResult:
        self._check_open()
        stream = self._live(name, owner)
        self._touch(stream)
        tail = stream.tail
        start = tail if position is None else position
        if start > tail:
            raise BadRequestError("The offset is past the end of the stream")
        end = tail
        json_stream = json_mode.is_json(normalize_content_type(stream.content_type))
        if limit is not None and not json_stream:
            end = min(tail, start + limit)
        return ReadResult(stream.read(start, end), start, end, stream.meta())

    async def wait(
        self, name: str, position: int, within: float, *, owner: str | None = None
    ) -> bool:
        self._check_open()
        stream = self._live(name, owner)
        if stream.tail > position or stream.closed:
            return True
        changed = stream.changed
        with trio.move_on_after(within):
            await changed.wait()
            self._check_open()
            return True
        return False

    async def head(self, name: str, *, owner: str | None = None) -> StreamMeta:
        self._check_open()
        return self._live(name, owner).meta()

    async def delete(self, name: str, *, owner: str | None = None) -> None:
        self._check_open()
        stream = self._live(name, owner)
        if stream.ref_count > 0:
            stream.soft_deleted = True
            stream.wake()
        else:
            self._remove(stream)

    # -- internals -------------------------------------------------------------------------

    def _confirmed(self, existing: _Stream, wanted: StreamConfig) -> CreateResult:
        """A repeated PUT: of the stream as it is, an access answered ``200``."""
        check_same_config(existing.meta(), wanted)
        self._touch(existing)
        return CreateResult(created=False, meta=existing.meta())

    def _add(self, stream: _Stream, body: bytes, *, closed: bool) -> CreateResult:
        """Hold the new ``stream`` (a fork: with a reference on its source), ``body``
        framed as its first bytes; ``413`` or ``429`` if there is no room for it."""
        data = frame_body(stream.content_type, body, initial=True)
        if stream.base + len(data) > self.max_stream_bytes:
            raise self._too_large()
        self._check_room(cost(data), new_stream=True)
        self._write(stream, data)
        stream.closed = closed
        stream.deadline = self._deadline(stream.expiry)
        if stream.source is not None:
            stream.source.ref_count += 1
        self._streams[stream.name] = stream
        return CreateResult(created=True, meta=stream.meta())

    def _check_room(self, size: int, *, new_stream: bool = False) -> None:
        """Refuse what would take the store past its stream count or byte budget."""
        if new_stream and self.max_streams is not None and len(self._streams) >= self.max_streams:
            raise StoreFullError(f"The server holds its limit of {self.max_streams} streams")
        if self.max_total_bytes is not None and self.total_bytes + size > self.max_total_bytes:
            raise StoreFullError(
                f"The server's Durable Streams hold their limit of {self.max_total_bytes} bytes"
            )

    def _write(self, stream: _Stream, data: bytes, new_producer: str | None = None) -> None:
        stream.write(data)
        stream.cost += cost(data, new_producer)
        self.total_bytes += cost(data, new_producer)

    def _deadline(self, expiry: Expiry) -> float | None:
        return deadline(expiry, now=trio.current_time(), now_unix=time.time())

    def _touch(self, stream: _Stream) -> None:
        """An access slides a TTL (an absolute expiry stays)."""
        stream.deadline = slid(stream.meta(), stream.deadline, now=trio.current_time())

    def _has_expired(self, stream: _Stream) -> bool:
        return is_expired(stream.deadline, now=trio.current_time())

    def _existing(self, name: str, owner: str | None) -> _Stream | None:
        """The stream a PUT of ``name`` meets (an expired one is gone first)."""
        stream = self._streams.get(name)
        if stream is None:
            return None
        if not stream.soft_deleted and self._has_expired(stream):
            self._expire(stream)
            if stream.removed:
                return None
        if stream.soft_deleted:
            raise name_taken(by_deleted=True)
        if stream.owner != owner:
            raise name_taken(by_deleted=False)
        return stream

    def _live(self, name: str, owner: str | None) -> _Stream:
        """The stream, readable and writable; else ``404`` or ``410``."""
        stream = self._streams.get(name)
        if stream is None or stream.owner != owner:
            raise missing(gone=False)
        if not stream.soft_deleted and self._has_expired(stream):
            self._expire(stream)
        if stream.removed:
            raise missing(gone=False)
        if stream.soft_deleted:
            raise missing(gone=True)
        return stream

    def _expire(self, stream: _Stream) -> None:
        if stream.ref_count > 0:
            stream.soft_deleted = True
            stream.wake()
        else:
            self._remove(stream)

    def _remove(self, stream: _Stream) -> None:
        """Free ``stream``; a soft-deleted source whose last fork this was goes too."""
        if self._streams.get(stream.name) is stream:
            del self._streams[stream.name]
        if not stream.removed:
            self.total_bytes -= stream.cost
        stream.removed = True
        stream.wake()
        source = stream.source
        if source is not None:
            source.ref_count -= 1
            if source.ref_count == 0 and source.soft_deleted and not source.removed:
                self._remove(source)


def cost(data: bytes, new_producer: str | None = None) -> int:
    """What the byte budget counts for an append of ``data`` (by ``new_producer``, the
    id of a producer the stream did not know)."""
    total = len(data) + APPEND_COST if data else 0
    if new_producer is not None:
        total += len(new_producer) + PRODUCER_COST
    return total
