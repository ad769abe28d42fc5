"""``Stream-Cursor``: the protocol's CDN-collapsing cursor for live reads.

Time is cut in 20-second intervals counted from 2024-10-09T00:00:00Z; the cursor is the
current interval number. A client echoes the last cursor it got (``cursor=``); if that is
not older than now, the answer must still move forward, so it is advanced by a random
1-3600 s jitter (in whole intervals, at least one): cursors never repeat or go back, and
a CDN never serves the same cached empty answer forever.
"""

from __future__ import annotations

import math
import random
import re

INTERVAL_SECONDS = 20
#: 2024-10-09T00:00:00Z as a Unix time.
EPOCH_UNIX = 1_728_432_000
MAX_JITTER_SECONDS = 3600
_CURSOR = re.compile(r"[0-9]{1,18}")


def current_interval(now_unix: float) -> int:
    return max(0, math.floor((now_unix - EPOCH_UNIX) / INTERVAL_SECONDS))


def response_cursor(
    client_cursor: str | None, now_unix: float, rng: random.Random | None = None
) -> str:
    """The cursor of a live answer, given the one the client echoed (if any)."""
    interval = current_interval(now_unix)
    if client_cursor is None or not _CURSOR.fullmatch(client_cursor):
        return str(interval)
    echoed = int(client_cursor)
    if echoed < interval:
        return str(interval)
    jitter_seconds = (rng or random).randint(1, MAX_JITTER_SECONDS)
    return str(echoed + max(1, math.ceil(jitter_seconds / INTERVAL_SECONDS)))
