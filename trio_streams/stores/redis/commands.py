"""The Redis store's commands: its Lua scripts on the shared command connections, the
errors that mean "Redis cannot serve this now", and the timings every script is passed.

The producer side, the reader side and the cancel/lease side all talk to Redis through
one :class:`RedisCommands`, so that the store's settings reach every script the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import coredis
import trio
from coredis.exceptions import RedisError

from trio_streams.core.sse import error_event
from trio_streams.stores.protocol import StoreUnavailableError
from trio_streams.stores.redis import scripts as redis_scripts
from trio_streams.stores.redis.keys import PREFIX

#: Errors that mean "Redis cannot serve this now": connection refused or lost, timeouts,
#: and Redis's own refusals (out of memory, still loading after a restart). Background
#: work (appends, renewals, followers) waits them out; HTTP requests answer 503. coredis
#: may also surface a connection closed under it (a blocking read's connection is dropped
#: when that read is cancelled) as anyio's Closed/BrokenResourceError: a retry gets a new one.
REDIS_ERRORS = (
    RedisError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)
ORPHAN_MESSAGE = "generation interrupted: the server instance producing it stopped"
SCRIPTS = (
    "START",
    "APPEND",
    "APPEND_MANY",
    "FINALIZE",
    "STOP",
    "RENEW_MANY",
    "OPEN",
    "CHECK",
    "LOOKUP",
)


@contextmanager
def unavailable() -> Iterator[None]:
    """Turn "Redis cannot serve this" into :class:`StoreUnavailableError` (HTTP ``503``).

    Besides an unreachable server, that includes Redis's own refusals (out of memory,
    loading its dataset after a restart, read-only replica).
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        raise StoreUnavailableError(f"session store unavailable: {exc}") from exc


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def only(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """True if ``exc`` is one of ``kinds``, alone or in (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(only(inner, kinds) for inner in exc.exceptions)
    return isinstance(exc, kinds)


def without_password(url: str) -> str:
    """``url`` fit for a log line: a password in it is replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class RedisCommands:
    """The store's scripts, run on ``client`` with the store's settings."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        *,
        event_ids: bool,
        lease_seconds: float,
        ttl: float,
        max_bytes: int,
    ) -> None:
        self.client = client
        self.event_ids = event_ids
        self.lease_seconds = lease_seconds
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._scripts = {
            name: client.register_script(getattr(redis_scripts, name)) for name in SCRIPTS
        }

    async def run(self, name: str, *args: str | int | bytes) -> Any:
        stamp = "1" if self.event_ids else "0"
        return await self._scripts[name](keys=[], args=[PREFIX, stamp, *args])

    async def retrying(self, name: str, *args: str | int | bytes) -> Any:
        """Run a script until Redis answers (a producer waits out an outage)."""
        delay = 0.05
        while True:
            try:
                return await self.run(name, *args)
            except REDIS_ERRORS:
                await trio.sleep(delay)
                delay = min(delay * 2, 1.0)

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease_seconds * 1000))

    @property
    def ttl_seconds(self) -> int:
        # Readers still need the log a moment after the session ends, even with TTL 0.
        return max(1, round(self.ttl))

    @property
    def orphan_event(self) -> str:
        return error_event(ORPHAN_MESSAGE).decode()
