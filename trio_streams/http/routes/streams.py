"""The resumable-stream endpoints: GET/DELETE ``/v1/stream…`` and ``/v1/streams/lookup``.

Every response body that follows a session is a reader of it (:func:`stream_response`),
including the response of the completion request that started it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

import trio
from quart import Response, current_app, request
from quart_trio import QuartTrio

from trio_streams.core.end_reasons import StreamGoneError, end_error
from trio_streams.core.errors import NOT_FOUND
from trio_streams.core.session import OffsetBeyondEndError, OffsetLostError, StreamSession
from trio_streams.http import auth, metrics, validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.option_values import DEFAULT_MAX_LOOKUP_IDS
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.stores.protocol import SessionStore, StreamHandle
from trio_streams.stores.reader import read_then_end

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: The header a reconnecting ``EventSource`` sends with the id of the last event it got.
LAST_EVENT_ID = "Last-Event-ID"
#: The response header naming the generation a stream response reads: the client that
#: started a stream learns it before the first event, and pins it when it resumes.
GENERATION_HEADER = "X-Stream-Generation"


def resume_position(
    from_param: str | None, generation_param: str | None, last_event_id: str | None
) -> tuple[str | None, int]:
    """Where a GET resumes: ``(pinned generation or None, offset)``.

    ``Last-Event-ID`` wins over ``from`` (absent = 0): a reconnecting ``EventSource``
    resends its original URL, whose ``from`` is where it *first* started, not where it got
    to. Event ids are ``<generation>-<offset>`` (see :mod:`trio_streams.core.event_ids`), so
    the header pins the generation too; a plain-offset id (the form before generations)
    leaves the ``generation`` parameter in charge. Without either, nothing is pinned:
    ``?from=N`` keeps llama.cpp's meaning (the current generation).
    """
    pinned = validation.generation(generation_param)
    if last_event_id:
        event_generation, offset = validation.last_event_id(last_event_id)
        return event_generation or pinned, offset
    return pinned, validation.offset(from_param)


def gone_error(gone: StreamGoneError) -> ApiError:
    """The answer to a resume of a stream that ended: 409 replaced, 404 stopped/evicted."""
    error = end_error(gone.reason)
    assert error is not None
    return ApiError(error.status, error.message, error.http_type, gone.reason.value)


def stream_response(session: StreamHandle, offset: int, *, owns_producer: bool = False) -> Response:
    """A ``text/event-stream`` response reading ``session`` from ``offset``.

    With ``owns_producer`` (a plain stream without conversation id) the producer is
    cancelled when the response ends, which is when its client disconnects.
    """

    observed = metrics.current()
    # The append-to-read latency needs the session's own clock: in-memory sessions only.
    local = session if isinstance(session, StreamSession) else None

    async def body() -> AsyncIterator[bytes]:
        position, first = offset, True
        try:
            async with aclosing(read_then_end(session, offset)) as chunks:
                async for chunk in chunks:
                    position += len(chunk)
                    live = local is not None and not first and not local.is_done
                    if observed and local and live and position == local.total_bytes:
                        latency = trio.current_time() - local.last_append_clock  # caught up
                        observed.append_to_read.observe(latency)
                    first = False
                    yield chunk
        except OffsetLostError:
            # A reader overtaken by the cap: end here; its resume gets the 400.
            if observed and not (local is not None and local.is_done):
                observed.lost_offsets.inc()
            return
        finally:
            if owns_producer:
                session.cancel()

    headers = {**STREAM_HEADERS, GENERATION_HEADER: session.generation}
    return EventStreamResponse(body(), headers=headers)


def register(app: QuartTrio, store: SessionStore) -> None:
    """Add the stream routes to ``app``."""

    async def read(raw_id: str | None) -> Response:
        conversation_id = validation.conversation_id(raw_id)
        generation, offset = resume_position(
            request.args.get("from"),
            request.args.get("generation"),
            request.headers.get(LAST_EVENT_ID),
        )
        observed = metrics.current()
        try:
            # Another key's session is answered exactly like a missing one (None).
            session = await store.open(
                conversation_id, offset, generation=generation, owner=auth.current_owner()
            )
        except OffsetLostError:
            if observed:
                observed.lost_offsets.inc()
            raise ApiError(400, "Stream offset lost, please restart") from None
        except OffsetBeyondEndError as beyond:
            raise ApiError(
                400,
                f"Invalid 'from' offset: {beyond.offset} is beyond the end of the finished "
                f"stream ({beyond.total_bytes} bytes)",
            ) from None
        except StreamGoneError as gone:
            raise gone_error(gone) from None
        if session is None:
            raise ApiError(404, "Stream not found or expired", NOT_FOUND)
        if observed and offset > 0:
            observed.resumes.inc()
        return stream_response(session, offset)

    async def stop(raw_id: str | None) -> Response:
        conversation_id = validation.conversation_id(raw_id)
        generation = validation.generation(request.args.get("generation"))
        await store.stop(conversation_id, owner=auth.current_owner(), generation=generation)
        return Response("", status=204)

    @app.get("/v1/stream")
    @app.get("/v1/stream/")
    async def read_by_query() -> Response:
        return await read(request.args.get("conv_id"))

    @app.get("/v1/stream/<path:conversation_id>")
    async def read_by_path(conversation_id: str) -> Response:
        return await read(conversation_id)

    @app.delete("/v1/stream")
    @app.delete("/v1/stream/")
    async def stop_by_query() -> Response:
        return await stop(request.args.get("conv_id"))

    @app.delete("/v1/stream/<path:conversation_id>")
    async def stop_by_path(conversation_id: str) -> Response:
        return await stop(conversation_id)

    @app.post("/v1/streams/lookup")
    async def lookup() -> Response:
        body = validation.json_value(await request.get_data(as_text=False))
        requested = body.get("conversation_ids") if isinstance(body, dict) else None
        if not isinstance(requested, list):
            return json_response([])
        limit: int = current_app.config.get("MAX_LOOKUP_IDS", DEFAULT_MAX_LOOKUP_IDS)
        if len(requested) > limit:
            raise ApiError(400, f"Too many conversation ids: at most {limit} per lookup")
        ids = [item for item in requested if validation.is_conversation_id(item)]
        found = await store.lookup(ids, owner=auth.current_owner())
        return json_response([info.as_json() for info in found])
