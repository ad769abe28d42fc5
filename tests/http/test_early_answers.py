"""An answer sent before the request's body has all arrived (``413`` to a large upload), on
a real socket: the client reads the whole answer, never a reset, and the connection stays
usable once its upload is done. Hypercorn closes a connection whose request body is still
arriving when the response ends, and closing a socket with unread bytes resets it, which
can throw away the answer the client has not read yet (Node's ``fetch failed``)."""

from __future__ import annotations

import json

import trio

from tests.conftest import StartServer

UPLOAD = 8 * 1024 * 1024
LIMIT = 1000


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes]:
    """One response with a ``content-length`` from ``stream`` (what follows stays in
    ``buffer``); EOF or a reset before it is complete fails the test."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        assert data, f"the connection closed before the answer's head: {bytes(buffer)!r}"
        buffer += data
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[: len(head) + 4]
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:")
    )
    while len(buffer) < length:
        data = await stream.receive_some(65536)
        assert data, "the connection closed in the middle of the answer's body"
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return status, body


async def test_a_413_reaches_a_client_still_uploading_and_the_connection_stays_usable(
    start_server: StartServer,
) -> None:
    server = await start_server(max_body_bytes=LIMIT)
    stream = await trio.open_tcp_stream(*host_port(server.url))
    buffer = bytearray()
    async with stream:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            f"Content-Type: application/json\r\nContent-Length: {UPLOAD}\r\n\r\n"
        )
        await stream.send_all(head.encode())
        answer: list[tuple[int, bytes]] = []

        async def read_the_answer() -> None:
            answer.append(await read_response(stream, buffer))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_the_answer)
            # The whole upload, in pieces, while the answer may already be on its way.
            piece = b" " * 65536
            for _ in range(UPLOAD // len(piece)):
                await stream.send_all(piece)
        status, body = answer[0]
        assert status == 413
        assert json.loads(body)["error"]["type"] == "invalid_request_error"
        # The upload is done: the same connection serves the next request.
        await stream.send_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        status, body = await read_response(stream, buffer)
        assert status == 200, body
