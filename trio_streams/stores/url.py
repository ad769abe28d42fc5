"""The store setting: ``memory``, or the URL of the Redis (or Valkey) that instances share."""

from __future__ import annotations

from urllib.parse import urlsplit

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
