"""A deterministic test kit for code built on trio-streams, and a pytest plugin.

The whole HTTP API runs in-process (:func:`open_streams_server`), with responses streamed
through an httpx transport instead of a socket; with pytest-trio's ``autojump_clock``
the TTL, pings, garbage collection, the demo model's pace and the clients' timeouts run
in virtual time. Faults come on demand: cut or stall a reader's connection at byte N or
after event K (:class:`Network`), make the producer fail (:class:`FaultyDemoModel`), make
an upstream go silent or drop mid-event (:class:`FakeUpstream`), stop or replace a stream
from another client, shut the server down. :class:`RedisServer` starts a private Redis
for the same tests on the Redis store (in real time).

Layer: the top. The kit wires the app as ``serve`` does, so it may import every layer and
the top-level wiring (``server``, ``settings``); nothing in the package imports it.

Names are imported on first use: pytest loads :mod:`trio_streams.testing.plugin` in every
project that has trio-streams installed, and that must not import the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trio_streams.testing.fake_upstream import FakeUpstream, Script
    from trio_streams.testing.faults import Connection, Fault, Network
    from trio_streams.testing.model import FaultyDemoModel, ProducerFailure
    from trio_streams.testing.redis import RedisServer
    from trio_streams.testing.server import StreamsServer, chat_request, open_streams_server
    from trio_streams.testing.transport import StreamingASGITransport

_WHERE = {
    "FakeUpstream": "fake_upstream",
    "Script": "fake_upstream",
    "Connection": "faults",
    "Fault": "faults",
    "Network": "faults",
    "FaultyDemoModel": "model",
    "ProducerFailure": "model",
    "RedisServer": "redis",
    "StreamsServer": "server",
    "chat_request": "server",
    "open_streams_server": "server",
    "StreamingASGITransport": "transport",
}

__all__ = [
    "Connection",
    "FakeUpstream",
    "Fault",
    "FaultyDemoModel",
    "Network",
    "ProducerFailure",
    "RedisServer",
    "Script",
    "StreamingASGITransport",
    "StreamsServer",
    "chat_request",
    "open_streams_server",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'trio_streams.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"trio_streams.testing.{_WHERE[name]}"), name)
