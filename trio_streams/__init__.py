"""trio-streams: resumable, cancellable LLM token streams over HTTP, on trio.

Embedding API::

    async with SessionManager() as manager:
        session = manager.start("conv-1", my_producer)
        async for chunk in session.read(0):
            ...
"""

from .bytelog import ByteLog
from .limits import CapacityError, Limits
from .manager import ManagerClosedError, SessionManager
from .producer import Producer, StreamWriter
from .session import OffsetLostError, SessionInfo, StreamSession
from .store import MemoryStore, SessionStore, StoreUnavailableError, StreamHandle

__all__ = [
    "ByteLog",
    "CapacityError",
    "Limits",
    "ManagerClosedError",
    "MemoryStore",
    "OffsetLostError",
    "Producer",
    "SessionInfo",
    "SessionManager",
    "SessionStore",
    "StoreUnavailableError",
    "StreamHandle",
    "StreamSession",
    "StreamWriter",
]
