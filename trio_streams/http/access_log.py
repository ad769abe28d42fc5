"""Structured access logs: one JSON line per request, with conversation ids shortened.

An ASGI middleware rather than Hypercorn's access log: it sees the response's real end,
so a stream's duration and byte count are what the client got, and it writes the path
only after replacing the conversation id with its fingerprint (:func:`redact`), since an
id is a secret. The query string is never logged, only the ``from`` offset it carried.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from trio_streams.core.redact import redact

logger = logging.getLogger("trio_streams.access")

# ASGI's own types, loosely: Quart's precise TypedDicts add nothing to a pass-through.
Scope = Any
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

STREAM_PREFIX = "/v1/stream/"
#: The scope key under which :class:`AccessLog` leaves the ``send`` it wraps and the
#: :class:`Tally` of the response, for a transport that sends many body messages (a
#: stream: :mod:`trio_streams.http.stream_transport`) to skip the counting wrapper
#: and add its bytes to the tally itself.
UNCOUNTED = "trio_streams.access_log.uncounted"


class Tally:
    """What the client was sent: the status and the body bytes."""

    __slots__ = ("sent", "status")

    def __init__(self) -> None:
        self.status = 0
        self.sent = 0


def redacted_path(path: str) -> str:
    """``/v1/stream/<id>`` becomes ``/v1/stream/#3f9a1c0b``; other paths are unchanged."""
    if path.startswith(STREAM_PREFIX) and len(path) > len(STREAM_PREFIX):
        return STREAM_PREFIX + redact(path[len(STREAM_PREFIX) :])
    return path


def access_record(scope: Scope, status: int, sent: int, seconds: float) -> dict[str, object]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    record: dict[str, object] = {
        "method": scope.get("method", ""),
        "path": redacted_path(scope.get("path", "")),
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "bytes": sent,
    }
    if "conv_id" in query:
        record["conv_id"] = redact(query["conv_id"][0])
    if "from" in query:
        record["from"] = query["from"][0][:32]
    client = scope.get("client")
    if client:
        record["client"] = client[0]
    return record


class AccessLog:
    """Wraps an ASGI app; logs each HTTP request once its response has ended."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        tally = Tally()

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                tally.status = int(message["status"])
            elif message["type"] == "http.response.body":
                tally.sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._app({**scope, UNCOUNTED: (send, tally)}, receive, counting_send)
        finally:
            seconds = time.perf_counter() - started
            record = access_record(scope, tally.status, tally.sent, seconds)
            logger.info(json.dumps(record, separators=(",", ":")))
