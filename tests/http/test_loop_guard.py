"""The loop check behind ``--upstream``: what it refuses, what it lets through.

A proxy probes each upstream once it listens; only a probe that comes back to the very
server that sent it means a loop (trio_streams.http.loop_guard).
"""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.conftest import StartServer
from tests.helpers import chat_body
from trio_streams.http.loop_guard import PROBE_HEADER, PROBE_PATH, UpstreamLoopError
from trio_streams.testing.fake_upstream import FakeUpstream


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_real_upstream_is_probed_once_and_used(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_server(upstreams=(upstream.url,))
    assert [probe.path for probe in upstream.probes] == ["/v1" + PROBE_PATH]
    assert len(upstream.probes[0].header(PROBE_HEADER) or "") == 32
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        response = await http.post("/v1/chat/completions", json=chat_body(model="fake-model"))
    assert response.status_code == 200 and len(upstream.requests) == 1


async def test_another_trio_streams_is_a_fine_upstream(start_server: StartServer) -> None:
    demo = await start_server()
    proxy = await start_server(upstreams=(demo.url + "/v1",), event_ids=False)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        response = await http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "spec",
    [
        "http://127.0.0.1:{port}/v1",
        "http://localhost:{port}/v1",  # another name for the same socket: not a string match
        "named=http://127.0.0.1:{port}/v1",
    ],
)
async def test_itself_as_upstream_raises_before_serving(
    start_server: StartServer, spec: str
) -> None:
    port = free_port()
    upstream = spec.format(port=port)
    url = upstream.partition("=")[2] or upstream
    with pytest.raises(UpstreamLoopError) as refused:
        await start_server(port=port, upstreams=(upstream,))
    assert f"{url} is this server itself" in str(refused.value).replace("named=", "")
    with pytest.raises(httpx.ConnectError):  # and it no longer listens
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/health")


async def test_two_proxies_pointing_at_each_other_are_refused(start_server: StartServer) -> None:
    """B starts first (A is not up: B's probe finds nothing); A's probe goes through B and
    comes back to A."""
    port_a = free_port()
    proxy_b = await start_server(upstreams=(f"http://127.0.0.1:{port_a}/v1",))
    with pytest.raises(UpstreamLoopError, match="is this server itself"):
        await start_server(port=port_a, upstreams=(proxy_b.url + "/v1",))


async def test_a_probe_the_server_did_not_send_is_an_ordinary_request(
    start_server: StartServer,
) -> None:
    server = await start_server(api_keys=("k",))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.get("/v1" + PROBE_PATH, headers={PROBE_HEADER: "0" * 32})
    assert response.status_code == 401  # authentication and routing as usual, no 204
