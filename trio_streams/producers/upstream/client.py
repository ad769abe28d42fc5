"""The one pooled HTTP client that talks to the upstream model servers.

It lives as long as the server (``async with UpstreamClient.open(...)`` in ``serve``), so
connections are reused across requests; httpx runs natively on trio through anyio, so an
upstream request is cancelled by the trio cancel scope around it, which closes its
connection at once: that is how llama-server and vLLM learn to stop generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from trio_streams.producers.upstream.routes import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    Upstream,
    UpstreamRoutes,
)

#: RFC 9110 §7.6.1 hop-by-hop headers, plus those the HTTP client computes itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Request headers never forwarded: hop-by-hop, those httpx sets for the upstream (host,
#: length, encoding) and the conversation id, a secret that means nothing upstream.
_DROPPED_REQUEST_HEADERS = HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "x-conversation-id",
}
#: Where clients put a key: never forwarded when the key is trio-streams' own.
_CLIENT_CREDENTIALS = frozenset({"authorization", "x-api-key"})
#: Response headers never passed back: hop-by-hop, and those our server sets itself
#: (CORS included: an upstream's own ``Access-Control-Allow-Origin: *`` must not open
#: our API to origins that ``--cors-origin`` does not allow).
_DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "date",
    "server",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-expose-headers",
    "access-control-max-age",
}


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """What ``serve`` needs to reach the upstreams (from ``--upstream…`` options)."""

    routes: UpstreamRoutes
    #: Sent to every upstream that has no key of its own in ``api_keys``.
    api_key: str | None = None
    #: Keys by upstream name (``--upstream NAME=URL``): hosted APIs each want their own.
    api_keys: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: ``False`` when the client's credentials are trio-streams' own (its API keys are on):
    #: they must never reach an upstream.
    forward_client_auth: bool = True


class UpstreamClient:
    """A pooled :class:`httpx.AsyncClient` plus the forwarding rules for headers."""

    def __init__(self, http: httpx.AsyncClient, options: UpstreamOptions) -> None:
        self.http = http
        self.options = options
        self.routes = options.routes

    @classmethod
    @asynccontextmanager
    async def open(
        cls, options: UpstreamOptions, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncIterator[UpstreamClient]:
        """The client, open; ``transport`` replaces the network (in-process tests)."""
        timeout = httpx.Timeout(
            connect=options.connect_timeout,
            # Between two bytes of the answer; covers the wait for the first token (prefill).
            read=options.read_timeout,
            write=options.read_timeout,
            pool=options.connect_timeout,
        )
        # A stream holds its connection as long as generation lasts: no cap on connections
        # (the server's own limits bound them), a pool of idle ones for reuse.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) as http:
            yield cls(http, options)

    def api_key_for(self, upstream: Upstream) -> str | None:
        """The key ``upstream`` gets: its own (``--upstream-api-key NAME=KEY``), else ours."""
        if upstream.name is not None and upstream.name in self.options.api_keys:
            return self.options.api_keys[upstream.name]
        return self.options.api_key

    def request_headers(
        self, incoming: Iterable[tuple[str, str]], upstream: Upstream
    ) -> list[tuple[str, str]]:
        """The client's headers as ``upstream`` should see them.

        ``Authorization`` passes through unless ``--upstream-api-key`` gives this upstream
        a key, which then replaces it (so a hosted API can be used with either the client's
        key or ours), or unless the client's credentials are trio-streams' own
        (``forward_client_auth``). ``Accept-Encoding: identity`` keeps the upstream's SSE
        bytes uncompressed, so they can be split into events and stored exactly.
        """
        api_key = self.api_key_for(upstream)
        incoming = list(incoming)
        dropped = _DROPPED_REQUEST_HEADERS | _named_by_connection(incoming)
        if api_key:
            dropped |= {"authorization"}
        if not self.options.forward_client_auth:
            dropped |= _CLIENT_CREDENTIALS
        headers = [(name, value) for name, value in incoming if name.lower() not in dropped]
        if api_key:
            headers.append(("Authorization", f"Bearer {api_key}"))
        headers.append(("Accept-Encoding", "identity"))
        return headers


def response_headers(response: httpx.Response) -> list[tuple[str, str]]:
    """The upstream's response headers that a passed-through answer keeps."""
    headers = response.headers.multi_items()
    dropped = _DROPPED_RESPONSE_HEADERS | _named_by_connection(headers)
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def _named_by_connection(headers: list[tuple[str, str]]) -> set[str]:
    """Headers a ``Connection`` header declares hop-by-hop (RFC 9110 §7.6.1)."""
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
