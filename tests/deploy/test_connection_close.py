"""A client that asks for the connection to be closed gets it closed after the response.

HTTP/1.0 has no chunked encoding: a stream's body ends when the server closes the
connection (nginx speaks HTTP/1.0 to its upstreams unless told otherwise). Under
Quart-Trio, Hypercorn's close could be cancelled half-way, leaving such a reader waiting;
at shutdown, the same cancelled close kept a client's idle connection open.
"""

from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
import trio

from tests.conftest import StartServer
from tests.helpers import chat_body, ends_with_done
from trio_streams.core.end_reasons import EndReason, end_event
from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings


async def read_until_closed(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


@pytest.mark.parametrize(
    ("request_line", "headers", "ending"),
    [
        # The stream's bytes, then the close that ends them.
        (b"GET /v1/stream/C?from=0 HTTP/1.0", b"", b""),
        # Chunked: the last chunk, then the close.
        (b"GET /v1/stream/C?from=0 HTTP/1.1", b"Connection: close\r\n", b"\r\n0\r\n\r\n"),
        (b"GET /health HTTP/1.1", b"Connection: close\r\n", b'"status":"ok"'),
    ],
)
async def test_the_server_closes_when_asked(
    start_server: StartServer, request_line: bytes, headers: bytes, ending: bytes
) -> None:
    server = await start_server()
    async with httpx.AsyncClient(base_url=server.url) as client:
        finished = await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=5),
            headers={"X-Conversation-Id": "C"},
        )
    assert ends_with_done(finished.content)
    port = int(server.url.rsplit(":", 1)[1])
    data = await read_until_closed(port, request_line + b"\r\nHost: x\r\n" + headers + b"\r\n")
    assert data.startswith(b"HTTP/1.1 200")
    assert (ending or finished.content) in data  # and then the server closed


async def test_at_shutdown_a_kept_alive_connection_is_closed_after_its_stream_ends() -> None:
    """SIGTERM (``stop``) finalizes the stream; its response ends, then Hypercorn closes the
    connection the client kept alive, at once, not after the graceful timeout (60 s here:
    before the final send was shielded, the close was cancelled and the server waited it
    out, so a plain ``trio-streams serve`` took 3 s to exit with a client connected)."""
    stop = trio.Event()
    settings = Settings(host="127.0.0.1", port=0, demo_tps=50, graceful_timeout=60)
    body = json.dumps(chat_body(max_tokens=100_000)).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Conversation-Id: kept-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server: RunningServer = await nursery.start(partial(serve, settings, stop=stop))
            port = int(server.url.rsplit(":", 1)[1])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(request)
                data = await stream.receive_some(65536)
                assert data.startswith(b"HTTP/1.1 200")
                assert b"connection: close" not in data.lower()  # kept alive
                stop.set()
                while chunk := await stream.receive_some(65536):
                    data += chunk
            # The stream ended as shut down (its end event, then the last chunk), then the
            # server closed the connection, and serve() returned.
    assert data.endswith(b"\r\n0\r\n\r\n")
    assert end_event(EndReason.SHUTDOWN) in data
