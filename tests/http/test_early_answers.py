"""An answer sent before the request's body has all arrived (``413`` to a large upload), on
a real socket: the client reads the whole answer, never a reset, and the connection stays
usable once its upload is done. Hypercorn closes a connection whose request body is still
arriving when the response ends, and closing a socket with unread bytes resets it, which
can throw away the answer the client has not read yet (Node's ``fetch failed``)."""

from __future__ import annotations

import json

import httpx
import trio

from tests.conftest import StartServer
from tests.helpers import read_http_response

UPLOAD = 8 * 1024 * 1024
LIMIT = 1000


async def test_a_413_reaches_a_client_still_uploading_and_the_connection_stays_usable(
    start_server: StartServer,
) -> None:
    server = await start_server(max_body_bytes=LIMIT)
    url = httpx.URL(server.url)
    stream = await trio.open_tcp_stream(url.host, url.port)
    buffer = bytearray()
    async with stream:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            f"Content-Type: application/json\r\nContent-Length: {UPLOAD}\r\n\r\n"
        )
        await stream.send_all(head.encode())
        answer: list[tuple[bytes, bytes]] = []

        async def read_the_answer() -> None:
            answer.append(await read_http_response(stream, buffer))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_the_answer)
            # The whole upload, in pieces, while the answer may already be on its way.
            piece = b" " * 65536
            for _ in range(UPLOAD // len(piece)):
                await stream.send_all(piece)
        head, body = answer[0]
        assert head.startswith(b"HTTP/1.1 413 ")
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        # The upload is done: the same connection serves the next request.
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        head, body = await read_http_response(stream, buffer)
        assert head.startswith(b"HTTP/1.1 200 "), body
