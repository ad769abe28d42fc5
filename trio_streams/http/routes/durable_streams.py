"""Generic Durable Streams at ``/ds/v1/stream/<name>``: PUT, POST, GET, HEAD, DELETE.

The protocol's rules live in :mod:`trio_streams.core.durable` and the streams in the
session store's Durable Streams store (:mod:`trio_streams.stores.durable`); this module
turns requests into store calls and results into the protocol's answers. A session store
without a Durable Streams implementation answers ``501`` here, saying so.
"""

from __future__ import annotations

import logging
import math
import re

from quart import Response, request
from quart_trio import QuartTrio

from trio_streams.core.durable import headers as protocol
from trio_streams.core.durable.errors import BadRequestError, DurableStreamError
from trio_streams.core.durable.headers import (
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    STREAM_CLOSED,
    STREAM_EXPIRES_AT,
    STREAM_NEXT_OFFSET,
    STREAM_TTL,
    normalize_content_type,
)
from trio_streams.core.durable.json_mode import is_json
from trio_streams.core.durable.model import (
    AppendRequest,
    AppendResult,
    AppendStatus,
    CreateRequest,
    ForkRequest,
    StreamMeta,
)
from trio_streams.core.durable.offsets import ZERO_SEGMENT, format_offset
from trio_streams.core.durable.sse import utf8_complete
from trio_streams.core.errors import UNAVAILABLE
from trio_streams.http import auth
from trio_streams.http.durable_http import (
    MOUNT,
    NO_STORE,
    READ_CHUNK_BYTES,
    SECURITY_HEADERS,
    Chunk,
    ReadQuery,
    etag,
    long_poll,
    protocol_error,
    read_query,
    read_response,
    sse_response,
    tail_response,
)
from trio_streams.http.errors import ApiError
from trio_streams.stores.durable import durable_store_of
from trio_streams.stores.durable.protocol import DurableStore, DurableStreamsUnsupportedError

logger = logging.getLogger("trio_streams")

STREAM_PATH = MOUNT + "/v1/stream/"
MAX_NAME_LENGTH = 1024
# Visible ASCII, as conversation ids: no whitespace or control characters in a name.
_NAME = re.compile(r"[\x21-\x7e]+")


