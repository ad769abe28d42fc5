"""The transport of stream responses: their chunks go to the ASGI server in a lean loop.

A stream response sends one ASGI message per chunk for as long as its stream lasts, and
every layer between the chunk and Hypercorn is paid per chunk: Quart's response-body loop
(a ``cast``, a ``str`` check) and the access log's counting wrapper (one more coroutine
call per message). What the body contains is decided elsewhere, by
:func:`trio_streams.http.routes.streams.stream_response`; this module only carries it:

- :class:`EventStreamResponse` is a Quart ``Response`` like any other (hooks set its
  headers, Quart's test client reads it), which also keeps its chunk iterator;
- :class:`StreamingConnection`, Quart-Trio's connection class with two differences: an
  :class:`EventStreamResponse` is sent by :func:`send_chunks`, which hands each chunk to
  the ``send`` the access log was given (:data:`~trio_streams.http.access_log.UNCOUNTED`),
  and reports the bytes to the access log's tally once, when the body ends; and a body
  that raises :class:`BodyCut` ends its response without the last message, which is how an
  ASGI app cuts a connection on purpose.

The messages Hypercorn receives are the same as through Quart, in the same order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from typing import Any

from quart import Response
from quart.utils import encode_headers
from quart_trio.asgi import TrioASGIHTTPConnection

from trio_streams.http.access_log import UNCOUNTED, Tally

Send = Callable[[Any], Awaitable[None]]


class BodyCut(Exception):
    """Raised by a response body that cannot be completed once its status is sent.

    A relayed body whose source broke off (an upstream cut mid-answer) must reach the
    client as a cut: a clean end would pass a partial body off as whole. An ASGI app that
    returns without the body's last message makes Hypercorn close the connection, which is
    that cut; an exception escaping the app would do the same, but Hypercorn logs it as an
    "Error in ASGI Framework" traceback, an alarm for what is an expected event, already
    logged as a warning where it happens.
    """


class EventStreamResponse(Response):
    """A ``text/event-stream`` response whose body is ``chunks``, with no timeout."""

    def __init__(self, chunks: AsyncIterator[bytes], *, headers: dict[str, str]) -> None:
        super().__init__(chunks, status=200, content_type="text/event-stream", headers=headers)
        self.timeout = None  # a stream lasts as long as generation does
        self.chunks = chunks


class StreamingConnection(TrioASGIHTTPConnection):
    """Quart-Trio's HTTP connection; :class:`EventStreamResponse` bodies by :func:`send_chunks`."""

    async def _send_response(self, send: Any, response: Any) -> None:
        if not isinstance(response, EventStreamResponse):
            # A cut body: without its last message, the response ends as a cut connection.
            with suppress(BodyCut):
                await super()._send_response(send, response)
            return
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": encode_headers(response.headers),
            }
        )
        await send_chunks(self.scope, send, response.chunks)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_chunks(scope: Mapping[str, Any], send: Send, chunks: AsyncIterator[bytes]) -> None:
    """Send every chunk as an ``http.response.body`` message with more to come.

    Under the access log (``scope[UNCOUNTED]``), straight to the ``send`` it wraps, the
    bytes counted here and added to its tally at the end, however the body ends.
    """
    uncounted: tuple[Send, Tally] | None = scope.get(UNCOUNTED)
    body_send, tally = uncounted if uncounted is not None else (send, None)
    sent = 0
    try:
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                sent += len(chunk)
                await body_send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        if tally is not None:
            tally.sent += sent
