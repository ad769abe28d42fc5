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

An early answer (``413`` to a 10 MB upload) ends while the request's body is still
arriving, and Hypercorn closes such a connection at once: closing a socket with unread
bytes resets it, and the client, still writing, gets ``EPIPE`` and may lose the answer it
has not read yet (Node's ``fetch`` says ``fetch failed``). So the final ``send`` of such an
answer waits until the body has arrived (Quart-Trio reads it meanwhile and drops what is
past the limit), at most :data:`UPLOAD_GRACE_SECONDS`: the client reads the whole answer,
and the connection stays open for its next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

Message = MutableMapping[str, Any]
#: How long an early answer waits for the rest of its request's body: a client still
#: uploading after that is cut off (Hypercorn closes the connection).
UPLOAD_GRACE_SECONDS = 10.0
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class ShieldFinalSend:
    """Wraps an ASGI app; its final ``http.response.body`` is sent shielded from
    cancellation, and, for an answer sent before the request's body has all arrived, once
    it has (at most :data:`UPLOAD_GRACE_SECONDS` later)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        body_received = trio.Event()

        async def receive_noting_the_body() -> Message:
            # Called once per body chunk, and for the disconnect.
            message: Message = await receive()
            if not message.get("more_body", False):
                body_received.set()
            return message

        async def send_final_shielded(message: Message) -> None:
            if message.get("more_body", False) or message["type"] != "http.response.body":
                await send(message)  # the streaming path: one test, then Hypercorn's send
                return
            try:
                if not body_received.is_set():  # an early answer: see the module's docstring
                    with trio.move_on_after(UPLOAD_GRACE_SECONDS):
                        await body_received.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await send(message)

        await self._app(scope, receive_noting_the_body, send_final_shielded)
