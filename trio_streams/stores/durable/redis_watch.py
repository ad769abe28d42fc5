"""Waiting readers of Durable Streams on Redis: one watch per stream per instance, fed by
the instance's one pub/sub connection.

Every change to a stream is published on its channel (``redis_scripts.py``): ``<inc>
<tail> <closed>`` after an append, a close or a creation, ``<inc> gone`` after a
deletion or an expiry. A reader that found nothing new waits on the stream's watch: the
first reader subscribes the channel on the instance's
:class:`~trio_streams.stores.redis.subscriber.Subscriber` (the connection the session
store's followers use too), later ones share it, and it is unsubscribed a few seconds
after the last one leaves. A thousand long-polls of one stream cost one subscription, and
a thousand streams still one connection.

Pub/sub delivers at most once and only after the subscription is acknowledged, so once
a watch is subscribed (again, after a reconnect) one of its readers checks the stream
with one ``HEAD``; from then on the watch knows the stream's latest state from the
messages alone, and a reader that arrives compares its position with it without asking
Redis anything. A watch stays subscribed a few seconds after its last reader leaves, so
an SSE reader, which waits again after each chunk, finds it warm.

States are totally ordered, so a ``HEAD`` reply and messages arriving in any order merge
into the latest: incarnations are a counter (a newer stream of the same name has a
larger one), within one a deletion comes last, and before it the tail only grows and
closing is final.

An append's message carries its bytes, and the watch keeps the stream's recent tail
(up to :data:`TAIL_BYTES`): the readers it wakes read what they were woken for from it,
with no command of their own, so a hundred SSE readers of one stream on an instance cost
Redis one script per append, not a hundred and one. Only while the watch is synchronized,
for the owner its ``HEAD`` was made for, and for streams without an expiry (a read of
those slides or checks a deadline in Redis); any other read goes to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import trio

from trio_streams.core.durable.headers import normalize_content_type
from trio_streams.core.durable.json_mode import is_json
from trio_streams.core.durable.model import ReadResult, StreamMeta

#: The most bytes of a stream's tail a watch keeps for its readers.
TAIL_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Change:
    """One published change: the stream's incarnation, then its tail and closure, or
    that it is gone."""

    incarnation: str
    tail: int = 0
    closed: bool = False
    gone: bool = False
    #: The bytes an append wrote, ending at :attr:`tail`.
    data: bytes = b""

    @classmethod
    def parse(cls, payload: bytes) -> Change | None:
        parts = payload.split(b" ", 3)
        incarnation = parts[0].decode("ascii", errors="replace")
        if len(parts) == 2 and parts[1] == b"gone":
            return cls(incarnation, gone=True)
        if len(parts) >= 3 and parts[1].isdigit():
            data = parts[3] if len(parts) == 4 else b""
            return cls(incarnation, int(parts[1]), parts[2] == b"1", data=data)
        return None

    def order(self) -> tuple[int, bool, int, bool]:
        """Later states sort higher (see the module's docstring)."""
        incarnation = int(self.incarnation) if self.incarnation.isdigit() else -1
        return (incarnation, self.gone, self.tail, self.closed)

    def wakes(self, incarnation: str, position: int) -> bool:
        """Whether a reader of ``incarnation`` at ``position`` has news in this change."""
        return self.gone or self.incarnation != incarnation or self.tail > position or self.closed


class StreamWatch:
    """One stream's channel on this instance (a
    :class:`~trio_streams.stores.redis.subscriber.ChannelListener`), shared by its
    waiting readers."""

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.waiters = 0
        #: Whether the channel is subscribed (until the connection drops).
        self.is_subscribed = False
        #: Bumped by every acknowledgement of the subscription (the first, and after
        #: each reconnect): a reader that saw another value checks the stream again.
        self.subscriptions = 0
        #: The latest state known (from messages and ``HEAD`` replies, merged).
        self.known: Change | None = None
        #: :attr:`subscriptions` when a ``HEAD`` last completed :attr:`known`: while it
        #: is the current one, :attr:`known` misses nothing.
        self.synced_at = -1
        #: Held by the reader checking the stream for all of them.
        self.syncing = trio.Lock()
        #: trio time since which no reader waits (``None``: some do).
        self.idle_since: float | None = None
        self._lot = trio.lowlevel.ParkingLot()
        #: What the synchronizing ``HEAD`` said (its immutable parts), for which owner,
        #: and of which incarnation.
        self._meta: StreamMeta | None = None
        self._owner: str | None = None
        self._meta_incarnation = ""
        #: The tail kept for readers: the bytes from ``_tail_start`` (``None``: none kept).
        self._tail = bytearray()
        self._tail_start: int | None = None

    @property
    def synced(self) -> bool:
        return self.is_subscribed and self.synced_at == self.subscriptions

    def merge(self, change: Change) -> None:
        known = self.known
        if known is not None and change.order() <= known.order():
            return  # older than what is known
        if known is not None and change.incarnation != known.incarnation:
            self.synced_at = -1  # another stream of that name: look at it before trusting
            self._tail_start = None
        self.known = change
        if change.data:
            self._keep(change.tail - len(change.data), change.data)

    def synchronized(self, meta: StreamMeta, incarnation: str, owner: str | None) -> None:
        """A ``HEAD`` (made after the subscription, for ``owner``) described the stream."""
        self._meta, self._meta_incarnation, self._owner = meta, incarnation, owner
        if self._tail_start is None:
            self._tail_start = meta.tail
            self._tail.clear()

    def _keep(self, start: int, data: bytes) -> None:
        kept = self._tail_start
        end = None if kept is None else kept + len(self._tail)
        if kept is None or end is None or start > end:
            self._tail_start, self._tail = start, bytearray(data)  # a gap: start afresh
        elif start + len(data) > end:
            self._tail += data[end - start :]
        excess = len(self._tail) - TAIL_BYTES
        if excess > 0 and self._tail_start is not None:
            del self._tail[:excess]
            self._tail_start += excess

    def read(self, position: int, limit: int | None, owner: str | None) -> ReadResult | None:
        """The stream from ``position`` out of the kept tail, or ``None`` if this watch
        cannot answer it exactly (then Redis does)."""
        known, meta, start = self.known, self._meta, self._tail_start
        if known is None or meta is None or start is None or known.gone or not self.synced:
            return None
        if owner != self._owner or known.incarnation != self._meta_incarnation:
            return None
        if meta.ttl_seconds is not None or meta.expires_at is not None:
            return None  # a read slides (or checks) a deadline kept in Redis
        end = start + len(self._tail)
        if end != known.tail or not start <= position <= end:
            return None
        stop = end
        if limit is not None and not is_json(normalize_content_type(meta.content_type)):
            stop = min(end, position + limit)
        data = bytes(self._tail[position - start : stop - start])
        current = replace(meta, tail=known.tail, closed=known.closed)
        return ReadResult(data, position, stop, current)

    async def park(self) -> None:
        """Wait for news: a message, a (re)subscription, a lost connection, or
        :meth:`wake_all` (a shutdown)."""
        await self._lot.park()

    def wake_all(self) -> None:
        self._lot.unpark_all()

    # -- ChannelListener: called by the subscriber ----------------------------------------

    def push(self, payload: bytes) -> None:
        change = Change.parse(payload)
        if change is None:
            return
        self.merge(change)
        self._lot.unpark_all()

    def subscribed(self) -> None:
        self.subscriptions += 1
        self.is_subscribed = True
        self._lot.unpark_all()

    def disconnected(self) -> None:
        self.is_subscribed = False
        self._lot.unpark_all()
