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
"""

from __future__ import annotations

from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class Change:
    """One published change: the stream's incarnation, then its tail and closure, or
    that it is gone."""

    incarnation: str
    tail: int = 0
    closed: bool = False
    gone: bool = False

    @classmethod
    def parse(cls, payload: bytes) -> Change | None:
        parts = payload.decode("ascii", errors="replace").split(" ")
        if len(parts) == 2 and parts[1] == "gone":
            return cls(parts[0], gone=True)
        if len(parts) == 3 and parts[1].isdigit():
            return cls(parts[0], int(parts[1]), parts[2] == "1")
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
        #: Set while subscribed; replaced by an unset one when the connection drops.
        self._subscribed = trio.Event()
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

    @property
    def synced(self) -> bool:
        return self.is_subscribed and self.synced_at == self.subscriptions

    def merge(self, change: Change) -> None:
        if self.known is None or change.order() > self.known.order():
            self.known = change

    async def ready(self) -> None:
        """Wait until the channel is subscribed (a no-op while it is)."""
        await self._subscribed.wait()

    @property
    def is_subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def park(self) -> None:
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
        self._subscribed.set()
        self._lot.unpark_all()

    def disconnected(self) -> None:
        if self._subscribed.is_set():
            self._subscribed = trio.Event()
        self._lot.unpark_all()
