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

Not while the request's body is still arriving, unless the client asked for the close: an
early answer (``413`` to a 10 MB upload) would then close a socket with unread bytes, and
the client, still writing, gets a reset (``EPIPE``) instead of the answer. Left open, the
client finishes its upload and reads the ``413``, as before.
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

        body_received = closes(scope)

        async def receive_noting_the_body() -> Message:
            nonlocal body_received  # called once per body chunk, and for the disconnect
            message: Message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_received = True
            return message

        async def send_final_shielded(message: Message) -> None:
            if message.get("more_body", False) or message["type"] != "http.response.body":
                await send(message)  # the streaming path: one test, then Hypercorn's send
            elif not body_received:
                await send(message)  # an early answer: see the module's docstring
            else:
                with trio.CancelScope(shield=True):
                    await send(message)

        await self._app(scope, receive_noting_the_body, send_final_shielded)


def closes(scope: Any) -> bool:
    """Whether the connection closes after this request's response (HTTP/1.0 or asked)."""
    if scope.get("http_version") == "1.0":
        return True
    return any(
        name.lower() == b"connection" and b"close" in value.lower()
        for name, value in scope.get("headers", ())
    )
