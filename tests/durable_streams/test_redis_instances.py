"""Durable Streams on the Redis store, through two real servers on one Redis: what a
client writes through one instance, a client of the other reads live (long-poll and SSE),
woken through that instance's pub/sub connection; and an instance keeps a fixed number
of Redis connections however many readers wait on it."""

from __future__ import annotations

import json

import coredis
import httpx
import trio

from tests.conftest import StartServer
from tests.helpers import assert_error
from tests.redis_fixtures import RedisServer
from trio_streams.stores.redis.pool import DEFAULT_COMMAND_CONNECTIONS

TEXT = {"Content-Type": "text/plain"}


def stream_url(server_url: str, name: str) -> str:
    return f"{server_url}/ds/v1/stream/{name}"


async def on_two_instances(
    start_server: StartServer, redis: RedisServer, name: str
) -> tuple[str, str]:
    """Stream ``name``'s URL on each of two new servers that share ``redis``."""
    a = await start_server(store=redis.url)
    b = await start_server(store=redis.url)
    return stream_url(a.url, name), stream_url(b.url, name)


async def test_a_stream_written_through_one_instance_is_read_live_through_the_other(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    on_a, on_b = await on_two_instances(start_server, redis_server, "chat/1")
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.put(on_a, headers=TEXT, content=b"hello")
        assert created.status_code == 201
        tail = created.headers["Stream-Next-Offset"]
        caught_up = await http.get(on_b, params={"offset": "-1"})
        assert (caught_up.status_code, caught_up.content) == (200, b"hello")
        assert caught_up.headers["Stream-Next-Offset"] == tail

        polled: list[httpx.Response] = []

        async def long_poll() -> None:
            polled.append(await http.get(on_b, params={"offset": tail, "live": "long-poll"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            await trio.sleep(0.3)  # B's reader is waiting: nothing is there yet
            assert polled == []
            appended = await http.post(on_a, headers=TEXT, content=b" world")
            assert appended.status_code == 204
        [answer] = polled
        assert (answer.status_code, answer.content) == (200, b" world")
        assert answer.headers["Stream-Next-Offset"] == appended.headers["Stream-Next-Offset"]

        # SSE on B from the start: the bytes so far, then A's append, then A's close.
        events: list[tuple[str, str]] = []
        seen_append = trio.Event()

        async def follow() -> None:
            params = {"offset": "-1", "live": "sse"}
            async with http.stream("GET", on_b, params=params) as response:
                assert response.status_code == 200
                kind = ""
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        kind = line[len("event:") :].strip()
                    elif line.startswith("data:"):
                        events.append((kind, line[len("data:") :]))
                        if kind == "data" and "again" in line:
                            seen_append.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.3)
            await http.post(on_a, headers=TEXT, content=b" again")
            await seen_append.wait()
            closed = await http.post(on_a, headers={"Stream-Closed": "true"})
            assert closed.status_code == 204
        data = "".join(payload for kind, payload in events if kind == "data")
        assert data == "hello world again"
        last_control = json.loads([p for kind, p in events if kind == "control"][-1])
        assert last_control["streamClosed"] is True


async def test_an_instance_keeps_a_few_redis_connections_however_many_readers_wait(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    server = await start_server(store=redis_server.url)
    streams, readers_per_stream = 50, 4
    async with (
        httpx.AsyncClient(
            timeout=60, limits=httpx.Limits(max_connections=streams * readers_per_stream + 10)
        ) as http,
        coredis.Redis.from_url(redis_server.url) as redis,
    ):
        for index in range(streams):
            created = await http.put(stream_url(server.url, f"many/{index}"), headers=TEXT)
            assert created.status_code == 201
        tail = created.headers["Stream-Next-Offset"]
        answers: list[bytes] = []

        async def long_poll(name: str) -> None:
            params = {"offset": tail, "live": "long-poll"}
            answers.append((await http.get(stream_url(server.url, name), params=params)).content)

        async with trio.open_nursery() as nursery:
            for index in range(streams):
                for _ in range(readers_per_stream):
                    nursery.start_soon(long_poll, f"many/{index}")
            await trio.sleep(1.0)  # all are waiting
            clients = await redis.client_list()
            assert answers == []
            for index in range(streams):
                await http.post(stream_url(server.url, f"many/{index}"), headers=TEXT, content=b"!")
        assert answers == [b"!"] * (streams * readers_per_stream)
    # This test's own connection, plus the instance's: its pub/sub connections and its
    # few multiplexed command connections, whatever the number of readers and streams.
    instance = [client for client in clients if client.get("name", "").startswith("trio-streams")]
    assert len(clients) == len(instance) + 1
    assert len(instance) <= DEFAULT_COMMAND_CONNECTIONS, clients


async def test_redis_down_is_a_503_in_the_project_s_shape_and_back_up_serves_again(
    start_server: StartServer, persistent_redis_server: RedisServer
) -> None:
    server = await start_server(store=persistent_redis_server.url)
    url = stream_url(server.url, "outage")
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.put(url, headers=TEXT, content=b"kept")).status_code == 201
        persistent_redis_server.stop()
        for response in (
            await http.get(url, params={"offset": "-1"}),
            await http.post(url, headers=TEXT, content=b"x"),
            await http.put(stream_url(server.url, "new"), headers=TEXT),
        ):
            assert_error(response, 503, "Session store unavailable", "unavailable_error")
        persistent_redis_server.start()
        for _ in range(50):  # the pool reconnects on the next command
            response = await http.get(url, params={"offset": "-1"})
            if response.status_code == 200:
                break
            await trio.sleep(0.1)
        assert (response.status_code, response.content) == (200, b"kept")


async def test_an_sse_reader_rides_out_a_redis_restart(
    start_server: StartServer, persistent_redis_server: RedisServer
) -> None:
    on_a, on_b = await on_two_instances(start_server, persistent_redis_server, "restart")
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.put(on_a, headers=TEXT, content=b"before ")).status_code == 201
        data: list[str] = []
        got_after = trio.Event()

        async def follow() -> None:
            async with http.stream("GET", on_b, params={"offset": "-1", "live": "sse"}) as r:
                kind = ""
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        kind = line[len("event:") :].strip()
                    elif line.startswith("data:") and kind == "data":
                        data.append(line[len("data:") :])
                        if "after" in line:
                            got_after.set()
                            return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.sleep(0.3)  # following, waiting at the tail
            persistent_redis_server.stop()
            await trio.sleep(0.5)  # the reader waits the outage out
            persistent_redis_server.start()
            for _ in range(50):
                if (await http.post(on_a, headers=TEXT, content=b"after")).status_code == 204:
                    break
                await trio.sleep(0.1)
            with trio.fail_after(20):
                await got_after.wait()
    assert "".join(data) == "before after"
