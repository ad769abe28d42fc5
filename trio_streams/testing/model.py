"""The demo model, with failures on demand: the producer-fails fault.

It is the real :class:`~trio_streams.producers.demo.DemoModel` (same events, same pace on
trio's clock); :meth:`FaultyDemoModel.fail_next` arms the next streams it produces to
raise after a given number of events, as a model server that crashes mid-answer. What the
readers then see is what trio-streams does with any failing producer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from trio_streams.core.producer import Producer, StreamWriter
from trio_streams.producers.demo import DemoModel, DemoRequest


class ProducerFailure(Exception):
    """What an armed demo producer raises (its message reaches the readers)."""


@dataclass(frozen=True, slots=True)
class _Failure:
    after_events: int
    message: str


class FaultyDemoModel(DemoModel):
    """:class:`DemoModel` whose next streams can be made to fail."""

    def __init__(self, tokens_per_second: float = 20.0, prefill_seconds: float = 0.0) -> None:
        super().__init__(tokens_per_second, prefill_seconds)
        self._failures: deque[_Failure] = deque()
        #: Streams that failed as armed.
        self.failed = 0

    def fail_next(
        self, *, after_events: int = 0, message: str = "the model crashed", times: int = 1
    ) -> None:
        """The next ``times`` streams raise :class:`ProducerFailure` after ``after_events``."""
        self._failures.extend(_Failure(after_events, message) for _ in range(times))

    # The demo's producer is a callable object; any producer does here.
    def producer(self, request: DemoRequest) -> Producer:  # type: ignore[override]
        produce = super().producer(request)
        if not self._failures:
            return produce
        failure = self._failures.popleft()

        async def failing(writer: StreamWriter) -> None:
            await produce(_FailingWriter(writer, failure, self))

        return failing


class _FailingWriter:
    """Passes ``after_events`` writes on, then raises (each demo write is one event)."""

    def __init__(self, writer: StreamWriter, failure: _Failure, model: FaultyDemoModel) -> None:
        self._writer = writer
        self._failure = failure
        self._model = model
        self._written = 0

    async def write(self, data: bytes) -> None:
        if self._written >= self._failure.after_events:
            self._model.failed += 1
            raise ProducerFailure(self._failure.message)
        self._written += 1
        await self._writer.write(data)
