"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import trio

from trio_streams.core.end_reasons import split_end_event
from trio_streams.testing.server import StreamsServer
from trio_streams.testing.sockets import serve_on_free_port

__all__ = ["serve_on_free_port"]


def http_client(server: Any, **options: Any) -> httpx.AsyncClient:
    """An httpx client of ``server``: a real one's URL, or an in-process one's transport."""
    if isinstance(server, StreamsServer):
        return server.http(**options)
    return httpx.AsyncClient(base_url=server.url, **options)


def openai_sdk(url: str) -> openai.OpenAI:
    """The OpenAI SDK's client of the server at ``url`` (its ``/v1``), as an application
    would make it but without retries: a test sees each answer as the server gave it."""
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def chat_body(prompt: str = "tell me about streams", **extra: Any) -> dict[str, Any]:
    return {
        "model": "demo",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE byte stream, in order (comments skipped)."""
    events = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    return events


_EVENT_ID_LINE = re.compile(rb"^id: (?:[0-9a-f]{16}-)?[0-9]+\n", re.MULTILINE)


def without_event_ids(raw: bytes) -> bytes:
    """``raw`` without the ``id: G-N`` lines the session writer stamps (LF streams only)."""
    return _EVENT_ID_LINE.sub(b"", raw)


def event_offset(event_id: str | bytes) -> int:
    """The byte offset an event id names (``<generation>-<offset>`` or a plain offset)."""
    text = event_id.decode() if isinstance(event_id, bytes) else event_id
    return int(text.strip().rsplit("-", 1)[-1])


def event_generation(event_id: str | bytes) -> str:
    """The generation an event id names."""
    text = event_id.decode() if isinstance(event_id, bytes) else event_id
    return text.strip().rsplit("-", 1)[0]


def split_end(raw: bytes) -> tuple[bytes, str | None]:
    """A reader's body as (the session's bytes, the reason of its end event or None).

    The end event (``: end <reason>`` then an error ``data:`` line) is told to a reader
    after the log's bytes; it is not part of the log and moves no offset.
    """
    stream, reason = split_end_event(raw)
    if reason is None:
        return raw, None
    payload = json.loads(raw[len(stream) :].split(b"data: ", 1)[1])
    assert payload["error"]["reason"] == reason.value, payload
    return stream, reason.value


def ends_with_done(raw: bytes) -> bool:
    """The stream's last event is the OpenAI ``[DONE]`` sentinel."""
    return raw.endswith(b"\n\n") and sse_data(raw)[-1:] == ["[DONE]"]


def chat_text(raw: bytes) -> str:
    """The assistant text carried by a chat completion SSE stream."""
    text = []
    for data in sse_data(raw):
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            text.append(choice.get("delta", {}).get("content") or choice.get("text") or "")
    return "".join(text)


def assert_error(response: httpx.Response, status: int, message: str, error_type: str) -> None:
    """The documented error shape, with the exact status, message prefix and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    error = response.json()["error"]
    assert error["code"] == status
    assert error["message"].startswith(message), error["message"]
    assert error["type"] == error_type


async def read_http_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a ``content-length`` read off a raw ``stream``: its head
    (status line and headers) and its body. Bytes past it stay in ``buffer`` for the next
    one; EOF or a reset before it is complete fails the test."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        assert data, f"the connection closed before the answer's head: {bytes(buffer)!r}"
        buffer += data
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    del buffer[: len(head) + 4]
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(buffer) < length:
        data = await stream.receive_some(65536)
        assert data, "the connection closed in the middle of the answer's body"
        buffer += data
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body
