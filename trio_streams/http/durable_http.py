"""What the two Durable Streams routes (generic streams, and the read-only view of
sessions) share: the query of a read, the headers of its answers, errors, and the SSE
body that alternates ``data`` and ``control`` events.

Kept apart from the routes so that both answer a read the same way; what differs is
where the bytes come from (:class:`ReadSource`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import trio
from quart import Response, request
from werkzeug.datastructures import MultiDict

from trio_streams.core.durable import cursor as cursors
from trio_streams.core.durable import json_mode, sse
from trio_streams.core.durable.errors import BadRequestError, DurableStreamError
from trio_streams.core.durable.headers import (
    STREAM_CLOSED,
    STREAM_CURSOR,
    STREAM_NEXT_OFFSET,
    STREAM_SSE_DATA_ENCODING,
    STREAM_UP_TO_DATE,
    is_sse_compatible,
    normalize_content_type,
)
from trio_streams.core.durable.offsets import InvalidOffsetError, Offset, parse_offset
from trio_streams.core.errors import CONFLICT, INVALID_REQUEST, UNAVAILABLE, error_body
from trio_streams.http.errors import error_type_for_status, json_response
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.stores.protocol import StoreUnavailableError

#: Where the protocol is served: the conformance suite's base URL is ``http://host/ds``.
MOUNT = "/ds"
LIVE_LONG_POLL = "long-poll"
LIVE_SSE = "sse"
#: Every answer of the mount carries these (the protocol's browser security headers).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
#: A read that ends before the tail names an immutable range: a cache may keep it.
CACHE_IMMUTABLE = "private, max-age=60, stale-while-revalidate=300"
#: A read that reached the tail changes with the next append: revalidate (ETag) each time.
CACHE_REVALIDATE = "no-cache"
NO_STORE = "no-store"
#: An SSE answer ends after this long (the protocol's ~60 s, for CDN collapsing); the
#: client reconnects from the last control event's offset.
SSE_CONNECTION_SECONDS = 60.0
#: A control event (with a fresh cursor) when nothing arrived for this long.
SSE_KEEPALIVE_SECONDS = 15.0
#: Largest catch-up answer of a non-JSON stream; the client asks again from its end.
READ_CHUNK_BYTES = 1024 * 1024


def protocol_error(error: DurableStreamError) -> Response:
    """A Durable Streams error as the project's JSON error, with the protocol's headers."""
    if error.status == 409:
        error_type = CONFLICT
    elif error.status == 503:
        error_type = UNAVAILABLE
    elif error.status in (403, 405, 410, 413):
        error_type = INVALID_REQUEST
    else:
        error_type = error_type_for_status(error.status)
    response = json_response(error_body(error.status, error.message, error_type), error.status)
    response.headers.update(error.headers)
    return response


@dataclass(frozen=True, slots=True)
class ReadQuery:
    """The query of a GET: where to start, which live mode, the echoed cursor."""

    offset: Offset
    live: str | None
    cursor: str | None


def read_query(args: MultiDict[str, str]) -> ReadQuery:
    """``offset``, ``live`` and ``cursor`` of a GET, checked (each failure a ``400``)."""
    offsets = args.getlist("offset")
    if len(offsets) > 1:
        raise BadRequestError("Send one offset parameter")
    raw = offsets[0] if offsets else None
    if raw == "":
        raise BadRequestError("Empty offset parameter")
    try:
        offset = parse_offset(raw)
    except InvalidOffsetError as error:
        raise BadRequestError(str(error).capitalize()) from None
    live = args.get("live")
    if live is not None and live not in (LIVE_LONG_POLL, LIVE_SSE):
        raise BadRequestError("live must be long-poll or sse")
    if live is not None and raw is None:
        raise BadRequestError(f"live={live} needs an offset parameter")
    return ReadQuery(offset, live, args.get("cursor"))


def response_cursor(query: ReadQuery) -> str:
    return cursors.response_cursor(query.cursor, time.time())


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one read of a source gave: bytes ``[start, end)`` and the state then."""

    data: bytes
    start: int
    end: int
    up_to_date: bool
    closed: bool


class Offsets(Protocol):
    """What a read's answers need to know about its stream."""

    content_type: str

    def offset(self, position: int) -> str:
        """``position`` as this stream writes offsets."""
        ...


class ReadSource(Offsets, Protocol):
    """Where a read's bytes come from (a generic stream)."""

    async def next_chunk(self, position: int, *, wait: bool) -> Chunk:
        """The bytes from ``position`` on. With ``wait``, first wait until there are
        some, or the source closes (the caller's cancel scope bounds the wait).

        Raises :class:`~trio_streams.core.durable.errors.DurableStreamError` when the
        source is gone (deleted, expired, replaced) or the server is shutting down.
        """
        ...


def body_of(content_type: str, data: bytes) -> bytes:
    """A read's body: a JSON stream's messages as one array, any other stream's bytes."""
    if json_mode.is_json(normalize_content_type(content_type)):
        return json_mode.as_array(data)
    return data


