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

from trio_streams.core.errors import NOT_FOUND
from trio_streams.core.session import OffsetLostError, StreamSession
from trio_streams.http import auth, metrics, validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.stores.protocol import SessionStore, StreamHandle

DEFAULT_MAX_LOOKUP_IDS = 100
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: The header a reconnecting ``EventSource`` sends with the id of the last event it got.
LAST_EVENT_ID = "Last-Event-ID"


def resume_offset(from_param: str | None, last_event_id: str | None) -> int:
    """Where a GET resumes: ``Last-Event-ID`` if present, else ``from`` (absent = 0).

    Event ids are byte offsets (see :mod:`trio_streams.core.event_ids`), so both name the same
    place. The header wins because a reconnecting ``EventSource`` resends its original
    URL, whose ``from`` is where it *first* started, not where it got to.
    """
    if last_event_id:
        return validation.last_event_id(last_event_id)
    return validation.offset(from_param)


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
            async with aclosing(session.read(offset)) as chunks:
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

    return EventStreamResponse(body(), headers=STREAM_HEADERS)


def register(app: QuartTrio, store: SessionStore) -> None:
    """Add the stream routes to ``app``."""

    async def read(raw_id: str | None) -> Response:
        conversation_id = validation.conversation_id(raw_id)
        offset = resume_offset(request.args.get("from"), request.headers.get(LAST_EVENT_ID))
        observed = metrics.current()
        try:
            # Another key's session is answered exactly like a missing one (None).
            session = await store.open(conversation_id, offset, owner=auth.current_owner())
        except OffsetLostError:
            if observed:
                observed.lost_offsets.inc()
            raise ApiError(400, "Stream offset lost, please restart") from None
        if session is None:
            raise ApiError(404, "Stream not found or expired", NOT_FOUND)
        if observed and offset > 0:
            observed.resumes.inc()
        return stream_response(session, offset)

    async def stop(raw_id: str | None) -> Response:
        conversation_id = validation.conversation_id(raw_id)
        await store.stop(conversation_id, owner=auth.current_owner())
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
