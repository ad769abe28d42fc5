"""OpenAI Responses background mode: ``POST /v1/responses`` with ``"background": true``,
``GET /v1/responses/{id}`` (the object, or its events after ``starting_after``) and
``POST /v1/responses/{id}/cancel``.

A background response is a session whose conversation id is the response id, with the
same limits, TTL, owner key, lookup and store as any other; its producer is the model's,
wrapped by :class:`~trio_streams.producers.responses.background.BackgroundResponseProducer`.
Every answer here is read back from the session's log, so any instance of a Redis-backed
deployment answers for a response that another one produces. A request without
``background`` is the backend's own business (the demo model's, or the upstream's).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from quart import Response, request
from quart_trio import QuartTrio

from trio_streams.core.errors import INVALID_REQUEST, NOT_FOUND, UNAVAILABLE
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.core.session import OffsetLostError
from trio_streams.http import auth, metrics, validation
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.routes.demo import ping_interval
from trio_streams.http.routes.streams import STREAM_HEADERS, stream_response
from trio_streams.http.stream_transport import EventStreamResponse
from trio_streams.producers.responses.assemble import ResponseAssembler
from trio_streams.producers.responses.background import BackgroundResponseProducer
from trio_streams.producers.responses.events import ResponseEventNormalizer
from trio_streams.producers.responses.log import (
    CAUGHT_UP,
    LogEvent,
    ResponseLog,
    open_response_log,
)
from trio_streams.producers.responses.objects import base_response, new_response_id
from trio_streams.stores.protocol import SessionStore

logger = logging.getLogger("trio_streams")

#: Seconds ``/cancel`` waits for the producer to end its log before it answers.
CANCEL_WAIT_SECONDS = 5.0
#: Reads of a log that the cap overtakes (a Redis log read while it grows) are retried.
_READ_ATTEMPTS = 3
_SEQUENCE = re.compile(r"[0-9]{1,18}")


class ParamError(ApiError):
    """A 400 that names the request field at fault, as OpenAI's errors do (``param``)."""

    def __init__(self, status: int, message: str, param: str) -> None:
        super().__init__(status, message, INVALID_REQUEST)
        self.param = param

    def response(self) -> Response:
        error = {"code": self.status, "message": self.message, "type": self.error_type}
        return json_response({"error": {**error, "param": self.param}}, self.status)


class ResponsesBackend(Protocol):
    """What serves ``POST /v1/responses``: the demo model, or the upstream proxy."""

    async def plain(self) -> Response:
        """A request that is not in background mode, answered as the backend always has."""
        ...

    def background(self, body: dict[str, Any]) -> tuple[Producer, str]:
        """The producer that streams ``body``'s answer (as Responses events), and the model
        name the response object reports. Raises :class:`ApiError` for a bad request."""
        ...


@dataclass(frozen=True, slots=True)
class PlainResponses:
    """A :class:`ResponsesBackend` from two callables (the proxy's closures)."""

    answer: Callable[[], Awaitable[Response]]
    start: Callable[[dict[str, Any]], tuple[Producer, str]]

    async def plain(self) -> Response:
        return await self.answer()

    def background(self, body: dict[str, Any]) -> tuple[Producer, str]:
        return self.start(body)


