"""The Redis store's connections: one multiplexed pool for everything.

coredis multiplexes ordinary commands over a few pooled connections (a command hands its
connection back as soon as it is sent). Nothing the store sends blocks in Redis any more:
followed logs arrive by pub/sub (``subscriber.py``), so an instance holds its two pub/sub
connections (control and followed logs) and the few command connections its concurrency
opens, however many sessions it produces or follows.

``--store-follower-connections`` sized a second pool, of one connection per followed
session in a blocking ``XREAD``; it is still accepted, and ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.abc
import coredis
from coredis.connection import BaseConnection
from coredis.exceptions import RedisError
from coredis.pool import ConnectionPool

#: The deprecated ``--store-follower-connections`` default (it has no effect).
DEFAULT_FOLLOWER_CONNECTIONS = 1000
#: The most connections an instance opens, its two pub/sub connections included.
#: Commands are multiplexed (coredis hands a connection back as soon as a command is
#: sent, before its reply), so one connection carries nearly everything once warm; more
#: open only while a burst of commands meets connections still being opened (1,000
#: followers starting at once opened 21 of 64 allowed). Eight keeps an instance at a
#: small fixed number however many sessions it produces or follows.
DEFAULT_COMMAND_CONNECTIONS = 8


#: The most bytes coredis's reader takes from a socket at once (its own: 64 KiB).
READ_BYTES = 1 << 20


#: The connection the current :meth:`SlotKeepingPool.get_connection` call is opening.
_OPENING: ContextVar[list[BaseConnection] | None] = ContextVar("opening", default=None)


class LargeReads(anyio.abc.ByteStream):
    """A byte stream whose reads take up to :data:`READ_BYTES`, not anyio's default 64 KiB."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner

    async def receive(self, max_bytes: int = 0) -> bytes:
        return await self.inner.receive(max(max_bytes, READ_BYTES))

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


def read_in_large_pieces(connection: BaseConnection) -> None:
    """Make coredis's reader task take everything the socket holds (up to
    :data:`READ_BYTES`) at each read.

    It reads ``connection.stream`` 64 KiB at a time, one read per scheduler pass (two,
    with its processing limiter). On an instance busy writing to its clients a pass takes
    tens of milliseconds, and 64 KiB per pass is less than 300 followed sessions publish
    meanwhile: the pub/sub connection fell further behind with every pass, while the
    instance's CPU stayed half idle. A 1 MiB backlog read (``GETRANGE`` of a log's
    segment) took 16 passes; with large reads a replay through Redis went from
    248-301 to 317-335 MB/s with one reader and from about 600 to 870-900 MB/s with 100.
    ``stream`` is a public attribute of coredis's
    connection, but replacing it is not a documented use: the contract test in
    ``tests/stores/test_redis_subscriber.py`` checks that it is still an anyio byte
    stream.
    """
    stream = connection.stream
    if stream is not None and not isinstance(stream, LargeReads):
        connection.stream = LargeReads(stream)


class SlotKeepingPool(ConnectionPool[Any]):
    """coredis' blocking pool, minus two leaks, with large socket reads
    (:func:`read_in_large_pieces`).

    coredis 6.9 loses a place in its pool, for good, when a connection dies while lent
    out (a command cancelled mid-reply, which coredis answers by dropping the connection,
    or a connection lost to a Redis restart), and when the command taking a new
    connection is cancelled while that connection opens. Each loss shrinks the pool by
    one; once it is empty every command waits forever. Readers leave, and cancel their
    followers' reads, all the time, so this is not a corner. Here the place comes back,
    empty, and the next command opens a new connection in it.
    """

    async def get_connection(self, **kwargs: Any) -> BaseConnection:
        opening: list[BaseConnection] = []
        token = _OPENING.set(opening)
        try:
            connection: BaseConnection = await super().get_connection(**kwargs)
            read_in_large_pieces(connection)
            return connection
        except RedisError:
            raise  # the connection failed to open: coredis gave its place back itself
        except BaseException:
            if opening:  # cancelled while opening: its place was taken, nothing holds it
                opening[0].invalidate()
                self._give_place_back()
            raise
        finally:
            _OPENING.reset(token)

    async def _construct_connection(self) -> BaseConnection:
        connection: BaseConnection = await super()._construct_connection()
        opening = _OPENING.get()
        if opening is not None:
            opening.append(connection)
        return connection

    def release(self, connection: BaseConnection) -> None:
        usable = connection.usable
        super().release(connection)
        if not usable:
            self._give_place_back()

    def _give_place_back(self) -> None:
        if not self._available_connections.full():
            self._available_connections.append_nowait(None)


def command_client(
    url: str, *, connections: int, connect_timeout: float, name: str | None = None
) -> coredis.Redis[bytes]:
    """The store's one client; ``name`` labels its connections in ``CLIENT LIST``."""
    pool = SlotKeepingPool.from_url(
        url, connect_timeout=connect_timeout, max_connections=connections, client_name=name
    )
    return coredis.Redis(connection_pool=pool)
