"""Building the session store that the settings name: ``memory`` or a Redis/Valkey URL."""

from __future__ import annotations

import logging
from typing import TypedDict

from trio_streams.core.limits import Limits
from trio_streams.core.manager import SessionManager
from trio_streams.settings import Settings
from trio_streams.stores.durable.memory import MemoryDurableStore
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.protocol import SessionStore
from trio_streams.stores.url import MEMORY, check_store, redis_url


class SessionOptions(TypedDict):
    """What a session is (its cap, expiry, keep-alive, limits, event ids), as both stores
    take it: the memory store's manager, and the Redis store for its shared sessions and
    its plain streams' manager."""

    max_bytes: int
    ttl: float
    gc_interval: float
    ping_interval: float | None
    limits: Limits
    event_ids: bool


def session_options(settings: Settings) -> SessionOptions:
    """The settings of a session, from ``serve``'s (one place for both stores)."""
    return SessionOptions(
        max_bytes=settings.session_max_bytes,
        ttl=settings.session_ttl,
        gc_interval=settings.gc_interval,
        ping_interval=settings.ping_interval,
        limits=settings.limits(),
        event_ids=settings.event_ids,
    )


def build_store(settings: Settings) -> tuple[SessionStore, SessionManager]:
    """The store ``settings`` names, and the in-memory manager behind it.

    With the Redis store that manager holds only plain streams (no conversation id),
    which are never shared.
    """
    if check_store(settings.store) == MEMORY:
        manager = SessionManager(**session_options(settings))
        durable_streams = MemoryDurableStore(
            max_stream_bytes=settings.ds_max_stream_bytes,
            max_streams=settings.ds_max_streams,
            max_total_bytes=settings.ds_max_total_bytes,
            gc_interval=settings.gc_interval,
        )
        return MemoryStore(manager, durable_streams), manager
    from trio_streams.stores.redis.store import (
        RedisStore,  # only a Redis deployment needs the client
    )

    # coredis logs each retry at INFO, including the expected ones (a script reloaded
    # after a Redis restart, a reconnect); our own log says what matters to an operator.
    logging.getLogger("coredis").setLevel(logging.WARNING)
    store = RedisStore(
        redis_url(settings.store),
        **session_options(settings),
        lease_seconds=settings.store_lease,
        follower_connections=settings.store_follower_connections,
        ds_max_stream_bytes=settings.ds_max_stream_bytes,
    )
    return store, store.memory
