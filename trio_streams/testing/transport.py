"""An httpx transport to an ASGI app in the same trio run, with responses streamed.

httpx's own ``ASGITransport`` (0.28) runs the app to its end before it returns a response:
a stream that lasts minutes, or forever, never reaches the client. This one runs each
request's app call in a task of its own and hands the client the body as the app sends
it, with backpressure (a reader that stops reading stops the app's ``send``, as a full
socket buffer does). It behaves like a real connection where a test can tell:

- closing a response mid-body tells the app ``http.disconnect``, as Hypercorn does;
- a cut (:mod:`trio_streams.testing.faults`) raises :class:`httpx.RemoteProtocolError`,
  what httpx raises when a server closes in the middle of a chunked body;
- a read that waits longer than the request's read timeout raises
  :class:`httpx.ReadTimeout`, on trio's clock (virtual under ``autojump_clock``);
- an app that fails before its response starts answers ``500`` with an empty body, and
  one that fails mid-body drops the connection, as Hypercorn does;
- once :meth:`StreamingASGITransport.refuse` is called, requests fail with
  :class:`httpx.ConnectError`, as a stopped server's port does.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import trio

from trio_streams.testing.faults import Connection, Fault, Network

Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

logger = logging.getLogger("trio_streams.testing")

#: ASGI messages in flight between the app and the client: a few, so a reader that stops
#: reading soon blocks the app's ``send`` (a socket buffer does the same, in bytes).
DEFAULT_BUFFER = 8


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Serve httpx requests from ``app``, each in a task of ``nursery``.

    ``network`` holds the faults to apply and records every connection. The nursery must
    outlive every response read through the transport.
    """

    def __init__(
        self,
        app: ASGIApp,
        nursery: trio.Nursery,
        *,
        network: Network | None = None,
        client_host: str = "127.0.0.1",
        buffer: int = DEFAULT_BUFFER,
    ) -> None:
        self.app = app
        self.network = network if network is not None else Network()
        self._nursery = nursery
        self._client_host = client_host
        self._buffer = buffer
        self._next_port = 40000
        self._refused: str | None = None

    def refuse(self, reason: str = "All connection attempts failed") -> None:
        """From now on, every request fails to connect (the server has stopped)."""
        self._refused = reason

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._refused is not None:
            raise httpx.ConnectError(self._refused, request=request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([part async for part in request.stream])
        connection = self.network.open(
            request.method, request.url.path, request.url.query.decode("ascii")
        )
        self._next_port += 1
        exchange = _Exchange(request, body, connection, self._buffer)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(name.lower(), value) for name, value in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port or 80),
            "client": (self._client_host, self._next_port),
            "root_path": "",
            "extensions": {},
        }
        self._nursery.start_soon(exchange.run_app, self.app, scope)
        try:
            return await exchange.response()
        except BaseException:
            # Cancelled or timed out before the head: the client has gone (its socket
            # would be closed), and the app hears of it.
            await exchange.aclose()
            raise


