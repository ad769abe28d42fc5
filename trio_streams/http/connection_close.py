"""Let Hypercorn close a connection the client asked to close, under Quart-Trio.

After a response to a request with ``Connection: close`` (or any HTTP/1.0 request),
Hypercorn closes the connection from within the app's last ``send``. Quart-Trio cancels its
request task as soon as that response ends, which can cancel the close half-way: the
connection then stays open until the client closes it. A client that waits for the close
to know the body has ended (HTTP/1.0 has no chunked encoding: nginx's default towards its
upstreams, health checkers) never sees the end of a stream.

Shielding the response's final ``send`` lets the close finish. Hypercorn already shields
its socket writes, so this adds no wait that was not there.
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
        if scope["type"] != "http" or not closes(scope):
            await self._app(scope, receive, send)  # no wrapper on the streaming hot path
            return

        async def send_final_shielded(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self._app(scope, receive, send_final_shielded)


def closes(scope: Any) -> bool:
    """Whether the connection closes after this request's response (HTTP/1.0 or asked)."""
    if scope.get("http_version") == "1.0":
        return True
    return any(
        name.lower() == b"connection" and b"close" in value.lower()
        for name, value in scope.get("headers", ())
    )
