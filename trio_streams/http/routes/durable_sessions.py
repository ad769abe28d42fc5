"""Every LLM session, readable through the Durable Streams protocol (read-only):
``GET``/``HEAD /ds/v1/session/<conversation_id>``, with catch-up, long-poll and SSE reads.

The stream is the session's own bytes (its SSE text), read through the session store's
seam (``store.lookup``, ``store.open``, ``handle.read``), so both stores serve it the same
way. Writes are ``405``: a session is written by its producer.

Its content type is ``text/plain; charset=utf-8``, not ``text/event-stream``: Durable
Streams clients (the TypeScript one) take an answer labelled ``text/event-stream`` for the
protocol's own SSE framing, so a catch-up read of the log would be parsed as protocol
events and lost.

Offsets carry the generation they read (``<generation>_<position>``,
:mod:`trio_streams.core.durable.offsets`): a replaced session is a different stream, and
an offset of a generation that is no longer the session's current one is answered
``410 Gone``, as is an offset below what the session's log still retains. The stream is
closed when the generation finished (done, stopped, failed or replaced).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import trio
from quart import Response, request
from quart_trio import QuartTrio

from trio_streams.core.durable import sse
from trio_streams.core.durable.errors import BadRequestError, StreamGoneError
from trio_streams.core.durable.headers import STREAM_CLOSED, STREAM_NEXT_OFFSET
from trio_streams.core.durable.offsets import ZERO_SEGMENT, format_offset
from trio_streams.core.end_reasons import EndReason
from trio_streams.core.end_reasons import StreamGoneError as SessionGoneError
from trio_streams.core.errors import NOT_FOUND
from trio_streams.core.session import OffsetBeyondEndError, OffsetLostError, SessionInfo
from trio_streams.http import auth, validation
from trio_streams.http.durable_http import (
    MOUNT,
    NO_STORE,
    READ_CHUNK_BYTES,
    SSE_CONNECTION_SECONDS,
    Chunk,
    ReadQuery,
    control_event,
    long_poll,
    read_query,
    read_response,
    sse_headers,
    tail_response,
)
from trio_streams.http.errors import ApiError
from trio_streams.http.routes.streams import GENERATION_HEADER
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.stores.protocol import SessionStore, StreamHandle

SESSION_PATH = MOUNT + "/v1/session/"
CONTENT_TYPE = "text/plain; charset=utf-8"


class SessionOffsets:
    """A session generation's offsets: ``<generation>_<position>``."""

    content_type = CONTENT_TYPE

    def __init__(self, generation: str) -> None:
        self.generation = generation

    def offset(self, position: int) -> str:
        return format_offset(position, self.generation)


async def current_session(store: SessionStore, conversation_id: str) -> SessionInfo:
    """The session under ``conversation_id`` now (another key's: ``404``, as a missing one)."""
    found = await store.lookup([conversation_id], owner=auth.current_owner())
    for info in found:
        if info.conversation_id == conversation_id:
            return info
    raise ApiError(404, "Session not found or expired", NOT_FOUND)


def start_position(query: ReadQuery, info: SessionInfo) -> int:
    """Where a read starts; an offset of another generation, or of bytes no longer
    retained, is ``410``."""
    offset = query.offset
    if offset.now:
        return info.total_bytes
    position = 0 if offset.start else offset.position
    if not offset.start:
        if offset.prefix == ZERO_SEGMENT:
            raise BadRequestError("Not an offset of a session: expected <generation>_<position>")
        if offset.prefix != info.generation:
            raise StreamGoneError(
                "That offset belongs to a generation of this session that was replaced: "
                "read it again from offset -1"
            )
    if position < info.dropped_prefix:
        raise StreamGoneError("That offset is older than what the session still keeps")
    return position


async def open_handle(
    store: SessionStore, conversation_id: str, info: SessionInfo, position: int
) -> StreamHandle:
    try:
        handle = await store.open(
            conversation_id, position, generation=info.generation, owner=auth.current_owner()
        )
    except OffsetLostError:
        raise StreamGoneError("That offset is older than what the session still keeps") from None
    except OffsetBeyondEndError:
        raise BadRequestError("The offset is past the end of the session") from None
    except SessionGoneError:
        raise StreamGoneError("This generation of the session was replaced or stopped") from None
    if handle is None:
        raise ApiError(404, "Session not found or expired", NOT_FOUND)
    return handle


async def catch_up(handle: StreamHandle, position: int, info: SessionInfo) -> Chunk:
    """The bytes from ``position`` up to the tail the lookup saw (at most a chunk)."""
    data = bytearray()
    end = position
    if position < info.total_bytes:
        async with aclosing(handle.read(position)) as chunks:
            async for piece in chunks:
                data += piece
                end += len(piece)
                if end >= info.total_bytes or len(data) >= READ_CHUNK_BYTES:
                    break
    up_to_date = end >= info.total_bytes
    return Chunk(bytes(data), position, end, up_to_date, info.is_done and up_to_date)


