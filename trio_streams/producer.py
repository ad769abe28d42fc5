"""The producer interface: any async function that writes SSE bytes to a writer.

A producer is ``async def produce(writer: StreamWriter) -> None``. It runs in its own
nursery under the cancel scope of its session, so it may start child tasks, and it is
stopped by cancellation (DELETE, replacement, shutdown), never by a flag it has to check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from .session import SessionClosedError, StreamSession


class StreamWriter(Protocol):
    """Where a producer puts its bytes."""

    async def write(self, data: bytes) -> None:
        """Append ``data`` (one or more whole SSE events) to the stream.

        Keep-alive comments are inserted only between writes, so writing whole events
        keeps every event intact. ``write`` is a checkpoint: a cancelled producer stops here.
        """
        ...


Producer = Callable[[StreamWriter], Awaitable[None]]


class SessionWriter:
    """The :class:`StreamWriter` over an in-memory :class:`StreamSession`."""

    __slots__ = ("_session",)

    def __init__(self, session: StreamSession) -> None:
        self._session = session

    async def write(self, data: bytes) -> None:
        if not self._session.append(data):
            # Finalized: if it was a cancel (DELETE, replacement, shutdown) this
            # checkpoint raises Cancelled; anything else is a misuse worth an error.
            await trio.lowlevel.checkpoint()
            raise SessionClosedError("the session was finalized")
        await trio.lowlevel.checkpoint()