def _body_object(data: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(data) if data else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _boolean(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is not None and not isinstance(value, bool):
        raise ParamError(400, f"Invalid type for '{field}': expected a boolean", field)
    return value


def _starting_after(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not _SEQUENCE.fullmatch(raw):
        raise ParamError(
            400, "Invalid 'starting_after': expected a non-negative integer", "starting_after"
        )
    return int(raw)


def _stream_flag(raw: str | None) -> bool:
    """``stream`` in the query, as the OpenAI SDK sends it: ``true`` or ``false``."""
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise ParamError(400, "Invalid 'stream': expected true or false", "stream")


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"No response found with id '{response_id}'", NOT_FOUND)


def register(app: QuartTrio, store: SessionStore, backend: ResponsesBackend) -> None:
    """Add ``/v1/responses`` and its background-mode routes to ``app``."""

    def shutting_down() -> bool:
        return store.manager.closed

    @app.post("/v1/responses")
    async def create() -> Response:
        data = await request.get_data(as_text=False)
        body = _body_object(data if isinstance(data, bytes) else data.encode())
        if body is None or not _boolean(body, "background"):
            return await backend.plain()
        if body.get("store") is False:
            raise ParamError(400, "background can only be used when `store` is true", "background")
        stream = bool(_boolean(body, "stream"))
        interval = ping_interval(body)
        model, model_name = backend.background(body)
        response_id = new_response_id()
        base = base_response(response_id, body, model=model_name, background=True)
        producer = BackgroundResponseProducer(
            model, ResponseEventNormalizer(response_id, base), shutting_down=shutting_down
        )
        handle = await store.start(
            response_id, producer, ping_interval=interval, owner=auth.current_owner()
        )
        logger.info("started background response %s", redact(response_id))
        if stream:
            return stream_response(handle, 0)
        return json_response(base)

    async def opened(response_id: str) -> ResponseLog:
        log = await open_response_log(store, response_id, auth.current_owner())
        if log is None:
            raise _not_found(response_id)
        return log

    async def current(response_id: str) -> Response:
        """The response object from everything its log holds now."""
        for _ in range(_READ_ATTEMPTS):
            try:
                return json_response(await _assemble(response_id, await opened(response_id)))
            except OffsetLostError:
                continue  # the cap dropped bytes while we read (a log read from Redis)
        raise ApiError(503, "The response changed too fast to be read; try again", UNAVAILABLE)

    @app.get("/v1/responses/<response_id>")
    async def retrieve(response_id: str) -> Response:
        response_id = validation.checked_conversation_id(response_id)
        stream = _stream_flag(request.args.get("stream"))
        after = _starting_after(request.args.get("starting_after"))
        if not stream:
            return await current(response_id)
        log = await opened(response_id)
        observed = metrics.current()
        if observed and after is not None:
            observed.resumes.inc()
        return await _replay(log, -1 if after is None else after)

    @app.post("/v1/responses/<response_id>/cancel")
    async def cancel(response_id: str) -> Response:
        response_id = validation.checked_conversation_id(response_id)
        owner = auth.current_owner()
        if not await store.cancel(response_id, owner=owner):
            raise _not_found(response_id)
        # Answer once the producer has written its end, so the status says cancelled.
        with trio.move_on_after(CANCEL_WAIT_SECONDS):
            log = await open_response_log(store, response_id, owner)
            if log is not None and not log.info.is_done:
                async with aclosing(log.events()) as events:
                    async for _ in events:
                        pass
        return await current(response_id)


async def _assemble(response_id: str, log: ResponseLog) -> dict[str, Any]:
    """The response object from what ``log`` held when it was opened."""
    assembler = ResponseAssembler()
    async with aclosing(log.events(until=log.info.total_bytes)) as events:
        async for event in events:
            if event.payload is not None:
                assembler.feed(event.payload)
    if not assembler.is_response and log.info.total_bytes > 0:
        raise _not_found(response_id)  # a conversation's session: its id is no response's
    result = assembler.result(finished=log.info.is_done)
    result.setdefault("id", response_id)
    result.setdefault("object", "response")
    return result


async def _replay(log: ResponseLog, after: int) -> Response:
    """The events after sequence number ``after`` (``-1``: all), then the live ones; or a
    400 before any byte is sent if the log no longer holds them or never held ``after``."""
    events = log.events(mark=log.info.total_bytes)
    try:
        held = await _check_start(events, after)
    except BaseException:
        await events.aclose()
        raise
    return _follow(events, held, after)


async def _check_start(events: AsyncIterator[LogEvent], after: int) -> list[bytes]:
    """Read what existed when the log was opened, until the request is known to be valid:
    the event after ``after`` is retained, and ``after`` is not beyond the end. Returns the
    events read that come after ``after``."""
    held: list[bytes] = []
    seen: int | None = None  # the last sequence number read so far
    checked = False  # the first numbered event retained is early enough
    try:
        async for event in events:
            if event is CAUGHT_UP:
                break
            sequence = event.sequence
            if sequence is not None and not checked:
                if sequence > after + 1:
                    raise _offset_lost()
                checked = True
            seen = sequence if sequence is not None else seen
            if seen is not None and seen > after:
                held.append(event.raw)
            if seen is not None and seen >= after:
                break
    except OffsetLostError:
        raise _offset_lost() from None  # the cap overtook this read
    if after >= 0 and (seen is None or seen < after):
        last = "none yet" if seen is None else str(seen)
        raise ParamError(
            400,
            f"'starting_after' {after} is beyond the last event (sequence number {last})",
            "starting_after",
        )
    return held


def _offset_lost() -> ApiError:
    if observed := metrics.current():
        observed.lost_offsets.inc()
    return ApiError(400, "Stream offset lost, please restart")


def _follow(events: AsyncGenerator[LogEvent, None], held: list[bytes], after: int) -> Response:
    async def body() -> AsyncIterator[bytes]:
        async with aclosing(events):
            try:
                if held:
                    yield b"".join(held)
                async for event in events:
                    sequence = event.sequence
                    if event is not CAUGHT_UP and (sequence is None or sequence > after):
                        yield event.raw
            except OffsetLostError:
                return  # overtaken by the cap: the client resumes from its last event

    return EventStreamResponse(body(), headers=STREAM_HEADERS)