def generation_ended(handle: StreamHandle) -> bool:
    """Whether the reader that just ended saw its generation end for good. A server that
    shut down (or a shared store out of reach) ended it without an ending: the client
    resumes, here or on another instance, and is not told the stream is closed."""
    return handle.ending() not in (None, EndReason.SHUTDOWN)


async def next_piece(handle: StreamHandle, position: int) -> Chunk | None:
    """The next bytes the session writes after ``position`` (the caller bounds the wait);
    the generation's end is a closed, empty chunk (``None``: the reader ended without it)."""
    async with aclosing(handle.read(position)) as chunks:
        async for piece in chunks:
            return Chunk(piece, position, position + len(piece), True, False)
    if not generation_ended(handle):
        return None
    return Chunk(b"", position, position, True, True)


class SessionSource(SessionOffsets):
    """A session generation, opened at a position, as the shared long-poll reads it."""

    def __init__(self, info: SessionInfo, handle: StreamHandle) -> None:
        super().__init__(info.generation)
        self.info = info
        self.handle = handle

    async def next_chunk(self, position: int, *, wait: bool) -> Chunk:
        if not wait:
            return await catch_up(self.handle, position, self.info)
        piece = await next_piece(self.handle, position)
        # A reader that ended without its generation's end: nothing new, not closed.
        return piece or Chunk(b"", position, position, True, False)


def register(app: QuartTrio, store: SessionStore, *, long_poll_timeout: float) -> None:
    """Add ``/ds/v1/session/…`` to ``app``."""

    @app.route(SESSION_PATH + "<path:conversation_id>", methods=["GET", "HEAD"])
    async def durable_session(conversation_id: str) -> Response:
        conversation_id = validation.conversation_id(conversation_id)
        info = await current_session(store, conversation_id)
        offsets = SessionOffsets(info.generation)
        if request.method == "HEAD":
            answer = head(info, offsets)
        else:
            answer = await read(conversation_id, info, offsets, read_query(request.args))
        answer.headers[GENERATION_HEADER] = info.generation
        return answer

    async def read(
        conversation_id: str, info: SessionInfo, offsets: SessionOffsets, query: ReadQuery
    ) -> Response:
        position = start_position(query, info)
        if query.offset.now and query.live is None:
            return tail_response(query, offsets, position, info.is_done)
        handle = await open_handle(store, conversation_id, info, position)
        if query.live == "sse":
            return session_events(query, offsets, handle, position, info)
        source = SessionSource(info, handle)
        first = await source.next_chunk(position, wait=False)
        if query.live is None:
            return read_response(conversation_id, query, offsets, first, live=False)
        return await long_poll(conversation_id, query, source, first, long_poll_timeout)


def head(info: SessionInfo, offsets: SessionOffsets) -> Response:
    answer = Response(b"", status=200)
    answer.headers["Content-Type"] = CONTENT_TYPE
    answer.headers[STREAM_NEXT_OFFSET] = offsets.offset(info.total_bytes)
    answer.headers["Cache-Control"] = NO_STORE
    if info.is_done:
        answer.headers[STREAM_CLOSED] = "true"
    return answer


def session_events(
    query: ReadQuery,
    offsets: SessionOffsets,
    handle: StreamHandle,
    start: int,
    info: SessionInfo,
) -> Response:
    """The session's bytes as ``data`` events (whole UTF-8 characters each), every one
    followed by its ``control`` event; the last one says ``streamClosed`` when the
    generation ended."""

    async def events() -> AsyncIterator[bytes]:
        position, carry = start, b""
        if start >= info.total_bytes:  # at the tail already: say where it is
            yield control(position)
        with trio.move_on_after(SSE_CONNECTION_SECONDS):
            try:
                async with aclosing(handle.read(start)) as chunks:
                    async for piece in chunks:
                        data = carry + piece
                        whole = sse.utf8_complete(data)
                        data, carry = data[:whole], data[whole:]
                        if not data:
                            continue
                        position += len(data)
                        yield sse.data_event(data, base64_encoded=False) + control(position)
            except OffsetLostError:
                return  # overtaken by the session's cap: the reconnect gets the 410
            if generation_ended(handle):  # nothing more will ever come at these offsets
                yield control_event(query, offsets, position, up_to_date=True, closed=True)

    def control(position: int) -> bytes:
        up_to_date = position >= info.total_bytes
        return control_event(query, offsets, position, up_to_date=up_to_date, closed=False)

    return EventStreamResponse(events(), headers=sse_headers())
