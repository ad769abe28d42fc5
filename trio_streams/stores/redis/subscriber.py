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

Two things coredis's own ``PubSub`` does not do, which is why this module holds the
connection itself:

- **Every message at once.** coredis parses all the messages of a socket read into its
  connection's buffer together, but hands them on one per ``await`` (through a task of
  its own, then another queue): each message costs two trips through the scheduler, and
  an instance busy serving hundreds of streams fell seconds behind its followed logs
  with its CPU idle (p99 2.1 s at 300 followed sessions). Here each wake-up takes every
  message already parsed, and those that the next socket reads bring without delay
  (:func:`receive_push_batch`), and hands them all to their listeners before waiting
  again: a reader that fell behind gets its missed events in one write.
- **A keepalive that replaces a silent connection.** A half-open TCP connection (a load
  balancer or NAT that dropped it without a reset) delivers nothing and reports no
  error. After :data:`PING_AFTER` seconds without a message the subscriber sends its own
  ``PING``; without an answer within :data:`PONG_WITHIN` seconds it drops the
  connection and subscribes again on a new one (:func:`keep_alive`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, Protocol

import anyio
import coredis
import trio
from anyio.streams.memory import MemoryObjectReceiveStream
from coredis.connection import BaseConnection
from coredis.exceptions import ConnectionError as RedisConnectionError

from trio_streams.stores.redis.commands import REDIS_ERRORS, only

logger = logging.getLogger("trio_streams")

#: Seconds without any message on the connection before the subscriber sends a ``PING``.
PING_AFTER = 15.0
#: Seconds a ``PING`` may go unanswered before the connection is taken for dead.
PONG_WITHIN = 10.0
#: The most scheduler passes a batch of push messages gathers for before it is handed
#: on (each pass may bring one more socket read): a bound on the wait when the
#: messages never stop coming.
GATHER_PASSES = 8


class SilentConnectionError(RedisConnectionError):
    """The pub/sub connection did not answer a ``PING`` in time: it is replaced."""


def push_buffer(connection: BaseConnection) -> MemoryObjectReceiveStream[list[Any]]:
    """The push messages coredis has parsed on ``connection`` and not yet handed on.

    This is coredis's private ``BaseConnection._push_message_buffer_out`` (coredis 6.9:
    the anyio memory stream its reader task fills with every push message of a socket
    read), one of the two places this module leans on coredis's inside (the other:
    :func:`~.pool.read_in_large_pieces`). The public ``connection.push_messages`` hands them on
    one per ``await``, which is what made followers fall behind. The test
    ``tests/stores/test_redis_subscriber.py::test_coredis_still_buffers_push_messages_where_we_drain_them``
    fails if coredis renames or changes it.
    """
    buffer: MemoryObjectReceiveStream[list[Any]] = connection._push_message_buffer_out
    return buffer


def take_parsed(buffer: MemoryObjectReceiveStream[list[Any]], batch: list[list[Any]]) -> int:
    """Move every message already in ``buffer`` to ``batch``, without waiting; how many."""
    taken = 0
    while True:
        try:
            batch.append(buffer.receive_nowait())
        except anyio.WouldBlock:
            return taken
        taken += 1


async def receive_push_batch(
    connection: BaseConnection, *, passes: int = GATHER_PASSES
) -> list[list[Any]]:
    """Wait for the next push message on ``connection``, then gather those that follow
    it without delay, for at most ``passes`` scheduler passes.

    coredis's reader task parses one socket read per scheduler pass (64 KiB by default,
    some 150 messages). When the connection has fallen behind, the kernel holds far
    more: handing on 150 messages per pass then wakes 150 different readers each time,
    one event each, and the instance never catches up. So while each pass brings more, let
    the reader task read on (a checkpoint) before handing anything on: a reader behind
    by ten events then gets all ten in one write. When nothing more came in a pass (twice,
    as the pass may have run this task before the reader's), or after ``passes`` of
    them, the batch goes out.
    """
    buffer = push_buffer(connection)
    try:
        batch = [await buffer.receive()]
        take_parsed(buffer, batch)
        quiet = 0
        for _ in range(passes):
            await trio.lowlevel.checkpoint()
            quiet = 0 if take_parsed(buffer, batch) else quiet + 1
            if quiet == 2:
                break
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
        raise RedisConnectionError("pub/sub connection lost") from exc
    return batch


async def keep_alive(
    ping: Callable[[], Awaitable[object]],
    last_heard: Callable[[], float],
    *,
    ping_after: float = PING_AFTER,
    pong_within: float = PONG_WITHIN,
) -> None:
    """Ping a connection that has been quiet for ``ping_after`` seconds (by
    ``last_heard()``, on trio's clock); raise :class:`SilentConnectionError` if a ping
    goes ``pong_within`` seconds without an answer. Runs until cancelled."""
    while True:
        await trio.sleep_until(last_heard() + ping_after)
        if trio.current_time() - last_heard() < ping_after:
            continue  # a message came meanwhile
        with trio.move_on_after(pong_within) as waited:
            await ping()
        if waited.cancelled_caught and trio.current_time() - last_heard() >= ping_after:
            raise SilentConnectionError(f"no answer to PING within {pong_within:g} s")


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

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        ping_after: float = PING_AFTER,
        pong_within: float = PONG_WITHIN,
    ) -> None:
        self._client = client
        #: channel (the log's key) -> its follower on this instance
        self._followers: dict[bytes, ChannelListener] = {}
        self._connection: BaseConnection | None = None
        self._scope = trio.CancelScope()
        self._closed = False
        self.ping_after = ping_after
        self.pong_within = pong_within
        #: trio clock time of the last message (or ``PING`` answer) on the connection.
        self._heard_at = 0.0
        #: Connections opened so far (the first, then one per reconnect).
        self.connections_opened = 0
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
        connection = self._connection
        if connection is not None:
            with suppress(*REDIS_ERRORS):
                connection.send_command(command, channel)

    async def run(self) -> None:
        with self._scope:
            while True:
                try:
                    await self._listen()
                except BaseException as exc:
                    self.connected = False
                    for follower in list(self._followers.values()):
                        follower.disconnected()
                    if self._closed:
                        return
                    if not only(exc, REDIS_ERRORS):
                        raise
                    if only(exc, (SilentConnectionError,)):
                        logger.warning("Redis pub/sub connection silent: replacing it")
                    await trio.sleep(0.2)

    async def _listen(self) -> None:
        pool = self._client.connection_pool
        connection: BaseConnection = await pool.get_connection()
        try:
            # The pool's connections read up to 1 MiB at a time (``pool.read_in_large_pieces``).
            self._connection = connection
            self.connections_opened += 1
            self._heard_at = trio.current_time()
            if self._followers:
                connection.send_command(b"SUBSCRIBE", *self._followers)
            self.connected = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_alive, connection)
                while True:
                    batch = await receive_push_batch(connection)
                    self._heard_at = trio.current_time()
                    for message in batch:
                        self._dispatch(message)
        finally:
            # In subscribed mode it can serve nothing else: it never goes back to the pool.
            self._connection = None
            connection.invalidate()
            pool.release(connection)

    async def _keep_alive(self, connection: BaseConnection) -> None:
        async def ping() -> None:
            await connection.create_request(b"PING")
            self._heard_at = trio.current_time()

        await keep_alive(
            ping,
            lambda: self._heard_at,
            ping_after=self.ping_after,
            pong_within=self.pong_within,
        )

    def _dispatch(self, message: list[Any]) -> None:
        """Hand one push message (``[kind, channel, data]``) to its channel's listener."""
        if len(message) < 3:
            return  # e.g. a RESP2-style ``pong``: it counted as heard
        kind, channel, data = message[0], message[1], message[2]
        follower = self._followers.get(channel) if isinstance(channel, bytes) else None
        if follower is None:
            return
        if kind == b"message" and isinstance(data, bytes):
            follower.push(data)
        elif kind == b"subscribe":
            follower.subscribed()
