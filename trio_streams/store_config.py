"""Choosing the session store from settings: ``memory`` or a Redis/Valkey URL."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from trio_streams.core.manager import SessionManager
from trio_streams.settings import Settings
from trio_streams.stores.store import MemoryStore, SessionStore

MEMORY = "memory"
#: URL schemes of the shared store. ``valkey://`` is read as ``redis://``: same protocol.
REDIS_SCHEMES = ("redis", "rediss", "valkey", "valkeys", "unix")


def check_store(value: str) -> str:
    """``memory`` or a Redis URL; raises :class:`ValueError` with a readable reason."""
    if value == MEMORY:
        return value
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"expected 'memory' or a URL such as redis://HOST:PORT/DB, got {value!r}")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"no host in {value!r}")
    return value


def redis_url(value: str) -> str:
    """The URL coredis understands (``valkey://`` → ``redis://``)."""
    if value.startswith("valkeys://"):
        return "rediss://" + value[len("valkeys://") :]
    if value.startswith("valkey://"):
        return "redis://" + value[len("valkey://") :]
    return value


def as_store(sessions: SessionStore | SessionManager) -> tuple[SessionStore, SessionManager]:
    """A store and its in-memory manager, from either (a bare manager is a MemoryStore)."""
    if isinstance(sessions, SessionManager):
        return MemoryStore(sessions), sessions
    return sessions, sessions.manager


def build_store(settings: Settings) -> tuple[SessionStore, SessionManager]:
    """The store ``settings`` names, and the in-memory manager behind it.

    With the Redis store that manager holds only plain streams (no conversation id),
    which are never shared.
    """
    if check_store(settings.store) == MEMORY:
        manager = SessionManager(
            max_bytes=settings.session_max_bytes,
            ttl=settings.session_ttl,
            gc_interval=settings.gc_interval,
            ping_interval=settings.ping_interval,
            limits=settings.limits(),
            event_ids=settings.event_ids,
        )
        return MemoryStore(manager), manager
    from trio_streams.stores.redis.store import (
        RedisStore,  # only a Redis deployment needs the client
    )

    # coredis logs each retry at INFO, including the expected ones (a script reloaded
    # after a Redis restart, a reconnect); our own log says what matters to an operator.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    store = RedisStore(
        redis_url(settings.store),
        max_bytes=settings.session_max_bytes,
        ttl=settings.session_ttl,
        gc_interval=settings.gc_interval,
        ping_interval=settings.ping_interval,
        lease_seconds=settings.store_lease,
        follower_connections=settings.store_follower_connections,
        event_ids=settings.event_ids,
        limits=settings.limits(),
    )
    return store, store.memory
