"""The client side: the resuming Python client and ``trio-streams tail``.

It talks to a server over HTTP only, so it imports :mod:`trio_streams.core` (SSE parsing)
and nothing of the server's layers.
"""

from trio_streams.client.streams_client import (
    Backoff,
    OffsetLostError,
    StreamError,
    StreamEvicted,
    StreamFailed,
    StreamInfo,
    StreamNotFoundError,
    StreamReplaced,
    StreamsClient,
    StreamStopped,
    chunk_text,
)
from trio_streams.core.sse_split import Event

__all__ = [
    "Backoff",
    "Event",
    "OffsetLostError",
    "StreamError",
    "StreamEvicted",
    "StreamFailed",
    "StreamInfo",
    "StreamNotFoundError",
    "StreamReplaced",
    "StreamStopped",
    "StreamsClient",
    "chunk_text",
]
