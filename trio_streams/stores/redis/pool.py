"""The Redis store's connections: one pool for commands, one for the followers' reads.

coredis multiplexes ordinary commands over a few pooled connections (a command hands its
connection back as soon as it is sent), but a blocking command such as ``XREAD BLOCK``
keeps a connection to itself until it returns. Each session being followed on an
instance has one such read waiting, for up to a lease period. In one shared pool, past
its size, appends, lease renewals, stops and lookups waited for a blocked read to return:
leases lapsed and live sessions were finalized as orphans. So the store has two pools:

- **commands** (:func:`command_client`): scripts, ``XRANGE``, pub/sub. It needs few
  connections: the subscriber holds one, the rest are shared by multiplexing.
- **followers** (:class:`FollowerReads`): only the blocking reads, one connection each.

When more sessions are followed than the followers' pool holds, their followers take
turns (:meth:`FollowerReads.xread`), first come first served. Why wait rather than
refuse: the bytes are safe in Redis, so a reader that gets them late loses nothing, while
a refused or ended response would send its client back to reconnect and resume, adding
work just when the instance is over its budget. Why this wait is bounded: a turn is one
``XREAD``, which returns on the session's next append or at the end of its block (cut
to :data:`CONTENDED_BLOCK_MS` while others wait), and one that Redis never answers is
cancelled :data:`STUCK_MARGIN` after that; so every follower gets a turn, and a reader
that leaves while its follower waits simply cancels the wait. Producers, renewals, stops
and lookups never wait for any of it: they use the other pool.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import coredis
import trio
from coredis.connection import BaseConnection
from coredis.exceptions import RedisError
from coredis.pool import ConnectionPool

#: Followed sessions whose blocking reads wait at once; more take turns.
DEFAULT_FOLLOWER_CONNECTIONS = 1000
#: Commands are multiplexed: a few connections serve many producers and requests.
DEFAULT_COMMAND_CONNECTIONS = 64
#: A blocking read's longest wait (ms) while other followers wait for a turn.
CONTENDED_BLOCK_MS = 1000
#: A blocking read that outlives its block by this much (seconds) has lost its server:
#: it is cancelled, so that it cannot hold a turn forever.
STUCK_MARGIN = 5.0


#: The connection the current :meth:`SlotKeepingPool.get_connection` call is opening.
_OPENING: ContextVar[list[BaseConnection] | None] = ContextVar("opening", default=None)


class SlotKeepingPool(ConnectionPool[Any]):
    """coredis' blocking pool, minus two leaks.

    coredis 6.9 loses a place in its pool, for good, when a connection dies while lent
    out (a blocking read cancelled, which coredis answers by dropping the connection, or
    a connection lost to a Redis restart), and when the command taking a new connection
    is cancelled while that connection opens (the next read after a dropped one opens
    one). Each loss shrinks the pool by one; once it is empty every command waits
    forever. Followers are cancelled whenever their last reader leaves, so this is the
    common case, not a corner. Here the place comes back, empty, and the next command
    opens a new connection in it.
    """

    async def get_connection(self, **kwargs: Any) -> BaseConnection:
        opening: list[BaseConnection] = []
        token = _OPENING.set(opening)
        try:
            connection: BaseConnection = await super().get_connection(**kwargs)
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


def _client(url: str, *, connections: int, connect_timeout: float) -> coredis.Redis[bytes]:
    pool = SlotKeepingPool.from_url(
        url, connect_timeout=connect_timeout, max_connections=connections
    )
    return coredis.Redis(connection_pool=pool)


def command_client(url: str, *, connections: int, connect_timeout: float) -> coredis.Redis[bytes]:
    """The client for everything but the followers' blocking reads."""
    return _client(url, connections=connections, connect_timeout=connect_timeout)


class FollowerReads:
    """The followers' blocking reads, on a pool of their own, taken in turns when full.

    A follower waits for a turn (a :class:`trio.Semaphore` as large as the pool: fair,
    first come first served, and safe to cancel while waiting, which coredis' own wait
    for a connection is not) and holds it for one ``XREAD``. While others wait, that
    read blocks for :data:`CONTENDED_BLOCK_MS` at most, so a quiet session does not keep
    its connection for a whole lease period; a busy one returns on its next append.
    """

    def __init__(self, url: str, *, connections: int, connect_timeout: float) -> None:
        if connections < 1:
            raise ValueError("the followers need at least one connection")
        self.client = _client(url, connections=connections, connect_timeout=connect_timeout)
        #: As many turns as connections: ``?max_connections=N`` in the URL wins over
        #: ``connections`` in coredis, and more turns than connections would leave
        #: followers waiting in coredis' pool instead of here.
        self.connections: int = self.client.connection_pool.max_connections
        self._turns = trio.Semaphore(self.connections)

    @property
    def waiting(self) -> int:
        """Followers waiting for a turn (0 unless more sessions are followed than fit)."""
        return self._turns.statistics().tasks_waiting

    async def xread(self, log: str, last_id: str, *, count: int, block_ms: int) -> tuple[Any, bool]:
        """``XREAD COUNT count BLOCK block_ms`` on ``log`` after ``last_id``, in turn.

        Returns the reply and whether the read could block for all of ``block_ms``
        (``False``: a shorter turn, because other followers were waiting).
        Raises :class:`TimeoutError` if Redis does not answer well after the block.
        """
        async with self._turns:
            full = not self.waiting
            block = block_ms if full else min(block_ms, CONTENDED_BLOCK_MS)
            with trio.move_on_after(block / 1000 + STUCK_MARGIN):
                reply = await self.client.xread({log: last_id}, count=count, block=block)
                return reply, full or block == block_ms
            raise TimeoutError("the blocking read outlived its block")
