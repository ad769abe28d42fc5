"""Let Hypercorn close a connection at the end of a response, under Quart-Trio.

Hypercorn closes the connection from within the app's last ``send`` when the response
ends and the connection must not stay open: the client asked (``Connection: close``, any
HTTP/1.0 request) or the server is shutting down. Quart-Trio cancels its request task as
soon as that response ends, which can cancel the close half-way: the connection then stays
open until the client closes it, or until Hypercorn's graceful timeout at shutdown. So a
client that waits for the close to know the body has ended (HTTP/1.0 has no chunked
encoding: nginx's default towards its upstreams, health checkers) never saw a stream end,
and SIGTERM waited out the graceful timeout (3 s by default) whenever a client kept its
connection alive after its stream was finalized.

Shielding the response's final ``send`` lets the close finish. Hypercorn already shields
its socket writes, so this adds no wait that was not there. The wrapper is on every HTTP
request (which connection is still kept alive at shutdown is only known then); on the
streaming path it costs one call per chunk, about 0.2 µs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class ShieldFinalSend:
    """Wraps an ASGI app; its final ``http.response.body`` is sent shielded from cancellation."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_final_shielded(message: Message) -> None:
            if message.get("more_body", False) or message["type"] != "http.response.body":
                await send(message)  # the streaming path: one test, then Hypercorn's send
                return
            with trio.CancelScope(shield=True):
                await send(message)

        await self._app(scope, receive, send_final_shielded)
