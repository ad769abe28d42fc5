"""The producer interface: any async function that writes SSE bytes to a writer.

A producer is ``async def produce(writer: StreamWriter) -> None``. It runs in its own
nursery under the cancel scope of its session, so it may start child tasks, and it is
stopped by cancellation (DELETE, replacement, shutdown), never by a flag it has to check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.generations import event_id_prefix
from trio_streams.core.session import SessionClosedError, StreamSession


class StreamWriter(Protocol):
    """Where a producer puts its bytes."""

    async def write(self, data: bytes) -> None:
        """Append ``data`` (one or more whole SSE events) to the stream.

        Keep-alive comments are inserted only between writes, so writing whole events
        keeps every event intact. ``write`` is a cancel point: a cancelled producer stops
        here. (A producer's own waits are its schedule points: ``write`` may not be one.)
        """
        ...


Producer = Callable[[StreamWriter], Awaitable[None]]
"""``async def produce(writer: StreamWriter) -> None``: writes a stream's SSE events.

It runs under its session's cancel scope: DELETE, replacement and shutdown stop it by
cancellation at its next checkpoint, so it never has to check a flag.
"""


#: A producer that writes in a loop without waiting for anything still lets other tasks
#: run after this many writes (see :meth:`SessionWriter.write`).
SCHEDULE_EVERY = 16


class SessionWriter:
    """The :class:`StreamWriter` over an in-memory :class:`StreamSession`.

    With ``event_ids`` (the default) every event gets an ``id:`` naming the session's
    generation and the logical offset just after it (see :mod:`trio_streams.core.event_ids`),
    so every producer's stream can be resumed by a browser ``EventSource`` through
    ``Last-Event-ID``.
    """

    __slots__ = ("_session", "_stamper", "_writes")

    def __init__(self, session: StreamSession, *, event_ids: bool = True) -> None:
        self._session = session
        prefix = event_id_prefix(session.generation)
        self._stamper = EventIdStamper(prefix) if event_ids else None
        self._writes = 0

    def write_nowait(self, data: bytes) -> bool:
        """Stamp and append at once; ``False`` (nothing stored) once the session is finalized.

        No checkpoint between reading ``total_bytes`` and the append: a keep-alive ping
        cannot slip in between, so the ids are exact offsets.
        """
        if self._session.is_done:
            return False
        if self._stamper is not None:
            data = self._stamper.stamp(data, self._session.total_bytes)
        return self._session.append(data)

    async def write(self, data: bytes) -> None:
        if not self.write_nowait(data):
            # Finalized: if it was a cancel (DELETE, replacement, shutdown) this
            # checkpoint raises Cancelled; anything else is a misuse worth an error.
            await trio.lowlevel.checkpoint()
            raise SessionClosedError("the session was finalized")
        # A cancel point every write; a schedule point only every SCHEDULE_EVERY-th: a
        # producer waits for its next bytes (an upstream read, a timer) between writes
        # anyway, and a task switch per write was a tenth of an event's CPU.
        self._writes += 1
        if self._writes % SCHEDULE_EVERY:
            await trio.lowlevel.checkpoint_if_cancelled()
        else:
            await trio.lowlevel.checkpoint()
