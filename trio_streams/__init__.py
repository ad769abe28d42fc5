"""trio-streams: resumable, cancellable LLM token streams over HTTP, on trio.

Embedding API::

    async with SessionManager() as manager:
        session = manager.start("conv-1", my_producer)
        async for chunk in session.read(0):
            ...
"""

from trio_streams.core.bytelog import ByteLog
from trio_streams.core.limits import CapacityError, Limits
from trio_streams.core.manager import ManagerClosedError, SessionManager
from trio_streams.core.producer import Producer, StreamWriter
from trio_streams.core.session import OffsetLostError, SessionInfo, StreamSession
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.protocol import SessionStore, StoreUnavailableError, StreamHandle

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
