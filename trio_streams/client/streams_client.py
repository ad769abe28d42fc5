"""A Python client that resumes by itself, for trio and asyncio alike.

It is built on httpx and anyio, so the same code runs under ``trio.run`` and
``asyncio.run``. It counts the bytes it has yielded; when the connection fails (a network
error, a cut in the middle of a chunk, a read timeout on a stalled connection) it waits
with exponential backoff and reads ``GET /v1/stream?conv_id=C&generation=G&from=<that
count>``: the bytes it yields are exactly the session's bytes, none lost and none twice.
The resume is pinned to the generation it started reading (``X-Stream-Generation``), so a
regenerate meanwhile raises :class:`StreamReplaced` instead of splicing the new answer on.

How a stream ended is told by exceptions: it returns normally when the answer is complete,
and raises :class:`StreamStopped` (DELETE, from anywhere), :class:`StreamReplaced`,
:class:`StreamEvicted` or :class:`StreamFailed` (the producer failed); a server shutting
down makes it resume, like a cut connection.

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

from trio_streams.core.address import DEFAULT_URL
from trio_streams.core.end_reasons import EndReason, parse_end_comment
from trio_streams.core.session_info import SessionInfo
from trio_streams.core.sse_events import SSEEventSplitter
from trio_streams.core.sse_split import Event, EventSplitter, parse_event

CONVERSATION_HEADER = "X-Conversation-Id"
#: The response header naming the generation a stream response reads.
GENERATION_HEADER = "X-Stream-Generation"
#: A stalled connection is given up after this long without a byte; the server sends a
#: keep-alive comment every 5 s of silence by default, so a healthy stream never waits so long.
DEFAULT_READ_TIMEOUT = 30.0
#: Offsets count the bytes of the stream as sent: no content coding in between.
_IDENTITY = {"Accept-Encoding": "identity"}


class StreamError(Exception):
    """The server answered with an error (the JSON shape of the API)."""

    def __init__(
        self, status: int, message: str, error_type: str = "", reason: str | None = None
    ) -> None:
        super().__init__(f"{status} {error_type}: {message}" if error_type else message)
        self.status = status
        self.message = message
        self.error_type = error_type
        #: Why the stream ended (``stopped``, ``replaced``…), when the server said so.
        self.reason = reason


class StreamNotFoundError(StreamError):
    """The conversation has no stream: never started, stopped, or expired."""


class OffsetLostError(StreamError):
    """The bytes to resume from were dropped from the session's capped log."""


class StreamStopped(StreamNotFoundError):
    """A client stopped the stream (DELETE), from this process or anywhere else."""


class StreamEvicted(StreamNotFoundError):
    """The server dropped the stream to make room for newer ones."""


class StreamReplaced(StreamError):
    """A newer request with the same conversation id replaced the stream being read."""


class StreamFailed(StreamError):
    """The stream ended with an error event: its producer (or its upstream) failed."""


def _ended(status: int, message: str, error_type: str, reason: str | None) -> StreamError | None:
    """The exception for a stream that ended for ``reason``; ``None`` for none of ours."""
    kinds: dict[str | None, type[StreamError]] = {
        EndReason.STOPPED: StreamStopped,
        EndReason.EVICTED: StreamEvicted,
        EndReason.REPLACED: StreamReplaced,
    }
    kind = kinds.get(reason)
    return kind(status, message, error_type, reason) if kind is not None else None


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
class StreamInfo(SessionInfo):
    """One entry of ``POST /v1/streams/lookup``: the server's
    :class:`~trio_streams.core.session_info.SessionInfo` read back (one class writes and reads
    the entry's fields)."""


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
    message, error_type, reason = body.decode(errors="replace"), "", None
    try:
        error = json.loads(body)["error"]
        message, error_type = str(error["message"]), str(error["type"])
        reason = error.get("reason")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    status = response.status_code
    ended = _ended(status, message, error_type, reason)
    if ended is not None:
        return ended
    if status == 404:
        return StreamNotFoundError(status, message, error_type)
    if status == 400 and message.startswith("Stream offset lost"):
        return OffsetLostError(status, message, error_type)
    return StreamError(status, message, error_type)


def _end_error(reason: EndReason) -> StreamError:
    """The exception for an end event the server sent after the stream's bytes."""
    messages = {
        EndReason.STOPPED: (404, "stream stopped: a client stopped it (DELETE)"),
        EndReason.REPLACED: (409, "stream replaced: a newer request took its conversation id"),
        EndReason.EVICTED: (404, "stream evicted: the server needed its memory"),
        EndReason.EXPIRED: (404, "stream expired"),
    }
    status, message = messages.get(reason, (500, f"stream ended: {reason}"))
    ended = _ended(status, message, f"stream_{reason}", reason)
    return ended or StreamNotFoundError(status, message, f"stream_{reason}", reason)


