"""The instance's pub/sub connection (``stores/redis/subscriber.py``): every message
already parsed is handed on at once, and a silent connection is pinged, then replaced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.abc
import pytest
import trio

from tests.cutting_proxy import LocalRelay
from tests.redis_fixtures import RedisServer
from trio_streams.stores.redis.pool import LargeReads, command_client, read_in_large_pieces
from trio_streams.stores.redis.subscriber import (
    SilentConnectionError,
    Subscriber,
    keep_alive,
    receive_push_batch,
)


class Listener:
    """A :class:`~trio_streams.stores.redis.subscriber.ChannelListener` that keeps what
    it is told, in order."""

    def __init__(self) -> None:
        self.events: list[bytes | str] = []
        self.changed = trio.Event()

    def push(self, payload: bytes) -> None:
        self.events.append(payload)
        self._changed()

    def subscribed(self) -> None:
        self.events.append("subscribed")
        self._changed()

    def disconnected(self) -> None:
        self.events.append("disconnected")
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, count: int, event: bytes | str) -> None:
        """Until ``event`` has happened ``count`` times."""
        while self.events.count(event) < count:
            await self.changed.wait()


async def test_coredis_still_buffers_push_messages_where_we_drain_them(
    redis_server: RedisServer,
) -> None:
    """The one private access to coredis: if this fails after a coredis upgrade, fix
    ``receive_push_batch`` (followers would otherwise get one message per await)."""
    client = command_client(redis_server.url, connections=4, connect_timeout=2)
    async with client:
        pool = client.connection_pool
        connection = await pool.get_connection()
        try:
            # coredis's reader task reads this stream: the pool has it take up to 1 MiB
            # a read (on every connection it lends, this one included).
            assert isinstance(connection.stream, LargeReads)
            assert isinstance(connection.stream.inner, anyio.abc.ByteStream)
            read_in_large_pieces(connection)  # wrapped once only
            assert isinstance(connection.stream.inner, anyio.abc.ByteStream)
            connection.send_command(b"SUBSCRIBE", b"log")
            for index in range(50):
                # Each PUBLISH returns once Redis has sent the message on to the subscriber.
                assert await client.publish("log", b"entry %d" % index) == 1
            buffer = connection._push_message_buffer_out
            with trio.fail_after(5):
                while buffer.statistics().current_buffer_used < 51:  # noqa: ASYNC110 (coredis's)
                    await trio.sleep(0.01)
            batch = await receive_push_batch(connection)
        finally:
            connection.invalidate()
            pool.release(connection)
    assert len(batch) == 51  # the acknowledgement and the 50 messages, in one wake-up
    assert batch[0][:2] == [b"subscribe", b"log"]
    assert [message[2] for message in batch[1:]] == [b"entry %d" % i for i in range(50)]


async def test_every_message_reaches_its_listener_in_order(redis_server: RedisServer) -> None:
    client = command_client(redis_server.url, connections=4, connect_timeout=2)
    async with client, trio.open_nursery() as nursery:
        subscriber = Subscriber(client)
        nursery.start_soon(subscriber.run)
        first, second = Listener(), Listener()
        subscriber.add(b"one", first)
        subscriber.add(b"two", second)
        with trio.fail_after(5):
            await first.wait_for(1, "subscribed")
            await second.wait_for(1, "subscribed")
            for index in range(300):
                await client.publish("one" if index % 3 else "two", b"%d" % index)
            await first.wait_for(1, b"299")
            await second.wait_for(1, b"297")
        assert first.events[1:] == [b"%d" % i for i in range(300) if i % 3]
        assert second.events[1:] == [b"%d" % i for i in range(300) if not i % 3]
        subscriber.shutdown()


async def test_a_burst_of_many_socket_reads_reaches_its_listeners_whole_and_in_order(
    redis_server: RedisServer,
) -> None:
    """2,000 messages of 1 KiB published by one script arrive faster than one socket read
    holds (64 KiB): gathered over several reads, each still reaches its channel's
    listener once, in order."""
    client = command_client(redis_server.url, connections=4, connect_timeout=2)
    burst = "for i = 1, 2000 do redis.call('PUBLISH', 'ch' .. (i % 7), i .. ' ' .. ARGV[1]) end"
    async with client, trio.open_nursery() as nursery:
        subscriber = Subscriber(client)
        nursery.start_soon(subscriber.run)
        listeners = [Listener() for _ in range(7)]
        for index, listener in enumerate(listeners):
            subscriber.add(b"ch%d" % index, listener)
        with trio.fail_after(10):
            for listener in listeners:
                await listener.wait_for(1, "subscribed")
            await client.eval(burst, keys=[], args=["x" * 1024])
            for index, listener in enumerate(listeners):
                last = max(i for i in range(1, 2001) if i % 7 == index)
                await listener.wait_for(1, b"%d %s" % (last, b"x" * 1024))
        for index, listener in enumerate(listeners):
            numbers = [int(event.split(b" ")[0]) for event in listener.events[1:]]
            assert numbers == [i for i in range(1, 2001) if i % 7 == index]
        subscriber.shutdown()


# -- the keepalive's rule, on trio's clock -------------------------------------------------


class Pinged:
    """A connection's answers to pings, as :func:`keep_alive` sees them."""

    def __init__(self, *, answers: bool) -> None:
        self.answers = answers
        self.pings: list[float] = []
        self.heard_at = 0.0

    async def ping(self) -> None:
        self.pings.append(trio.current_time())
        if not self.answers:
            await trio.sleep_forever()
        self.heard_at = trio.current_time()


