"""Refuse an ``--upstream`` that is this server itself.

Proxying to ourselves sends every request round in a circle until the upstream read timeout
(ten minutes by default), which looks like a hung server. Comparing the upstream's host and
port with our own binds would miss the ways the same server hides behind another name:
``localhost`` for ``127.0.0.1``, a ``0.0.0.0`` bind, this machine's hostname or public
address, a port mapping or a reverse proxy in between. So the server asks instead: once it
listens, it sends each upstream one request carrying a fresh random nonce in a header, and
:class:`LoopGuard`, the outermost layer of the app, notes the nonces this server issued when
they come back to it. If one does, that upstream is this server.

The guard answers its own probe at once (``204``, before authentication and routing), so the
probe itself never goes round. A probe it did not issue passes through untouched: through a
trio-streams proxy in front of this one it reaches that proxy's upstream, so a loop of two
proxies pointing at each other is found too (unless the middle one requires an API key the
probe does not have). An upstream that is down, slow or refuses the odd path simply is not
this server: the probe never stops a server from starting for any other reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import httpx
import trio
from quart_trio import QuartTrio

from trio_streams.producers.upstream.client import UpstreamClient
from trio_streams.producers.upstream.routes import Upstream

#: The request header carrying a probe's nonce.
PROBE_HEADER = "X-Trio-Streams-Loop-Check"
#: The path (under the upstream's base URL) a probe asks for; any path would do.
PROBE_PATH = "/trio-streams-loop-check"
#: Seconds a probe may take. Our own answer is immediate; anything slower is not us.
PROBE_TIMEOUT = 3.0
#: Where :func:`install` keeps the guard, in ``app.extensions``.
EXTENSION_KEY = "trio_streams.loop_guard"

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class UpstreamLoopError(Exception):
    """An ``--upstream`` is this server itself; the message names it."""


class LoopGuard:
    """Wraps an ASGI app; answers the probes this server sent and notes their arrival."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Nonces of probes in flight (a few at start, one per upstream): bounded, so a
        #: client sending the header cannot make the guard keep anything.
        self._pending: set[str] = set()
        self._arrived: set[str] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self._pending:
            nonce = _header(scope, PROBE_HEADER.lower().encode())
            if nonce in self._pending:
                self._arrived.add(nonce)
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)

    async def reaches_self(self, client: UpstreamClient, upstream: Upstream) -> bool:
        """Whether a request sent to ``upstream`` arrives here."""
        nonce = secrets.token_hex(16)
        self._pending.add(nonce)
        try:
            # The upstream's own key goes along, as with every request: a trio-streams in
            # between that requires it would otherwise hide a loop behind its 401.
            headers = client.request_headers([(PROBE_HEADER, nonce)], upstream)
            # Down, refused, not HTTP, too slow: whatever it is, it did not come here.
            with trio.move_on_after(PROBE_TIMEOUT), suppress(httpx.HTTPError):
                url = upstream.url(PROBE_PATH)
                await client.http.get(url, headers=headers, timeout=PROBE_TIMEOUT)
            return nonce in self._arrived
        finally:
            self._pending.discard(nonce)
            self._arrived.discard(nonce)


def install(app: QuartTrio) -> LoopGuard:
    """Put a :class:`LoopGuard` outermost around ``app`` (call after other middleware)."""
    guard = LoopGuard(app.asgi_app)
    app.asgi_app = guard  # type: ignore[method-assign]
    app.extensions[EXTENSION_KEY] = guard
    return guard


async def refuse_self_upstreams(app: QuartTrio, client: UpstreamClient) -> None:
    """Raise :class:`UpstreamLoopError` if an upstream of ``client`` is ``app``'s server.

    Call it once the server listens. The upstreams are probed at once, so the wait is at
    most :data:`PROBE_TIMEOUT` (and only for an upstream that does not answer quickly).
    """
    guard: LoopGuard = app.extensions[EXTENSION_KEY]
    loops: list[Upstream] = []

    async def probe(upstream: Upstream) -> None:
        if await guard.reaches_self(client, upstream):
            loops.append(upstream)

    async with trio.open_nursery() as nursery:
        for upstream in client.routes.upstreams:
            nursery.start_soon(probe, upstream)
    if loops:
        names = ", ".join(str(upstream) for upstream in loops)
        raise UpstreamLoopError(
            f"{names} is this server itself (a request sent there came back here): "
            "proxying to it would go round in a circle. Give --upstream the URL of the "
            "model server, e.g. http://127.0.0.1:8000/v1 for vLLM."
        )


def _header(scope: Any, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None