def etag(name: str, start: str, end: str, closed: bool) -> str:
    """The ETag of a read: the stream, its range, and whether it ended the stream."""
    stream = base64.urlsafe_b64encode(name.encode()).decode("ascii").rstrip("=")
    return f'"{stream}:{start}:{end}{":c" if closed else ""}"'


def read_response(
    name: str, query: ReadQuery, source: Offsets, chunk: Chunk, *, live: bool
) -> Response:
    """The ``200`` of a catch-up or long-poll read (or ``304`` for a matching
    ``If-None-Match``)."""
    end = source.offset(chunk.end)
    start = "-1" if query.offset.start else source.offset(chunk.start)
    tag = etag(name, start, end, chunk.closed)
    headers = {STREAM_NEXT_OFFSET: end, "ETag": tag}
    if chunk.up_to_date:
        headers[STREAM_UP_TO_DATE] = "true"
    if chunk.closed:
        headers[STREAM_CLOSED] = "true"
    if live:
        headers[STREAM_CURSOR] = response_cursor(query)
    headers["Cache-Control"] = CACHE_REVALIDATE if chunk.up_to_date else CACHE_IMMUTABLE
    if request.headers.get("If-None-Match") == tag:
        return Response(b"", status=304, headers=headers)
    body = body_of(source.content_type, chunk.data)
    return Response(body, status=200, headers=headers, content_type=source.content_type)


def tail_response(query: ReadQuery, source: Offsets, tail: int, closed: bool) -> Response:
    """``offset=now`` without ``live``: no data, only where the tail is (never cached)."""
    headers = {
        STREAM_NEXT_OFFSET: source.offset(tail),
        STREAM_UP_TO_DATE: "true",
        "Cache-Control": NO_STORE,
    }
    if closed:
        headers[STREAM_CLOSED] = "true"
    body = body_of(source.content_type, b"")
    return Response(body, status=200, headers=headers, content_type=source.content_type)


def timeout_response(query: ReadQuery, source: Offsets, position: int, *, closed: bool) -> Response:
    """A long-poll's ``204``: nothing new (or the stream closed where the client is)."""
    headers = {
        STREAM_NEXT_OFFSET: source.offset(position),
        STREAM_UP_TO_DATE: "true",
        STREAM_CURSOR: response_cursor(query),
        "Cache-Control": NO_STORE,
    }
    if closed:
        headers[STREAM_CLOSED] = "true"
    return Response(b"", status=204, headers=headers)


async def long_poll(
    name: str, query: ReadQuery, source: ReadSource, first: Chunk, within: float
) -> Response:
    """A long-poll that starts from ``first`` (what a catch-up read gave): its bytes at
    once if it has any, else what arrives within ``within`` seconds (else ``204``)."""
    chunk: Chunk | None = first
    if not first.data and not first.closed:
        chunk = None
        with trio.move_on_after(within):
            chunk = await source.next_chunk(first.start, wait=True)
    if chunk is None:
        return timeout_response(query, source, first.start, closed=False)
    if not chunk.data:
        return timeout_response(query, source, chunk.start, closed=chunk.closed)
    return read_response(name, query, source, chunk, live=True)


def sse_response(query: ReadQuery, source: ReadSource, start: int) -> Response:
    """The SSE answer from ``start``: each read's bytes as a ``data`` event followed by
    its ``control`` event, until the stream closes, goes, or the connection's time is up."""
    encoded = not is_sse_compatible(source.content_type)

    async def events() -> AsyncIterator[bytes]:
        position, wait = start, False
        with trio.move_on_after(SSE_CONNECTION_SECONDS):
            while True:
                chunk: Chunk | None = None
                with trio.move_on_after(SSE_KEEPALIVE_SECONDS):
                    try:
                        chunk = await source.next_chunk(position, wait=wait)
                    except (DurableStreamError, StoreUnavailableError):
                        return  # gone, shutting down, or the store out of reach: the
                        # client's reconnect learns which
                if chunk is None:  # nothing for a while: a fresh cursor, still up to date
                    yield control(position, up_to_date=True, closed=False)
                    continue
                data = b""
                if chunk.data:
                    payload = body_of(source.content_type, chunk.data)
                    data = sse.data_event(payload, base64_encoded=encoded)
                position = chunk.end
                # One write: a data event and its control event arrive together.
                yield data + control(position, up_to_date=chunk.up_to_date, closed=chunk.closed)
                if chunk.closed:
                    return
                wait = chunk.up_to_date

    def control(position: int, *, up_to_date: bool, closed: bool) -> bytes:
        return control_event(query, source, position, up_to_date=up_to_date, closed=closed)

    headers = sse_headers()
    if encoded:
        headers[STREAM_SSE_DATA_ENCODING] = "base64"
    return EventStreamResponse(events(), headers=headers)


def control_event(
    query: ReadQuery, source: Offsets, position: int, *, up_to_date: bool, closed: bool
) -> bytes:
    """The ``control`` event after a read that reached ``position``."""
    return sse.control_event(
        source.offset(position),
        cursor=None if closed else response_cursor(query),
        up_to_date=up_to_date,
        closed=closed,
    )


def sse_headers() -> dict[str, str]:
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
