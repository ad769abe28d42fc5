"""The kit's streaming ASGI transport behaves like a connection where a client can tell."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
import trio.testing

from trio_streams.testing.faults import Fault, Network
from trio_streams.testing.transport import StreamingASGITransport

EVENTS = [f"data: {index}\n\n".encode() for index in range(10)]


class Ticker:
    """An ASGI app: ten SSE events, one a second on trio's clock; it notes its disconnect."""

    def __init__(self) -> None:
        self.disconnected = trio.Event()
        self.sent = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if scope["path"] == "/fail-before":
            raise RuntimeError("no head")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                assert (await receive())["type"] == "http.disconnect"
                self.disconnected.set()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            for event in EVENTS:
                if scope["path"] == "/fail-mid" and self.sent == 3:
                    raise RuntimeError("mid-body")
                await send({"type": "http.response.body", "body": event, "more_body": True})
                self.sent += 1
                await trio.sleep(1)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()


async def read(client: httpx.AsyncClient, path: str = "/") -> tuple[bytes, Exception | None]:
    received = b""
    try:
        async with client.stream("GET", path) as response:
            async for chunk in response.aiter_raw():
                received += chunk
    except httpx.TransportError as error:
        return received, error
    return received, None


@pytest.fixture
async def ticker(nursery: trio.Nursery) -> tuple[Ticker, StreamingASGITransport]:
    app = Ticker()
    return app, StreamingASGITransport(app, nursery)


def test_a_fault_path_matches_itself_and_below_only() -> None:
    network = Network()
    network.cut(at_byte=0, path="/v1/stream", times=None)
    assert network.open("POST", "/v1/streams/lookup", "").fault is None
    assert network.open("GET", "/v1/stream", "conv_id=a").fault == Fault(at_byte=0)
    assert network.open("GET", "/v1/stream/a/b", "").fault == Fault(at_byte=0)


def client_of(transport: StreamingASGITransport, read: float | None = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url="http://app.test", transport=transport, timeout=httpx.Timeout(5, read=read)
    )


async def test_bytes_arrive_as_the_app_sends_them(
    ticker: tuple[Ticker, StreamingASGITransport], autojump_clock: trio.testing.MockClock
) -> None:
    _, transport = ticker
    async with client_of(transport) as client, client.stream("GET", "/") as response:
        assert response.status_code == 200
        arrivals = []
        async for chunk in response.aiter_raw():
            arrivals.append((trio.current_time(), chunk))
    assert [chunk for _, chunk in arrivals] == EVENTS
    assert [when for when, _ in arrivals] == [float(index) for index in range(10)]


async def test_closing_a_response_tells_the_app_it_is_gone(
    ticker: tuple[Ticker, StreamingASGITransport], autojump_clock: trio.testing.MockClock
) -> None:
    app, transport = ticker
    async with client_of(transport) as client:
        async with client.stream("GET", "/") as response:
            async for _ in response.aiter_raw():
                break
        with trio.fail_after(1):
            await app.disconnected.wait()
    assert transport.network.connections[0].ending == "closed by client"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault(at_byte=0), b""),
        (Fault(at_byte=21), b"".join(EVENTS)[:21]),
        (Fault(after_events=4), b"".join(EVENTS[:4])),
    ],
)
async def test_a_cut_delivers_exactly_its_bytes_then_the_peer_closes(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    fault: Fault,
    expected: bytes,
) -> None:
    app = Ticker()
    network = Network()
    network.cut(at_byte=fault.at_byte, after_events=fault.after_events, path="/cut")
    transport = StreamingASGITransport(app, nursery, network=network)
    async with client_of(transport) as client:
        received, error = await read(client, "/cut")
        assert received == expected
        assert isinstance(error, httpx.RemoteProtocolError)
        # The rule was for one response: the next one is whole.
        assert await read(client, "/cut") == (b"".join(EVENTS), None)
    with trio.fail_after(1):
        await app.disconnected.wait()
    assert network.cuts == 1


async def test_a_stall_ends_in_the_clients_read_timeout_on_trios_clock(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    network = Network()
    network.stall(after_events=2)
    transport = StreamingASGITransport(Ticker(), nursery, network=network)
    async with client_of(transport, read=7) as client:
        received, error = await read(client)
    assert received == b"".join(EVENTS[:2])
    assert isinstance(error, httpx.ReadTimeout)
    # The second event arrived at t=1, then 7 s of silence.
    assert trio.current_time() == pytest.approx(8)
    assert network.connections[0].ending == "stalled"


async def test_a_connection_is_cut_or_stalled_by_hand_wherever_it_is(
    ticker: tuple[Ticker, StreamingASGITransport], autojump_clock: trio.testing.MockClock
) -> None:
    _, transport = ticker
    async with client_of(transport) as client, client.stream("GET", "/") as response:
        chunks = response.aiter_raw()
        assert await chunks.__anext__() == EVENTS[0]
        [connection] = transport.network.open_connections()
        assert connection.delivered == len(EVENTS[0]) and connection.events == 1
        connection.cut()
        with pytest.raises(httpx.RemoteProtocolError):
            await chunks.__anext__()


async def test_an_app_that_fails_answers_500_before_its_head_and_drops_after(
    ticker: tuple[Ticker, StreamingASGITransport], autojump_clock: trio.testing.MockClock
) -> None:
    _, transport = ticker
    async with client_of(transport) as client:
        response = await client.get("/fail-before")
        assert (response.status_code, response.content) == (500, b"")
        received, error = await read(client, "/fail-mid")
    assert received == b"".join(EVENTS[:3])
    assert isinstance(error, httpx.RemoteProtocolError)


async def test_a_refusing_transport_is_a_stopped_server(
    ticker: tuple[Ticker, StreamingASGITransport],
) -> None:
    _, transport = ticker
    transport.refuse()
    async with client_of(transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
