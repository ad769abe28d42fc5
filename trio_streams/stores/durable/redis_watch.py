"""Waiting readers of Durable Streams on Redis: one watch per stream per instance, fed by
the instance's one pub/sub connection.

Every change to a stream is published on its channel (``redis_scripts.py``): ``<inc>
<tail> <closed>`` after an append, a close or a creation, ``<inc> gone`` after a
deletion or an expiry. A reader that found nothing new waits on the stream's watch: the
first reader subscribes the channel on the instance's
:class:`~trio_streams.stores.redis.subscriber.Subscriber` (the connection the session
store's followers use too), later ones share it, and the last one to leave unsubscribes.
A thousand long-polls of one stream cost one subscription, and a thousand streams still
one connection.

Pub/sub delivers at most once and only after the subscription is acknowledged, so a
reader checks the stream (one ``HEAD``) once the watch is subscribed, and again whenever
it was subscribed anew (after a reconnect); between those, each message says by itself
whether the reader has something to read.
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
        #: Bumped by every message; ``latest`` is the last one.
        self.messages = 0
        self.latest: Change | None = None
        self._lot = trio.lowlevel.ParkingLot()

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
        self.latest = change
        self.messages += 1
        self._lot.unpark_all()

    def subscribed(self) -> None:
        self.subscriptions += 1
        self._subscribed.set()
        self._lot.unpark_all()

    def disconnected(self) -> None:
        if self._subscribed.is_set():
            self._subscribed = trio.Event()
        self._lot.unpark_all()
