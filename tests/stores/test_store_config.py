"""Choosing the store: ``memory`` or a Redis/Valkey URL."""

from __future__ import annotations

import pytest

from trio_streams.core.manager import SessionManager
from trio_streams.settings import Settings
from trio_streams.store_config import build_store
from trio_streams.stores.memory import MemoryStore
from trio_streams.stores.redis.store import RedisStore
from trio_streams.stores.url import check_store, redis_url


def test_memory_is_the_default() -> None:
    store, manager = build_store(Settings())
    assert isinstance(store, MemoryStore) and store.manager is manager


def test_a_redis_url_builds_the_shared_store_with_the_settings() -> None:
    settings = Settings(
        store="valkey://127.0.0.1:1/2",
        session_max_bytes=99,
        store_lease=3,
        store_follower_connections=7,
        ds_max_stream_bytes=1234,
        gc_interval=17,
    )
    store, manager = build_store(settings)
    assert isinstance(store, RedisStore) and isinstance(manager, SessionManager)
    assert store.url == "redis://127.0.0.1:1/2"
    assert (store.max_bytes, store.lease_seconds, manager.max_bytes) == (99, 3, 99)
    assert store.follower_connections == 7  # deprecated: accepted, without effect
    durable = store.durable_streams  # /ds from the same Redis
    assert (durable.max_stream_bytes, durable.gc_interval) == (1234, 17)


@pytest.mark.parametrize(
    "value", ["memory", "redis://h:6379/0", "rediss://h/1", "unix:///tmp/r.sock?db=0"]
)
def test_accepted_stores(value: str) -> None:
    assert check_store(value) == value


@pytest.mark.parametrize("value", ["", "Memory", "mysql://h/0", "redis://", "h:6379"])
def test_refused_stores(value: str) -> None:
    with pytest.raises(ValueError):
        check_store(value)


def test_valkey_urls_are_redis_urls() -> None:
    assert redis_url("valkey://h:1/0") == "redis://h:1/0"
    assert redis_url("valkeys://h:1/0") == "rediss://h:1/0"
    assert redis_url("redis://h:1/0") == "redis://h:1/0"


def test_logged_urls_hide_the_password() -> None:
    from trio_streams.stores.redis.commands import without_password

    assert without_password("redis://:s3cret@h:1/0") == "redis://:***@h:1/0"
    assert without_password("rediss://user:pw@h/2") == "rediss://user:***@h/2"
    assert without_password("redis://h:1/0") == "redis://h:1/0"
