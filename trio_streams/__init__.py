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

__all__ = [
    "ByteLog",
    "CapacityError",
    "Limits",
    "ManagerClosedError",
    "OffsetLostError",
    "Producer",
    "SessionInfo",
    "SessionManager",
    "StreamSession",
    "StreamWriter",
]
