"""Global limits of one server: a byte budget, a session count and a producer count.

Admission works by reservation, which makes the memory bound provable rather than hoped
for: a running session may grow up to its cap (``max_bytes``), so it *reserves* that cap
when it is admitted; once finished, it holds only the bytes it retained. The manager admits
a new stream only if

    running sessions x max_bytes + bytes retained by finished sessions + max_bytes
        <= max_total_bytes

evicting finished sessions oldest-first to get there, and refusing (``429``) when only
running ones are left. Appends then never need a check on the hot path: no running
session can outgrow its reservation, and a finished one never grows. Retained bytes of all
sessions therefore stay within ``max_total_bytes`` whatever clients do; the overhead on top
is per-object bookkeeping plus, per connected reader, at most one read chunk
(:data:`~trio_streams.session.MAX_READ_CHUNK`) and its socket buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MAX_TOTAL_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_SESSIONS = 10_000
DEFAULT_MAX_PRODUCERS = 256
#: What ``Retry-After`` tells a refused client: running streams finish within seconds
#: (and then become evictable), so a short wait is the honest estimate.
DEFAULT_RETRY_AFTER = 2


@dataclass(frozen=True, slots=True)
class Limits:
    """Capacity of one manager; ``None`` means unlimited."""

    max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES
    max_sessions: int | None = DEFAULT_MAX_SESSIONS
    max_producers: int | None = DEFAULT_MAX_PRODUCERS
    retry_after: int = DEFAULT_RETRY_AFTER

    def check(self, session_max_bytes: int) -> None:
        """Refuse settings under which not even one stream could ever be admitted."""
        if self.max_total_bytes is not None and self.max_total_bytes < session_max_bytes:
            raise ValueError("max_total_bytes must be at least the session cap (max_bytes)")
        for name in ("max_sessions", "max_producers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")


class CapacityError(Exception):
    """No room for a new stream: only running sessions are left to hold the limit."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ConversationOwnedError(Exception):
    """A stream request names a conversation id that another API key's session holds."""


@dataclass(slots=True)
class ManagerStats:
    """Monotonic counters kept by the manager, exported by ``/metrics``."""

    #: Producers stopped by DELETE or replacement (not by finishing).
    cancels: int = 0
    #: Sessions removed before their time: by garbage collection (``ttl``) or for room.
    evictions_ttl: int = 0
    evictions_capacity: int = 0
    #: New streams refused with ``429``, by the limit that refused them.
    rejections: dict[str, int] = field(default_factory=dict)
