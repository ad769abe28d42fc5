"""A TCP proxy for tests that cuts connections at chosen byte counts, like a bad network.

It relays 127.0.0.1:<free port> to a real server and closes a connection (both sides) after
it has passed a chosen number of response bytes, in the middle of whatever was being sent:
a header, a chunk-size line, an SSE event. Clients must then reconnect and resume.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

CHUNK = 16 * 1024


class LocalRelay:
    """Listens on a free port of 127.0.0.1 and hands each connection to :meth:`_relay`."""

    port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started()
            await trio.serve_listeners(self._relay, listeners, handler_nursery=nursery)

    async def _relay(self, client: trio.SocketStream) -> None:
        raise NotImplementedError


class CuttingProxy(LocalRelay):
    """Relays to ``127.0.0.1:target_port``; cuts each connection after ``cut_at()`` bytes.

    ``cut_at`` is asked once per connection (``None``: never cut it). With ``trigger``,
    only connections whose request starts with ``trigger`` are cut, counting the response
    bytes from that request on (a browser also loads the page through the proxy). With
    ``stall``, a "cut" connection is not closed but goes silent, as a dead network does:
    only the client's own timeout can end it.
    """

    def __init__(
        self,
        target_port: int,
        cut_at: Callable[[], int | None],
        *,
        trigger: bytes | None = None,
        stall: bool = False,
    ) -> None:
        self.stall = stall
        self.target_port = target_port
        self.cut_at = cut_at
        self.trigger = trigger
        self.connections = 0
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _relay(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        except OSError:
            await client.aclose()
            return
        limit: list[int | None] = [None if self.trigger else self.cut_at()]
        sent = [0]

        async def requests(cancel: trio.CancelScope) -> None:
            while chunk := await client.receive_some(CHUNK):
                if self.trigger and limit[0] is None and chunk.startswith(self.trigger):
                    limit[0], sent[0] = self.cut_at(), 0
                await upstream.send_all(chunk)
            cancel.cancel()

        async def responses(cancel: trio.CancelScope) -> None:
            while chunk := await upstream.receive_some(CHUNK):
                cut = limit[0]
                if cut is not None and sent[0] + len(chunk) >= cut:
                    await client.send_all(chunk[: cut - sent[0]])
                    self.cuts += 1
                    if self.stall:
                        await trio.sleep_forever()  # until the client gives up and closes
                    break
                await client.send_all(chunk)
                sent[0] += len(chunk)
            cancel.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(requests, nursery.cancel_scope)
                nursery.start_soon(responses, nursery.cancel_scope)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # either side went away: the connection ends, as a cut one does
        finally:
            await client.aclose()
            await upstream.aclose()
