"""Reading a background response's log back as whole, parsed events.

A log whose oldest bytes were dropped (the cap) starts in the middle of an event: the
reader skips everything up to the first event it can be sure is whole, so a replay never
sends a torn event, and "the first retained sequence number" is always a real one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from trio_streams.core.session import OffsetLostError, SessionInfo
from trio_streams.core.sse_events import SSEEventSplitter
from trio_streams.producers.responses.events import event_payload
from trio_streams.stores.protocol import SessionStore, StreamHandle

#: Attempts to open a log whose start moves on under us (the cap dropping bytes meanwhile).
_OPEN_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One whole event of the log: its bytes as stored, and its payload if it has one."""

    raw: bytes
    payload: dict[str, Any] | None

    @property
    def sequence(self) -> int | None:
        value = self.payload.get("sequence_number") if self.payload else None
        return value if isinstance(value, int) else None


#: Yielded once by :meth:`ResponseLog.events` when it reaches its ``mark``.
CAUGHT_UP = LogEvent(b"", None)


@dataclass(frozen=True, slots=True)
class ResponseLog:
    """An opened log: where its retained bytes start, and what lookup said about it."""

    handle: StreamHandle
    offset: int
    info: SessionInfo

    @property
    def lost_prefix(self) -> bool:
        return self.offset > 0

    async def events(
        self, *, until: int | None = None, mark: int | None = None
    ) -> AsyncGenerator[LogEvent, None]:
        """The retained whole events in order, following the session while it runs.

        With ``until``, only as far as that byte offset (the end when the log was
        opened). With ``mark``, :data:`CAUGHT_UP` comes once, as soon as everything
        before that offset was yielded: a reader knows what existed, without waiting.
        """
        splitter = SSEEventSplitter()
        position = self.offset
        skip = self.lost_prefix  # the first "event" may be the tail of a dropped one
        if mark is not None and position >= mark:
            mark = None
            yield CAUGHT_UP
        if until is not None and position >= until:
            return
        async with aclosing(self.handle.read(self.offset)) as chunks:
            async for chunk in chunks:
                position += len(chunk)
                for raw in splitter.feed(chunk):
                    if skip:
                        skip = False
                        continue
                    yield LogEvent(raw, event_payload(raw))
                if mark is not None and position >= mark:
                    mark = None
                    yield CAUGHT_UP
                if until is not None and position >= until:
                    return
        if mark is not None:  # the log ended before the mark (it shrank: the cap)
            yield CAUGHT_UP


async def open_response_log(
    store: SessionStore, response_id: str, owner: str | None
) -> ResponseLog | None:
    """The log of ``response_id`` from its first retained byte; ``None`` if unknown,
    expired or another API key's."""
    found = [
        info
        for info in await store.lookup([response_id], owner=owner)
        if info.conversation_id == response_id
    ]
    if not found:
        return None
    offset = 0
    for _ in range(_OPEN_ATTEMPTS):
        try:
            handle = await store.open(response_id, offset, owner=owner)
        except OffsetLostError as lost:
            offset = lost.dropped_prefix
            continue
        return None if handle is None else ResponseLog(handle, offset, found[0])
    return None
