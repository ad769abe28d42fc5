"""One pub/sub connection per instance that brings in every log it follows.

Why pub/sub, not blocking reads: a blocking ``XREAD`` holds its connection until it
returns, so one per followed log meant one connection per session (1,000 sessions, 1,000
connections per instance), and one multi-key ``XREAD`` for them all would send and parse
every followed key again after every wake-up, O(sessions) per append at the rates that
matter. Here every append script also publishes its bytes on a channel named like the
log (``scripts.py``); an instance subscribes, on this one connection, to the logs it
follows, and Redis pushes each entry to it once: no request per append, and a fixed
connection count whatever the number of sessions (this one, the control channel's, and
the few multiplexed command connections).

Pub/sub delivers at most once, so the stream stays the source of truth: each message
carries the offset its bytes end at, a follower that sees a gap reads the log
(``follower.py``), and every subscription's acknowledgement, the first one and those
after a reconnect, makes its follower read what it may have missed meanwhile.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any, Protocol

import coredis
import trio
from coredis.retry import NoRetryPolicy

from trio_streams.stores.redis.commands import REDIS_ERRORS, only

logger = logging.getLogger("trio_streams")


class ChannelListener(Protocol):
    """What listens to one channel: a session log's follower (``follower.py``) or a
    Durable Stream's watcher (``stores/durable/redis_watch.py``)."""

    def push(self, payload: bytes) -> None:
        """A message published on the channel."""
        ...

    def subscribed(self) -> None:
        """The subscription was acknowledged (again, after a reconnect): whatever was
        published before it may have been missed."""
        ...

    def disconnected(self) -> None:
        """The connection was lost: nothing arrives until :meth:`subscribed`."""
        ...


class Subscriber:
    """The followed logs' channels (and the watched Durable Streams'), on one pub/sub
    connection, reconnected after a loss."""

    def __init__(self, client: coredis.Redis[bytes]) -> None:
        self._client = client
        #: channel (the log's key) -> its follower on this instance
        self._followers: dict[bytes, ChannelListener] = {}
        self._pubsub: Any = None
        self._scope = trio.CancelScope()
        self._closed = False
        #: Set while the connection is up and subscribed.
        self.connected = False

    def shutdown(self) -> None:
        self._closed = True
        self._scope.cancel()

    def __len__(self) -> int:
        return len(self._followers)

    def add(self, channel: bytes, follower: ChannelListener) -> None:
        """Follow ``channel``: its acknowledgement reaches ``follower.subscribed``."""
        self._followers[channel] = follower
        self._send(b"SUBSCRIBE", channel)

    def remove(self, channel: bytes, follower: ChannelListener) -> None:
        if self._followers.get(channel) is not follower:
            return  # a newer follower of the same log took over: it stays subscribed
        del self._followers[channel]
        self._send(b"UNSUBSCRIBE", channel)

    def _send(self, command: bytes, channel: bytes) -> None:
        """Queue a (un)subscription on the connection; the acknowledgement comes as a
        message. Without a connection, the next one subscribes every follower."""
        pubsub = self._pubsub
        if pubsub is not None:
            with suppress(*REDIS_ERRORS):
                pubsub.connection.send_command(command, channel)

    async def run(self) -> None:
        with self._scope:
            while True:
                try:
                    await self._listen()
                except BaseException as exc:
                    self._pubsub = None
                    self.connected = False
                    for follower in list(self._followers.values()):
                        follower.disconnected()
                    if self._closed:
                        return
                    if not only(exc, REDIS_ERRORS):
                        raise
                    await trio.sleep(0.2)

    async def _listen(self) -> None:
        async with self._client.pubsub(
            ignore_subscribe_messages=False, retry_policy=NoRetryPolicy()
        ) as pubsub:
            self._pubsub = pubsub
            if self._followers:
                pubsub.connection.send_command(b"SUBSCRIBE", *self._followers)
            self.connected = True
            followers = self._followers
            while True:
                message = await pubsub.get_message()
                if message is None:
                    continue
                channel = message["channel"]
                follower = followers.get(channel) if isinstance(channel, bytes) else None
                if follower is None:
                    continue
                kind, data = message["type"], message["data"]
                if kind == "message" and isinstance(data, bytes):
                    follower.push(data)
                elif kind == "subscribe":
                    follower.subscribed()