class _Exchange:
    """One request: the app's side (``receive``/``send``) and the client's (the body)."""

    def __init__(
        self, request: httpx.Request, body: bytes, connection: Connection, buffer: int
    ) -> None:
        self.request = request
        self.connection = connection
        self._body: bytes | None = body
        self._disconnected = trio.Event()
        self._to_client, self._from_app = trio.open_memory_channel[Message](buffer)
        timeouts = request.extensions.get("timeout", {})
        read = timeouts.get("read") if isinstance(timeouts, dict) else None
        self._read_timeout = math.inf if read is None else float(read)

    # -- the app's side --------------------------------------------------------------------

    async def run_app(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self._receive, self._send)
        except Exception:
            # Hypercorn logs it and closes the connection (or answers 500 before a head).
            logger.exception("the app failed answering %s %s", scope["method"], scope["path"])
        finally:
            self._to_client.close()

    async def _receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if self._disconnected.is_set():
            return  # the client has gone: what is sent now reaches no one (Hypercorn's way)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._to_client.send(dict(message))

    # -- the client's side -----------------------------------------------------------------

    async def response(self) -> httpx.Response:
        """Wait for the response's head; a body stream that delivers the rest."""
        while True:
            try:
                message = await self._next()
            except _Interrupted:
                self._closed("cut")
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=self.request
                ) from None
            except trio.EndOfChannel:
                self._closed("complete")
                # Hypercorn's answer to an app that ended (or failed) without a response.
                return httpx.Response(500, headers=[], content=b"", request=self.request)
            if message["type"] == "http.response.start":
                break
        self.connection.status = int(message["status"])
        headers = [(bytes(name), bytes(value)) for name, value in message.get("headers", [])]
        return httpx.Response(
            self.connection.status,
            headers=headers,
            stream=_Body(self),
            request=self.request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def _next(self) -> Message:
        """The app's next message, within the read timeout; a cut or stall wakes it."""
        with trio.CancelScope(deadline=trio.current_time() + self._read_timeout) as scope:
            self.connection.waiting = scope
            try:
                return await self._from_app.receive()
            finally:
                self.connection.waiting = None
        if self.connection.fault is not None and not scope.deadline <= trio.current_time():
            raise _Interrupted
        raise httpx.ReadTimeout("timed out reading the response", request=self.request)

    async def chunks(self) -> AsyncIterator[bytes]:
        connection = self.connection
        head = self.request.method == "HEAD"
        while True:
            fault = connection.fault
            at_byte = None if fault is None else fault.at_byte
            if at_byte is not None and at_byte <= connection.delivered:
                await self._strike()
            try:
                message = await self._next()
            except _Interrupted:
                continue
            except trio.EndOfChannel:
                # The app ended (or failed) before the body's last message: Hypercorn
                # closes the connection, and the client sees an incomplete body.
                self._closed("cut")
                raise self._cut_error() from None
            if message["type"] != "http.response.body":
                continue
            chunk = b"" if head else bytes(message.get("body", b""))
            limit = connection.limit_for(chunk)
            if limit is not None:
                chunk = chunk[:limit]
                # From here on the fault applies at once, whatever the app sends.
                connection.fault = _struck(connection, len(chunk))
            if chunk:
                connection.delivered += len(chunk)
                yield chunk
            if limit is None and not message.get("more_body", False):
                self._closed("complete")
                return

    async def _strike(self) -> None:
        """The fault's point is reached: close (a cut) or go silent (a stall)."""
        fault = self.connection.fault
        assert fault is not None
        if not fault.stall:
            self._closed("cut")
            raise self._cut_error()
        self.connection.ending = "stalled"
        # The app sees nothing: its sends fill the buffer, then block, until the client
        # gives up and closes the response.
        await trio.sleep(self._read_timeout)  # a dead network: only the read timeout ends it
        raise httpx.ReadTimeout("timed out reading the response", request=self.request)

    def _cut_error(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body "
            "(incomplete chunked read)",
            request=self.request,
        )

    def _closed(self, ending: str) -> None:
        """Over for the client (the first ending, such as "stalled", is the one kept)."""
        if self.connection.ending is None:
            self.connection.ending = ending
        self._disconnected.set()
        self._from_app.close()
        self.connection.closed.set()

    async def aclose(self) -> None:
        self._closed("closed by client")


class _Interrupted(Exception):
    """A cut or stall woke the wait for the app's next message."""


def _struck(connection: Connection, passed: int) -> Fault:
    """The fault, now pinned to the byte where it struck."""
    fault = connection.fault
    assert fault is not None
    return Fault(at_byte=connection.delivered + passed, stall=fault.stall)


class _Body(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.chunks():
            yield chunk

    async def aclose(self) -> None:
        await self._exchange.aclose()


class HostRouter(httpx.AsyncBaseTransport):
    """Requests to the named hosts go to their in-process transports, others to the network.

    A server under test may have several upstreams: fakes served in-process (each at a
    host of its own) beside real servers on sockets.
    """

    def __init__(self, routes: dict[str, httpx.AsyncBaseTransport] | None = None) -> None:
        #: Host name -> transport; may be filled in after the router is handed out.
        self.routes = routes if routes is not None else {}
        self._network = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.routes.get(request.url.host, self._network)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._network.aclose()