async def test_a_quiet_connection_that_answers_is_pinged_every_15_s_and_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connection = Pinged(answers=True)
    connection.heard_at = trio.current_time()
    start = connection.heard_at
    with trio.move_on_after(100):
        await keep_alive(connection.ping, lambda: connection.heard_at)
    assert [round(at - start) for at in connection.pings] == [15, 30, 45, 60, 75, 90]


async def test_a_connection_with_messages_is_never_pinged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connection = Pinged(answers=False)

    async def messages() -> None:
        while True:
            connection.heard_at = trio.current_time()
            await trio.sleep(14)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(messages)
        with trio.move_on_after(300):
            await keep_alive(connection.ping, lambda: connection.heard_at)
        nursery.cancel_scope.cancel()
    assert connection.pings == []


async def test_a_silent_connection_is_given_up_10_s_after_its_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connection = Pinged(answers=False)
    connection.heard_at = start = trio.current_time()
    with pytest.raises(SilentConnectionError):
        await keep_alive(connection.ping, lambda: connection.heard_at)
    assert [at - start for at in connection.pings] == [15]
    assert trio.current_time() - start == 25


# -- a real half-open connection ----------------------------------------------------------


class FreezingProxy(LocalRelay):
    """Relays 127.0.0.1:<port> to a Redis server. :meth:`freeze` makes every connection
    that has subscribed so far go silent both ways without closing, as a half-open TCP
    connection behind a load balancer does; new connections relay as before."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        #: Per connection: [subscribed, frozen]
        self._connections: list[list[bool]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        for state in self._connections:
            state[1] = state[0]

    async def _relay(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        state = [False, False]
        self._connections.append(state)

        async def relay(source: trio.SocketStream, sink: trio.SocketStream) -> None:
            while chunk := await source.receive_some(1 << 16):
                if b"SUBSCRIBE" in chunk:
                    state[0] = True
                if not state[1]:
                    await sink.send_all(chunk)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(relay, client, upstream)
                nursery.start_soon(relay, upstream, client)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await client.aclose()
            await upstream.aclose()


@asynccontextmanager
async def freezing_proxy(server: RedisServer) -> AsyncIterator[FreezingProxy]:
    proxy = FreezingProxy(server.port)
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve)
        yield proxy
        nursery.cancel_scope.cancel()


async def test_a_half_open_connection_is_replaced_and_its_channels_subscribed_again(
    redis_server: RedisServer,
) -> None:
    direct = command_client(redis_server.url, connections=2, connect_timeout=2)
    async with freezing_proxy(redis_server) as proxy, direct:
        client = command_client(proxy.url, connections=4, connect_timeout=2)
        async with client, trio.open_nursery() as nursery:
            subscriber = Subscriber(
                client, ping_after=0.2, pong_within=2.0
            )  # a busy machine answers late
            nursery.start_soon(subscriber.run)
            listener = Listener()
            subscriber.add(b"log", listener)
            with trio.fail_after(10):
                await listener.wait_for(1, "subscribed")
                await direct.publish("log", b"before")
                await listener.wait_for(1, b"before")
                proxy.freeze()
                # Published into the frozen connection: never delivered there.
                await direct.publish("log", b"lost")
                await listener.wait_for(1, "disconnected")
                await listener.wait_for(2, "subscribed")
                await direct.publish("log", b"after")
                await listener.wait_for(1, b"after")
            assert subscriber.connections_opened == 2
            assert listener.events == [
                "subscribed",
                b"before",
                "disconnected",
                "subscribed",  # the follower reads what it missed from the log now
                b"after",
            ]
            subscriber.shutdown()
