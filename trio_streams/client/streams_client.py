"""A Python client that resumes by itself, for trio and asyncio alike.

It is built on httpx and anyio, so the same code runs under ``trio.run`` and
``asyncio.run``. It counts the bytes it has yielded; when the connection fails (a network
error, a cut in the middle of a chunk, a read timeout on a stalled connection) it waits
with exponential backoff and reads ``GET /v1/stream/C?from=<that count>``: the bytes it
yields are exactly the session's bytes, none lost and none twice.

::

    async with StreamsClient("http://127.0.0.1:8080") as client:
        async for event in client.chat("my-chat", {"messages": [...]}):
            print(chunk_text(event), end="")

Each stream method is an async generator: if you stop iterating early, close it (``async
with contextlib.aclosing(...)``) so its connection is released at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from trio_streams.core.sse_split import Event, EventSplitter

CONVERSATION_HEADER = "X-Conversation-Id"
DEFAULT_URL = "http://127.0.0.1:8080"
#: A stalled connection is given up after this long without a byte; the server sends a
#: keep-alive comment every 5 s of silence by default, so a healthy stream never waits so long.
DEFAULT_READ_TIMEOUT = 30.0
#: Offsets count the bytes of the stream as sent: no content coding in between.
_IDENTITY = {"Accept-Encoding": "identity"}


class StreamError(Exception):
    """The server answered with an error (the JSON shape of the API)."""

    def __init__(self, status: int, message: str, error_type: str = "") -> None:
        super().__init__(f"{status} {error_type}: {message}" if error_type else message)
        self.status = status
        self.message = message
        self.error_type = error_type


class StreamNotFoundError(StreamError):
    """The conversation has no stream: never started, stopped, or expired."""


class OffsetLostError(StreamError):
    """The bytes to resume from were dropped from the session's capped log."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between reconnect attempts.

    The delay before attempt ``n`` (1-based, counted since the last byte received) is
    ``min(first * factor ** (n - 1), maximum)``, times a random factor in [0.5, 1] so
    that many clients cut at once do not come back at once.
    """

    first: float = 0.1
    factor: float = 2.0
    maximum: float = 5.0
    #: Give up after this many consecutive failed attempts (``None``: never).
    attempts: int | None = None

    def delay(self, attempt: int) -> float:
        base = min(self.first * self.factor ** (attempt - 1), self.maximum)
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One entry of ``POST /v1/streams/lookup``."""

    conversation_id: str
    is_done: bool
    total_bytes: int
    started_at: int
    completed_at: int


#: Called before each reconnect with (offset to resume from, delay in seconds, the error).
ReconnectHook = Callable[[int, float, Exception], None]


def chunk_text(event: Event) -> str:
    """The text an OpenAI streaming chunk carries (chat ``delta.content`` or ``text``)."""
    if event.data is None or event.data == "[DONE]":
        return ""
    try:
        chunk = json.loads(event.data)
    except ValueError:
        return ""
    if not isinstance(chunk, dict):
        return ""
    parts = []
    for choice in chunk.get("choices") or []:
        if isinstance(choice, dict):
            delta = choice.get("delta")
            content = delta.get("content") if isinstance(delta, dict) else None
            parts.append(content or choice.get("text") or "")
    return "".join(part for part in parts if isinstance(part, str))


def _error_from(response: httpx.Response, body: bytes) -> StreamError:
    message, error_type = body.decode(errors="replace"), ""
    try:
        error = json.loads(body)["error"]
        message, error_type = str(error["message"]), str(error["type"])
    except (ValueError, KeyError, TypeError):
        pass
    status = response.status_code
    if status == 404:
        return StreamNotFoundError(status, message, error_type)
    if status == 400 and message.startswith("Stream offset lost"):
        return OffsetLostError(status, message, error_type)
    return StreamError(status, message, error_type)


def _retryable(error: StreamError) -> bool:
    """Overload and shutdown (429, 5xx) may pass; a 4xx answer will not change."""
    return error.status == 429 or error.status >= 500