def stream_name(raw: str) -> str:
    if len(raw) > MAX_NAME_LENGTH:
        raise BadRequestError(f"Stream name longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.fullmatch(raw):
        raise BadRequestError("Stream names are visible ASCII characters only")
    return raw


async def request_body() -> bytes:
    """The request's body (already read whole, and capped, before routing)."""
    data = await request.get_data(as_text=False)
    return data if isinstance(data, bytes) else data.encode()


class StreamSource:
    """A generic stream as the shared read code sees it."""

    def __init__(self, store: DurableStore, name: str, meta: StreamMeta) -> None:
        self.store = store
        self.name = name
        self.content_type = meta.content_type
        self.owner = auth.current_owner()
        media = normalize_content_type(meta.content_type)
        # A JSON stream's read ends on a message boundary: its store reads it whole.
        self.limit = None if is_json(media) else READ_CHUNK_BYTES
        # A text stream's bytes are decoded as UTF-8 (SSE data, a client's text()): a
        # read cut short ends on a character boundary.
        self._text = media.startswith("text/")

    def offset(self, position: int) -> str:
        return format_offset(position)

    async def read(self, position: int | None) -> Chunk:
        """The bytes from ``position`` (``None``: the tail), at most a chunk of them."""
        result = await self.store.read(self.name, position, limit=self.limit, owner=self.owner)
        data, end, tail = result.data, result.end, result.meta.tail
        if self._text and end < tail:
            whole = utf8_complete(data)
            if whole:  # (else one character longer than a chunk: sent as it is)
                data, end = data[:whole], result.start + whole
        up_to_date = end >= tail
        return Chunk(data, result.start, end, up_to_date, result.meta.closed and up_to_date)

    async def next_chunk(self, position: int, *, wait: bool) -> Chunk:
        if wait:
            await self.store.wait(self.name, position, math.inf, owner=self.owner)
        return await self.read(position)


def register(app: QuartTrio, sessions: object, *, long_poll_timeout: float) -> None:
    """Add ``/ds/v1/stream/…`` to ``app``, served from ``sessions``' Durable Streams store."""
    try:
        store: DurableStore | None = durable_store_of(sessions)
        unsupported = ""
    except DurableStreamsUnsupportedError as error:
        store, unsupported = None, str(error)
        logger.warning("Durable Streams at %s answer 501: %s", STREAM_PATH, unsupported)

    def the_store() -> DurableStore:
        if store is None:
            raise ApiError(501, f"Durable Streams are not available: {unsupported}", UNAVAILABLE)
        return store

    @app.after_request
    async def security_headers(response: Response) -> Response:
        """The protocol's browser security headers, on every answer of the mount."""
        if request.path == MOUNT or request.path.startswith(MOUNT + "/"):
            for header, value in SECURITY_HEADERS.items():
                response.headers.setdefault(header, value)
        return response

    @app.errorhandler(DurableStreamError)
    async def durable_stream_error(error: DurableStreamError) -> Response:
        return protocol_error(error)

    @app.route(STREAM_PATH + "<path:name>", methods=["GET", "HEAD", "PUT", "POST", "DELETE"])
    async def durable_stream(name: str) -> Response:
        name = stream_name(name)
        ds = the_store()
        method = request.method
        if method == "PUT":
            return await create(ds, name)
        if method == "POST":
            return await append(ds, name)
        if method == "DELETE":
            await ds.delete(name, owner=auth.current_owner())
            return Response(b"", status=204)
        if method == "HEAD":
            return head(await ds.head(name, owner=auth.current_owner()))
        return await read(ds, name, read_query(request.args))

    async def create(ds: DurableStore, name: str) -> Response:
        headers = request.headers
        expiry = protocol.expiry(headers)
        closed = protocol.closed(headers)
        fork = protocol.fork_source(headers, MOUNT)
        body = await request_body()
        owner = auth.current_owner()
        if fork is None:
            content_type = protocol.stream_content_type(headers.get("Content-Type"))
            result = await ds.create(
                name, CreateRequest(content_type, expiry, closed, body), owner=owner
            )
        else:
            raw_type = headers.get("Content-Type")
            fork_type = protocol.stream_content_type(raw_type) if raw_type else None
            forked = ForkRequest(
                fork.name, fork.position, fork.sub_offset, fork_type, expiry, closed, body
            )
            result = await ds.fork(name, forked, owner=owner)
        meta = result.meta
        answer = Response(b"", status=201 if result.created else 200)
        answer.headers["Content-Type"] = meta.content_type
        answer.headers[STREAM_NEXT_OFFSET] = format_offset(meta.tail)
        if result.created:
            answer.headers["Location"] = request.url
        if meta.closed:
            answer.headers[STREAM_CLOSED] = "true"
        return answer

    async def append(ds: DurableStore, name: str) -> Response:
        headers = request.headers
        claim = protocol.producer_claim(headers)
        close = protocol.closed(headers)
        body = await request_body()
        owner = auth.current_owner()
        if not body and close:
            result = await ds.close(name, claim, owner=owner)
        else:
            appended = AppendRequest(
                body, headers.get("Content-Type"), protocol.stream_seq(headers), claim, close
            )
            result = await ds.append(name, appended, owner=owner)
        return append_response(result)

    async def read(ds: DurableStore, name: str, query: ReadQuery) -> Response:
        owner = auth.current_owner()
        if query.offset.prefix != ZERO_SEGMENT:
            raise BadRequestError("Not an offset of this stream")
        meta = await ds.head(name, owner=owner)
        source = StreamSource(ds, name, meta)
        if query.live == "sse":
            start = meta.tail if query.offset.now else query.offset.position
            if start > meta.tail:
                raise BadRequestError("The offset is past the end of the stream")
            return sse_response(query, source, start)
        if query.offset.now:
            first = await source.read(None)
            if query.live is None:
                return tail_response(query, source, first.end, first.closed)
        else:
            first = await source.read(0 if query.offset.start else query.offset.position)
        if query.live == "long-poll":
            return await long_poll(name, query, source, first, long_poll_timeout)
        return read_response(name, query, source, first, live=False)


def head(meta: StreamMeta) -> Response:
    """HEAD: the stream's metadata, never cached (the tail moves)."""
    tail = format_offset(meta.tail)
    answer = Response(b"", status=200)
    answer.headers["Content-Type"] = meta.content_type
    answer.headers[STREAM_NEXT_OFFSET] = tail
    answer.headers["Cache-Control"] = NO_STORE
    answer.headers["ETag"] = etag(meta.name, "-1", tail, meta.closed)
    if meta.closed:
        answer.headers[STREAM_CLOSED] = "true"
    if meta.ttl_seconds is not None:
        answer.headers[STREAM_TTL] = str(meta.ttl_seconds)
    if meta.expires_at is not None:
        answer.headers[STREAM_EXPIRES_AT] = meta.expires_at
    return answer


def append_response(result: AppendResult) -> Response:
    """POST: ``200`` for a producer's new data, ``204`` otherwise (duplicates included)."""
    appended = result.status is AppendStatus.APPENDED
    status = 200 if result.producer is not None and appended else 204
    answer = Response(b"", status=status)
    answer.headers[STREAM_NEXT_OFFSET] = format_offset(result.tail)
    if result.closed:
        answer.headers[STREAM_CLOSED] = "true"
    if result.producer is not None:
        answer.headers[PRODUCER_EPOCH] = str(result.producer.epoch)
        answer.headers[PRODUCER_SEQ] = str(result.producer.seq)
    return answer
