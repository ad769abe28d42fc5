"""The producer that relays an upstream's SSE answer into a session, event by event.

The upstream request is made inside the producer, so it runs under the session's cancel
scope: DELETE, replacement and shutdown close the upstream connection at once, and a
client that walks away (with a conversation id) leaves it running.

Until the upstream answers, the HTTP handler cannot know which status to send. The
producer tells it through an :class:`UpstreamHandoff`: either "it streams" (the handler
answers ``200`` and reads the session) or a whole :class:`UpstreamReply` (an error, or a
non-streaming answer), which the handler returns as is and the session is discarded. A
handler does not wait forever: after one keep-alive interval of upstream silence (a long
prefill on a server that only sends its headers with the first token) it commits to the
stream, so its client sees the ``: ping`` comments; a failure after that arrives as an
SSE error event instead of a status.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import httpx
import trio

from trio_streams.core.errors import JSON_CONTENT_TYPE, SERVER_ERROR, error_body
from trio_streams.core.producer import StreamWriter
from trio_streams.core.sse import data_event, error_event
from trio_streams.core.sse_events import SSEEventSplitter
from trio_streams.producers.upstream.client import UpstreamClient, response_headers

logger = logging.getLogger("trio_streams")


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What is sent upstream: the client's method and body bytes, filtered headers."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    """A whole HTTP answer for the client: the upstream's, or a 502/504 of our own."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def as_error_event(self) -> bytes:
        """The same failure, in-band, for a client that already got its ``200``."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            return data_event(payload)
        if self.status < 400:
            return error_event("the upstream answered without an event stream", SERVER_ERROR, 502)
        message = payload.get("message") if isinstance(payload, dict) else None
        text = message if isinstance(message, str) else f"the upstream answered {self.status}"
        return error_event(text, SERVER_ERROR, self.status)


def own_error(status: int, message: str) -> UpstreamReply:
    body = json.dumps(error_body(status, message, SERVER_ERROR), separators=(",", ":"))
    return UpstreamReply(status, [("Content-Type", JSON_CONTENT_TYPE)], body.encode())


def gateway_error(exc: httpx.TransportError) -> UpstreamReply:
    """``504`` for a timeout, ``502`` for anything else that kept the upstream from answering."""
    if isinstance(exc, httpx.TimeoutException):
        return own_error(504, f"The upstream model server timed out ({type(exc).__name__})")
    return own_error(502, f"The upstream model server is unreachable ({type(exc).__name__})")


def reply_from(response: httpx.Response, body: bytes) -> UpstreamReply:
    """The upstream's answer, passed on unchanged unless it is an error that is not JSON."""
    if response.status_code >= 400 and not _is_json(body):
        excerpt = body[:200].decode("utf-8", "replace")
        return own_error(
            502, f"The upstream answered {response.status_code} with a non-JSON body: {excerpt}"
        )
    return UpstreamReply(response.status_code, response_headers(response), body)


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "")
    return response.is_success and content_type.lower().startswith("text/event-stream")


class UpstreamHandoff:
    """One-shot message from the producer to the HTTP handler waiting for the status."""

    def __init__(self) -> None:
        self._decided = trio.Event()
        self._reply: UpstreamReply | None = None
        # The handler answered (200, or left): a reply can no longer become the response.
        self._committed = False

    def commit(self) -> None:
        """Nobody will wait for a reply (a background response): the producer writes any
        failure into the stream as an error event instead."""
        self._committed = True

    def stream(self) -> None:
        """The answer is (or, after a cancel, ends as) the session's stream."""
        self._decided.set()

    def reply(self, reply: UpstreamReply) -> bool:
        """Offer a whole answer; ``False`` if the handler already committed to the stream."""
        if self._committed or self._decided.is_set():
            return False
        self._reply = reply
        self._decided.set()
        return True

    async def wait(self, commit_after: float | None) -> UpstreamReply | None:
        """The reply to return, or ``None`` to stream. Waits ``commit_after`` s at most."""
        try:
            with trio.move_on_after(commit_after or math.inf):
                await self._decided.wait()
        finally:
            self._committed = True
        return self._reply


class UpstreamStreamProducer:
    """Relays one streaming upstream request; a :data:`~trio_streams.core.producer.Producer`."""

    def __init__(
        self, client: UpstreamClient, request: UpstreamRequest, handoff: UpstreamHandoff
    ) -> None:
        self._client = client
        self._request = request
        self._handoff = handoff

    async def __call__(self, writer: StreamWriter) -> None:
        try:
            await self._relay(writer)
        finally:
            # Cancelled (DELETE, shutdown) or failed before the upstream answered: the
            # handler must not wait on; it streams whatever the session holds.
            self._handoff.stream()

    async def _relay(self, writer: StreamWriter) -> None:
        request = self._request
        splitter = SSEEventSplitter()
        streaming = False
        try:
            async with self._client.http.stream(
                request.method, request.url, headers=request.headers, content=request.body
            ) as response:
                if not is_event_stream(response):
                    await self._answer(writer, reply_from(response, await response.aread()))
                    return
                streaming = True
                self._handoff.stream()
                async for chunk in response.aiter_raw():
                    if events := splitter.feed(chunk):
                        # All that one read brought, in one write: readers wake once and
                        # send it in one write too (the upstream was faster than us).
                        await writer.write(b"".join(events))
        except httpx.TransportError as exc:
            if not streaming:
                await self._answer(writer, gateway_error(exc))
                return
            # Mid-stream: keep every whole event already relayed, drop the cut-off one,
            # and end the stream with an error a client (or an OpenAI SDK) can see.
            timed_out = isinstance(exc, httpx.TimeoutException)
            logger.warning("upstream stream ended early: %s", type(exc).__name__)
            message = (
                f"The upstream model server stopped sending ({type(exc).__name__})"
                if timed_out
                else f"The upstream connection was lost mid-stream ({type(exc).__name__})"
            )
            await writer.write(error_event(message, SERVER_ERROR, 504 if timed_out else 502))
            return
        rest = splitter.finish()
        if rest:
            await writer.write(rest)

    async def _answer(self, writer: StreamWriter, reply: UpstreamReply) -> None:
        """Hand a whole answer to the handler, or write it in-band if it already streams."""
        if not self._handoff.reply(reply):
            await writer.write(reply.as_error_event())
