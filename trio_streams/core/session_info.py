"""What ``POST /v1/streams/lookup`` says about a session, as the server writes it and the
client reads it back.

Pure data, apart from :mod:`trio_streams.core.session` (which re-exports it): the
resuming client reads its lookup answers into it without the session machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What ``POST /v1/streams/lookup`` reveals about a session."""

    conversation_id: str
    is_done: bool
    total_bytes: int
    started_at: int
    completed_at: int
    #: The session's current generation: a client pins it when it resumes.
    generation: str = ""
    #: Where the retained bytes start: a client that lost ``from=0`` resumes here.
    dropped_prefix: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "conversation_id": self.conversation_id,
            "is_done": self.is_done,
            "total_bytes": self.total_bytes,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "generation": self.generation,
            "dropped_prefix": self.dropped_prefix,
        }

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> Self:
        """The inverse of :meth:`as_json`: a lookup entry as a client reads it back
        (``generation`` and ``dropped_prefix`` default for an older server)."""
        return cls(
            conversation_id=str(item["conversation_id"]),
            is_done=bool(item["is_done"]),
            total_bytes=int(item["total_bytes"]),
            started_at=int(item["started_at"]),
            completed_at=int(item["completed_at"]),
            generation=str(item.get("generation", "")),
            dropped_prefix=int(item.get("dropped_prefix", 0)),
        )