class StreamsClient:
    """Resumable streams of one trio-streams server.

    Pass ``http`` to share your own :class:`httpx.AsyncClient` (URLs are built from
    ``base_url`` here); otherwise one is made, and closed by ``aclose`` / ``async with``.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        http: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        on_reconnect: ReconnectHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        timeout = httpx.Timeout(10.0, read=read_timeout)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._headers = dict(headers or {})
        self.backoff = backoff or Backoff()
        self.on_reconnect = on_reconnect

    async def __aenter__(self) -> StreamsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _url(self, path: str) -> str:
        return self.base_url + path

    def _stream_url(self, conversation_id: str, offset: int | None = None) -> str:
        # The query form: ids may contain "/" (conv::org/model:Q8_0).
        params: dict[str, str | int] = {"conv_id": conversation_id}
        if offset is not None:
            params["from"] = offset
        return self._url("/v1/stream?" + urlencode(params))

    # -- one-shot calls --------------------------------------------------------------------

    async def lookup(self, *conversation_ids: str) -> list[StreamInfo]:
        """The named streams (and their ``::`` variants) the server still has."""
        response = await self._http.post(
            self._url("/v1/streams/lookup"),
            json={"conversation_ids": list(conversation_ids)},
            headers=self._headers,
        )
        if response.status_code != 200:
            raise _error_from(response, response.content)
        return [
            StreamInfo(
                conversation_id=str(item["conversation_id"]),
                is_done=bool(item["is_done"]),
                total_bytes=int(item["total_bytes"]),
                started_at=int(item["started_at"]),
                completed_at=int(item["completed_at"]),
            )
            for item in response.json()
        ]

    async def stop(self, conversation_id: str) -> None:
        """Cancel the stream's producer on the server (DELETE; idempotent)."""
        response = await self._http.delete(self._stream_url(conversation_id), headers=self._headers)
        if response.status_code != 204:
            raise _error_from(response, response.content)

    # -- streams ---------------------------------------------------------------------------

    async def iter_bytes(
        self, conversation_id: str, offset: int = 0
    ) -> AsyncGenerator[bytes, None]:
        """The stream's bytes from ``offset`` on, resuming across network errors.

        Ends when the server ends the stream. Raises :class:`StreamNotFoundError`,
        :class:`OffsetLostError` (or :class:`StreamError`) if resuming is impossible.
        """
        async with aclosing(self._follow(conversation_id, offset, first=None)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def events(self, conversation_id: str, offset: int = 0) -> AsyncGenerator[Event, None]:
        """The stream's whole SSE events from ``offset`` (an event boundary) on."""
        splitter = EventSplitter(offset)
        async with aclosing(self.iter_bytes(conversation_id, offset)) as chunks:
            async for chunk in chunks:
                for event in splitter.feed(chunk):
                    yield event
        for event in splitter.flush():
            yield event

    async def start_bytes(
        self,
        conversation_id: str,
        body: dict[str, Any],
        *,
        path: str = "/v1/chat/completions",
    ) -> AsyncGenerator[bytes, None]:
        """Start (or replace) a stream with a completion request, then follow it.

        The request is sent once; if its response is cut, the rest is read from the
        session. If the request failed before any answer, a lookup tells whether the
        server got it: if so the stream is followed, if not the request is sent again.
        Use a new conversation id per request, so an old stream is never taken for it.
        """
        body = {**body, "stream": True}
        headers = {**self._headers, **_IDENTITY, CONVERSATION_HEADER: conversation_id}

        async def first() -> httpx.Response | None:
            attempt = 0
            while True:
                request = self._http.build_request(
                    "POST", self._url(path), json=body, headers=headers
                )
                try:
                    return await self._http.send(request, stream=True)
                except httpx.TransportError as error:
                    attempt += 1
                    await self._pause(attempt, 0, error)
                if await self._lookup_retrying(conversation_id):
                    return None  # the server got the request: follow the session

        async with aclosing(self._follow(conversation_id, 0, first=first)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def chat(
        self, conversation_id: str, body: dict[str, Any], *, path: str = "/v1/chat/completions"
    ) -> AsyncGenerator[Event, None]:
        """:meth:`start_bytes` as whole SSE events."""
        splitter = EventSplitter(0)
        async with aclosing(self.start_bytes(conversation_id, body, path=path)) as chunks:
            async for chunk in chunks:
                for event in splitter.feed(chunk):
                    yield event
        for event in splitter.flush():
            yield event

    # -- internals -------------------------------------------------------------------------

    async def _lookup_retrying(self, conversation_id: str) -> bool:
        """Whether the server has the stream, asking again after network errors."""
        attempt = 0
        while True:
            try:
                return bool(await self.lookup(conversation_id))
            except httpx.TransportError as error:
                attempt += 1
                await self._pause(attempt, 0, error)

    async def _pause(self, attempt: int, offset: int, error: Exception) -> None:
        if self.backoff.attempts is not None and attempt > self.backoff.attempts:
            raise error
        delay = self.backoff.delay(attempt)
        if self.on_reconnect is not None:
            self.on_reconnect(offset, delay, error)
        await anyio.sleep(delay)

    async def _follow(
        self,
        conversation_id: str,
        offset: int,
        *,
        first: Callable[[], Awaitable[httpx.Response | None]] | None,
    ) -> AsyncGenerator[bytes, None]:
        """Yield bytes from ``offset``, reconnecting with ``?from=<offset>`` on failures.

        ``first`` optionally opens the first response itself (the completion request);
        it returns ``None`` when the stream must be read from the session instead.
        """
        attempt = 0
        while True:
            try:
                response = await first() if first is not None else None
                if response is None:
                    first = None
                    response = await self._http.send(
                        self._http.build_request(
                            "GET",
                            self._stream_url(conversation_id, offset),
                            headers={**self._headers, **_IDENTITY},
                        ),
                        stream=True,
                    )
                try:
                    if response.status_code != 200:
                        error = _error_from(response, await response.aread())
                        if not _retryable(error):
                            raise error
                        attempt += 1
                        await self._pause(attempt, offset, error)
                        continue  # a refused completion request is sent again
                    first = None
                    async for chunk in response.aiter_raw():
                        offset += len(chunk)
                        attempt = 0
                        yield chunk
                finally:
                    await response.aclose()
                return  # the server ended the stream: the session is finalized
            except httpx.TransportError as error:
                attempt += 1
                await self._pause(attempt, offset, error)
