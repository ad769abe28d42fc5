"""What a reader's response body holds: the session's bytes from an offset, then the end
signal (:mod:`trio_streams.core.end_reasons`) when the stream ended for a reason the bytes
do not say themselves (stopped, replaced, evicted, shutdown).

Computed here, once, for every transport that sends a reader's body (the Quart response
of ``http/routes/streams.py``, or any faster path): they differ in how they send chunks,
never in which chunks a reader gets.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from trio_streams.core.end_reasons import end_event_after, signals
from trio_streams.stores.protocol import StreamHandle

#: Enough of the last chunk sent to tell whether it ended an event.
_TAIL = 4


async def read_then_end(handle: StreamHandle, offset: int) -> AsyncGenerator[bytes, None]:
    """The bytes of ``handle`` from ``offset`` on, then its end event if it has one.

    :class:`~trio_streams.core.session.OffsetLostError` (a reader overtaken by the cap)
    propagates, with no end event: the reader's resume gets the ``400`` that says so.
    """
    tail = b""
    async with aclosing(handle.read(offset)) as chunks:
        async for chunk in chunks:
            tail = (tail + chunk[-_TAIL:])[-_TAIL:]
            yield chunk
    reason = handle.ending()
    if reason is not None and signals(reason):
        yield end_event_after(reason, tail)
