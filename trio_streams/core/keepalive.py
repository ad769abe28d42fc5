"""SSE keep-alive comments for idle streams (SPEC §4).

The reference sent nothing during a long prefill, so clients and proxies dropped healthy
streams. The ping is written into the session's log like any other bytes: every client,
live or resuming, sees the same bytes at the same offsets, so byte counting stays exact.
"""

from __future__ import annotations

import trio

from trio_streams.core.session import StreamSession
from trio_streams.core.sse import DONE_TAIL, PING, ends_with_done


async def keep_alive(session: StreamSession, interval: float) -> None:
    """Append :data:`PING` whenever the stream has been silent for ``interval`` seconds.

    Sleeps until the moment a ping could first be due; an append in the meantime moves
    that moment, so an active stream gets no pings and this task wakes once per interval.
    Ends once the stream ends with ``data: [DONE]``: the answer is complete.

    The check compares the clock with the same deadline the sleep used, never
    ``now - last_append < interval``: in floats ``(t + interval) - t`` can round below
    ``interval`` (``(0.6 + 0.3) - 0.6 < 0.3``), and then the task woke at its deadline, found
    itself early and slept until that same past deadline, forever, under ``autojump_clock``
    without time passing (about one ping in a hundred). Now a wake-up that does not ping
    means an append moved the deadline later: the next sleep ends later, never at once.
    """
    while True:
        await trio.sleep_until(session.last_append_clock + interval)
        if trio.current_time() < session.last_append_clock + interval:
            continue  # an append during the sleep moved the deadline later
        if ends_with_done(session.tail(DONE_TAIL)) or not session.append(PING):
            return  # the answer is complete, or the session finalized
