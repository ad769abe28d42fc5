"""Server settings, one place for every default the SPEC says must be configurable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from trio_streams.core.address import DEFAULT_HOST, DEFAULT_PORT
from trio_streams.core.limits import (
    DEFAULT_MAX_PRODUCERS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_TOTAL_BYTES,
    Limits,
)
from trio_streams.core.manager import (
    DEFAULT_GC_INTERVAL,
    DEFAULT_MAX_BYTES,
    DEFAULT_PING_INTERVAL,
    DEFAULT_TTL,
)
from trio_streams.http.option_values import DEFAULT_LONG_POLL_TIMEOUT, DEFAULT_MAX_LOOKUP_IDS
from trio_streams.producers.upstream.routes import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from trio_streams.stores.durable.memory import DEFAULT_MAX_STREAM_BYTES, DEFAULT_MAX_STREAMS
from trio_streams.stores.durable.memory import DEFAULT_MAX_TOTAL_BYTES as DEFAULT_MAX_TOTAL_BYTES_DS

#: Hypercorn's listen backlog is 100; when every client of a restarted instance reconnects at
#: once, the connections past it wait for SYN retries (1 s, 3 s, 7 s...) or time out.
#: uvicorn's is 2048, which holds a reconnect storm of 1,100 clients on 2 cores (the kernel
#: caps it at net.core.somaxconn).
DEFAULT_BACKLOG = 2048
#: Where ``serve --workers N`` hands its settings to the worker processes it spawns.
SETTINGS_VARIABLE = "TRIO_STREAMS_SETTINGS"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Demo model pace, tokens per second.
    demo_tps: float = 20.0
    #: Demo model delay before the first token, standing in for prompt processing.
    demo_prefill: float = 0.0
    #: Cap of one session's log (bytes); older bytes are dropped beyond it.
    session_max_bytes: int = DEFAULT_MAX_BYTES
    #: How long a finished session stays readable (seconds).
    session_ttl: float = DEFAULT_TTL
    #: How often garbage collection runs (seconds).
    gc_interval: float = DEFAULT_GC_INTERVAL
    #: Idle time before a keep-alive comment is written (seconds; 0 disables).
    ping_interval: float = DEFAULT_PING_INTERVAL
    #: Largest accepted request body (bytes).
    max_body_bytes: int = 1024 * 1024
    #: Stamp every SSE event with ``id: <byte offset after it>`` so EventSource can resume
    #: through ``Last-Event-ID``; off leaves the producer's bytes untouched.
    event_ids: bool = True
    #: How long shutdown waits for responses to finish (seconds); ``None``: the Hypercorn
    #: config file's, else Hypercorn's own (3).
    graceful_timeout: float | None = None
    #: Where sessions live: ``memory`` (this process) or ``redis://HOST:PORT/DB`` (shared
    #: by every instance pointed at it; ``valkey://`` and ``rediss://`` work too).
    store: str = "memory"
    #: Redis store only: how long a dead instance's sessions wait before readers
    #: finalize them with an error event (seconds).
    store_lease: float = 10.0
    #: Redis store only: sessions one instance follows at once, each with a blocking read
    #: on a Redis connection of its own; past it, their readers take turns (bytes arrive
    #: later), while producers and requests keep their own connections.
    store_follower_connections: int = 1000
    #: API keys; empty means no authentication. Sessions belong to the key that made them.
    api_keys: tuple[str, ...] = ()
    #: Bytes all sessions together may hold (a running one counts as its full cap).
    max_total_bytes: int | None = DEFAULT_MAX_TOTAL_BYTES
    #: Sessions registered at once (running and finished).
    max_sessions: int | None = DEFAULT_MAX_SESSIONS
    #: Producers running at once (streams being generated).
    max_producers: int | None = DEFAULT_MAX_PRODUCERS
    #: Ids one lookup request may name.
    max_lookup_ids: int = DEFAULT_MAX_LOOKUP_IDS
    #: ``URL`` / ``NAME=URL`` of OpenAI-compatible model servers; empty = the demo model.
    upstreams: tuple[str, ...] = ()
    #: Replaces the client's ``Authorization`` towards the upstreams when set.
    upstream_api_key: str | None = None
    #: Keys of their own for named upstreams (``NAME=URL``), by name: these win.
    upstream_api_keys: Mapping[str, str] = field(default_factory=dict)
    #: Seconds to open a connection to an upstream.
    upstream_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    #: Seconds an upstream may stay silent (prefill included) before the request fails.
    upstream_read_timeout: float = DEFAULT_READ_TIMEOUT
    #: Browser origins (``scheme://host[:port]``, or ``*`` for any) whose pages may call
    #: the API across origins (CORS); empty: same-origin pages only.
    cors_origins: tuple[str, ...] = ()
    #: What ``/`` serves: ``builtin`` (the chat page) or ``upstream`` (the upstream's own
    #: page, passed through); ``page_dir`` serves a built page's files instead of either.
    page: Literal["builtin", "upstream"] = "builtin"
    page_dir: str | None = None
    #: Durable Streams (``/ds``): the largest stream, in bytes (an append past it: ``413``).
    ds_max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES
    #: Durable Streams: streams held at once, and the bytes of all of them (``429`` beyond).
    ds_max_streams: int = DEFAULT_MAX_STREAMS
    ds_max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES_DS
    #: Durable Streams: seconds a long-poll waits for data before its ``204``.
    ds_long_poll_timeout: float = DEFAULT_LONG_POLL_TIMEOUT

    # -- Hypercorn, for ``serve`` (under the ``hypercorn`` command, its own flags set these) --
    #: Addresses (``HOST:PORT``, ``[::1]:PORT``, ``unix:PATH``, ``fd://N``); empty: ``host``
    #: and ``port``, unless the config file names its own.
    bind: tuple[str, ...] = ()
    #: Hypercorn's own TOML config file; the settings here that are set win over it.
    hypercorn_config: str | None = None
    #: TLS certificate chain and key (PEM); with both, HTTPS, and HTTP/2 through ALPN.
    certfile: str | None = None
    keyfile: str | None = None
    #: Listen queue length; ``None``: the config file's, else :data:`DEFAULT_BACKLOG`.
    backlog: int | None = None
    #: Trust the client address a reverse proxy sends: ``legacy`` (``X-Forwarded-For``,
    #: ``-Proto``, ``-Host``) or ``modern`` (``Forwarded``); ``None`` trusts nothing.
    proxy_headers: Literal["legacy", "modern"] | None = None
    #: Proxies in front of this server whose forwarding headers are trusted.
    trusted_hops: int = 1
    #: Worker processes of ``serve`` (above 1: Hypercorn's workers, on a shared store).
    workers: int = 1

    def limits(self) -> Limits:
        return Limits(
            max_total_bytes=self.max_total_bytes,
            max_sessions=self.max_sessions,
            max_producers=self.max_producers,
        )

    def to_json(self) -> str:
        """These settings as JSON (``serve --workers`` hands them to its workers so)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """The settings :meth:`to_json` wrote (JSON's lists back to tuples)."""
        values = json.loads(text)
        for item in fields(cls):
            if isinstance(item.default, tuple) and item.name in values:
                values[item.name] = tuple(values[item.name])
        return cls(**values)
