"""Slow and stuck clients over real Hypercorn: they cost their own socket, nothing more."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
import trio
import trio.testing
from hypercorn.trio import serve as hypercorn_serve

from tests.conftest import StartServer
from tests.helpers import read_http_response
from trio_streams.core.manager import SessionManager
from trio_streams.core.producer import StreamWriter
from trio_streams.core.sse import DONE
from trio_streams.http.app import create_app
from trio_streams.producers.demo import DemoModel, DemoRequest
from trio_streams.server import hypercorn_config
from trio_streams.settings import Settings

EVENTS = 240
EVENT = b"data: " + b"x" * 8000 + b"\n\n"
INTERVAL = 1 / 160  # 240 events of 8 kB in 1.5 s: far more than any socket buffer holds
PRODUCER_SECONDS = EVENTS * INTERVAL


class BigEvents(DemoModel):
    """A model whose answer is 2 MB of large events at a fixed pace."""

    def producer(self, request: DemoRequest):  # type: ignore[no-untyped-def, override]
        async def produce(writer: StreamWriter) -> None:
            start = trio.current_time()
            for index in range(EVENTS):
                await trio.sleep_until(start + index * INTERVAL)
                await writer.write(EVENT)
            await writer.write(DONE)

        return produce


@pytest.fixture
async def big_server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, SessionManager]]:
    stop = trio.Event()

    async def shutdown_trigger() -> None:
        await stop.wait()

    async with SessionManager(ping_interval=None) as manager:
        app = create_app(manager, BigEvents())
        config = hypercorn_config(Settings(host="127.0.0.1", port=0))
        binds = await nursery.start(
            partial(hypercorn_serve, app, config, shutdown_trigger=shutdown_trigger)
        )
        yield binds[0], manager
        manager.shutdown()
        stop.set()


async def stuck_reader(url: str, path: str, started: trio.Event, got: list[int]) -> None:
    """Open the stream with a tiny receive buffer, read a little, then never read again."""
    host, port = url.removeprefix("http://").split(":")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        await sock.connect((host, int(port)))
        await sock.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        got.append(len(await sock.recv(1024)))
        started.set()
        await trio.sleep_forever()  # holds the connection open, reads nothing


async def test_a_stuck_reader_slows_neither_the_producer_nor_other_readers(
    big_server: tuple[str, SessionManager],
) -> None:
    url, manager = big_server
    received: dict[str, bytes] = {}
    finished: dict[str, float] = {}
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        trio.open_nursery() as nursery,
    ):
        started_at = trio.current_time()

        async def read(name: str, method: str, path: str, **kwargs: object) -> None:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            received[name] = response.content
            finished[name] = trio.current_time() - started_at

        async with trio.open_nursery() as readers:
            # The session's own response is a reader too.
            readers.start_soon(
                partial(
                    read,
                    "starter",
                    "POST",
                    "/v1/completions",
                    json={"prompt": "big", "stream": True},
                    headers={"X-Conversation-Id": "big"},
                )
            )
            await trio.testing.wait_all_tasks_blocked(cushion=0.02)
            session = manager.get("big")
            assert session is not None
            stuck_started, stuck_got = trio.Event(), []
            nursery.start_soon(stuck_reader, url, "/v1/stream/big", stuck_started, stuck_got)
            await stuck_started.wait()
            for index in range(3):
                readers.start_soon(read, f"follower-{index}", "GET", "/v1/stream/big")
        producer_seconds = session.completed_at_clock - started_at  # type: ignore[operator]
        # Everyone else is done; the stuck reader is still attached, blocked in its send
        # with at most one read chunk in hand (see test_limits), the rest never copied.
        assert session.is_done and session.reader_count == 1
        nursery.cancel_scope.cancel()

    expected = b"".join([chunk async for chunk in session.read(0)])  # the session's bytes
    assert len(expected) > len(EVENT) * EVENTS
    assert set(received) == {"starter", "follower-0", "follower-1", "follower-2"}
    assert all(data == expected for data in received.values())
    assert stuck_got and stuck_got[0] <= 1024
    # The producer kept its own pace with a client that never reads (1.5 s of events)...
    # (A producer blocked by the stuck socket would never finish: the margin is for a
    # loaded CI machine, not for the property.)
    assert producer_seconds < PRODUCER_SECONDS * 1.5 + 0.5, producer_seconds
    # ...and every other reader finished right behind it.
    assert max(finished.values()) < producer_seconds + 1.0, finished
    # Once the stuck client goes away, so does its reader.
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert session.reader_count == 0


async def test_an_early_answer_leaves_the_connection_usable(start_server: StartServer) -> None:
    """A body that arrives after the server could answer (401 here) is read first, so the
    next request on the same keep-alive connection is served (Hypercorn would hang it)."""
    server = await start_server(api_keys=("k",))
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"conversation_ids": []}'
    head = (
        "POST /v1/streams/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    buffer = bytearray()
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        with trio.fail_after(5):
            await stream.send_all(head.encode() + b"\r\n")
            await trio.sleep(0.05)
            await stream.send_all(body)
            first, _ = await read_http_response(stream, buffer)
            await stream.send_all(head.encode() + b"X-Api-Key: k\r\n\r\n" + body)
            second, second_body = await read_http_response(stream, buffer)
    assert first.startswith(b"HTTP/1.1 401")
    assert second.startswith(b"HTTP/1.1 200") and second_body.endswith(b"[]")