def _raise_if_failed(last_event: bytes) -> None:
    """Raise :class:`StreamFailed` if the stream's last event is an error event."""
    data = parse_event(last_event, 0).data if last_event else None
    if not data or not data.startswith("{"):
        return
    try:
        error = json.loads(data).get("error")
    except ValueError:
        return
    if isinstance(error, dict):
        raise StreamFailed(
            int(error.get("code") or 500),
            str(error.get("message", "stream failed")),
            str(error.get("type", "")),
            EndReason.FAILED,
        )


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

    def _stream_url(
        self, conversation_id: str, offset: int | None = None, generation: str | None = None
    ) -> str:
        # The query form: ids may contain "/" (conv::org/model:Q8_0).
        params: dict[str, str | int] = {"conv_id": conversation_id}
        if generation:
            params["generation"] = generation
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
        return [StreamInfo.from_json(item) for item in response.json()]

    async def stop(self, conversation_id: str) -> None:
        """Cancel the stream's producer on the server (DELETE; idempotent)."""
        response = await self._http.delete(self._stream_url(conversation_id), headers=self._headers)
        if response.status_code != 204:
            raise _error_from(response, response.content)

    # -- streams ---------------------------------------------------------------------------

    async def iter_bytes(
        self, conversation_id: str, offset: int = 0, *, generation: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The stream's bytes from ``offset`` on, resuming across network errors.

        The bytes come in whole events (an event cut by a lost connection is read again
        whole). ``generation`` pins the read to one generation (from a lookup); without
        it, the first response's generation is pinned for every resume.

        Ends when the answer is complete. Raises :class:`StreamNotFoundError`,
        :class:`OffsetLostError` (or :class:`StreamError`) if resuming is impossible, and
        :class:`StreamStopped`, :class:`StreamReplaced`, :class:`StreamEvicted` or
        :class:`StreamFailed` when the stream ended without its answer.
        """
        follow = self._follow(conversation_id, offset, first=None, generation=generation)
        async with aclosing(follow) as chunks:
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

        follow = self._follow(conversation_id, 0, first=first, generation=None)
        async with aclosing(follow) as chunks:
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
        generation: str | None,
    ) -> AsyncGenerator[bytes, None]:
        """Yield whole events' bytes from ``offset``, reconnecting with
        ``?generation=<pinned>&from=<offset>`` on failures.

        ``first`` optionally opens the first response itself (the completion request);
        it returns ``None`` when the stream must be read from the session instead. The
        end event a server tells a reader after the log's bytes is never yielded: it
        ends the stream, raises, or (shutdown) makes it resume.
        """
        attempt = 0
        last: bytes = b""  # the last event yielded: an error event there is a failure
        while True:
            splitter = SSEEventSplitter()  # a cut event is read again whole on resume
            try:
                response = await first() if first is not None else None
                if response is None:
                    first = None
                    response = await self._http.send(
                        self._http.build_request(
                            "GET",
                            self._stream_url(conversation_id, offset, generation),
                            headers={**self._headers, **_IDENTITY},
                        ),
                        stream=True,
                    )
                ending: EndReason | None = None
                try:
                    if response.status_code != 200:
                        error = _error_from(response, await response.aread())
                        if not _retryable(error):
                            raise error
                        attempt += 1
                        await self._pause(attempt, offset, error)
                        continue  # a refused completion request is sent again
                    first = None
                    generation = generation or response.headers.get(GENERATION_HEADER)
                    async for chunk in response.aiter_raw():
                        for event in splitter.feed(chunk):
                            ending = parse_end_comment(event)
                            if ending is not None:
                                break
                            offset += len(event)
                            attempt = 0
                            last = event
                            yield event
                        if ending is not None:
                            break
                    if ending is None:
                        rest = b"".join(splitter.flush()) + splitter.finish()
                        ending = parse_end_comment(rest)
                        if rest and ending is None:
                            offset += len(rest)
                            last = rest
                            yield rest
                finally:
                    await response.aclose()
                if ending is EndReason.SHUTDOWN:  # resume elsewhere (or after the restart)
                    attempt += 1
                    await self._pause(attempt, offset, ConnectionError("server shutting down"))
                    continue
                if ending is not None:
                    raise _end_error(ending)
                _raise_if_failed(last)
                return  # the answer is complete
            except httpx.TransportError as error:
                attempt += 1
                await self._pause(attempt, offset, error)
