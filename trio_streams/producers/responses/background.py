"""The producer of a background response: any producer's events, normalized, with an end.

It wraps the producer that talks to the model (the demo's, or the upstream relay) and
writes, in order: its own ``response.created`` (so the log describes the response before
the model says anything), then every event the model's producer writes, numbered and
given the response id (:class:`~.events.ResponseEventNormalizer`). When ``/cancel`` stops
it, it writes the terminal ``response.cancelled`` event itself before it ends: the log
keeps the partial output and says why it ended, and any instance that reads it says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from trio_streams.core.producer import Producer, StreamWriter
from trio_streams.core.session import SessionClosedError
from trio_streams.core.sse_events import SSEEventSplitter
from trio_streams.producers.responses.events import ResponseEventNormalizer

logger = logging.getLogger("trio_streams")

#: Seconds the cancelled event may take to write (the Redis store may be applying
#: backpressure); past that the response ends without it.
CANCELLED_WRITE_SECONDS = 2.0


class _NormalizingWriter:
    """A :class:`StreamWriter` that cuts what it is given into events and normalizes them."""

    def __init__(self, writer: StreamWriter, normalizer: ResponseEventNormalizer) -> None:
        self._writer = writer
        self._normalizer = normalizer
        self._splitter = SSEEventSplitter()

    async def write(self, data: bytes) -> None:
        normalized = b"".join(self._normalizer.normalize(raw) for raw in self._splitter.feed(data))
        if normalized:
            await self._writer.write(normalized)
        else:  # no whole event yet (or only the model's response.created, dropped)
            await trio.lowlevel.checkpoint()

    async def finish(self) -> None:
        """At the producer's end: an event it left unterminated, as it was."""
        events = [self._normalizer.normalize(raw) for raw in self._splitter.flush()]
        rest = b"".join(events) + self._splitter.finish()
        if rest:
            await self._writer.write(rest)


class BackgroundResponseProducer:
    """A :data:`~trio_streams.core.producer.Producer` for one background response.

    ``shutting_down`` tells a cancel by ``/cancel`` (the response is cancelled) from a
    server shutdown (it is not: it simply ends, and reads as failed to cut it short).
    DELETE and replacement finalize the session before the producer sees its cancel, so
    the cancelled event is refused there and nothing is written.
    """

    def __init__(
        self,
        model: Producer,
        normalizer: ResponseEventNormalizer,
        *,
        shutting_down: Callable[[], bool],
    ) -> None:
        self._model = model
        self._normalizer = normalizer
        self._shutting_down = shutting_down

    async def __call__(self, writer: StreamWriter) -> None:
        normalizing = _NormalizingWriter(writer, self._normalizer)
        try:
            await writer.write(self._normalizer.created())
            await self._model(normalizing)
            await normalizing.finish()
        except trio.Cancelled:
            if not self._shutting_down():
                await self._write_cancelled(writer)
            raise

    async def _write_cancelled(self, writer: StreamWriter) -> None:
        with trio.move_on_after(CANCELLED_WRITE_SECONDS) as scope:
            scope.shield = True
            try:
                if event := self._normalizer.cancelled():
                    await writer.write(event)
            except SessionClosedError:
                pass  # stopped or replaced: the session is gone already
        if scope.cancelled_caught:
            logger.warning("a cancelled response ended without its cancelled event")
