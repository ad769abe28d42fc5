"""Routes outside the API pass through to the upstream (``/props``, ``/slots``…), ours win.

Real sockets throughout: the test kit's
:class:`~trio_streams.testing.fake_upstream.FakeUpstream` under Hypercorn, and a real
trio-streams server with ``--upstream`` in front of it.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import trio

from tests.conftest import StartServer
from tests.helpers import assert_error
from tests.producers.test_upstream_proxy import start_proxy
from trio_streams.testing.fake_upstream import PROPS, FakeUpstream, numbered_events


async def test_props_reaches_the_upstream_with_the_header_rules_of_v1(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream)
    headers = {
        "Authorization": "Bearer client-key",
        "X-Conversation-Id": "secret-id",
        "X-Custom": "kept",
        "Accept-Encoding": "gzip",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "dropped",
    }
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        props = await http.get("/props?fields=all", headers=headers)
    assert props.status_code == 200
    assert props.json() == PROPS
    assert props.headers["x-upstream"] == "yes"
    sent = upstream.requests[-1]
    assert (sent.method, sent.path, sent.query) == ("GET", "/props", b"fields=all")
    assert sent.header("authorization") == "Bearer client-key"
    assert sent.header("x-custom") == "kept"
    assert sent.header("x-conversation-id") is None and sent.header("x-hop") is None
    assert sent.header("accept-encoding") == "identity"


async def test_every_method_passes_through_with_its_body(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.echo_headers = [(b"x-echo", b"1"), (b"access-control-allow-origin", b"*")]
    proxy = await start_proxy(start_server, upstream)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            body = b"" if method == "GET" else json.dumps({"content": method}).encode()
            response = await http.request(method, "/slots/0?action=save", content=body)
            assert response.status_code == 200, response.text
            echo = response.json()
            assert (echo["method"], echo["path"], echo["query"]) == (
                method,
                "/slots/0",
                "action=save",
            )
            assert echo["body"] == body.decode()
            assert response.headers["x-echo"] == "1"
            # Our CORS policy, not the upstream's "*", decides which pages may read it.
            assert "access-control-allow-origin" not in response.headers
        head = await http.head("/tools")
    assert head.status_code == 200 and head.content == b""
    assert upstream.requests[-1].method == "HEAD"


async def test_an_upstream_error_passes_through_and_a_non_json_one_becomes_502(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        teapot = await http.get("/status/418")
        assert teapot.status_code == 418
        assert teapot.json() == {"error": {"message": "as asked"}}
        upstream.script.fail_status = 503
        upstream.script.fail_body = b"<html>busy</html>"
        upstream.script.fail_content_type = b"text/html"
        busy = await http.post("/completion", json={"prompt": "hi"})
    assert_error(busy, 502, "The upstream answered 503 with a non-JSON body", "server_error")


async def test_a_streaming_route_streams_and_a_client_leaving_closes_it(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """llama-server's own ``/completion`` streams outside ``/v1``: no session, but relayed
    as it comes, and the upstream request ends with its client."""
    upstream.script.events = numbered_events(40)
    upstream.script.interval = 0.05
    proxy = await start_proxy(start_server, upstream)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        body = {"prompt": "hi", "stream": True}
        async with http.stream("POST", "/completion", json=body) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            first = await response.aiter_raw().__anext__()
            record = upstream.streams[0]
            assert first.startswith(b"data: ") and record.events_sent < 10
        with trio.fail_after(2):
            await record.gone.wait()
    assert record.events_sent < 40 and not record.finished
    assert len(proxy.manager) == 0  # outside /v1: passed through, not a session


async def test_a_whole_streamed_answer_is_exact(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = numbered_events(30)
    upstream.script.piece_size = 7
    proxy = await start_proxy(start_server, upstream)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        response = await http.post("/completion", json={"prompt": "hi", "stream": True})
    assert response.content == b"".join(numbered_events(30))


async def test_our_routes_win_and_never_reach_the_upstream(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        health = await http.get("/health")
        assert health.json()["status"] == "ok"
        assert (await http.get("/metrics")).text.startswith("# HELP")
        assert "openapi" in (await http.get("/openapi.json")).json()
        page = await http.get("/")
        assert "text/html" in page.headers["content-type"]
        assert (await http.get("/static/chat.js")).status_code == 200
        missing_asset = await http.get("/static/no-such.js")
        assert_error(missing_asset, 404, "The requested URL was not found", "not_found_error")
        for method, path in [
            ("POST", "/health"),
            ("DELETE", "/metrics"),
            ("PUT", "/openapi.json"),
            ("POST", "/static/chat.js"),
        ]:
            refused = await http.request(method, path)
            assert_error(refused, 405, f"Method {method} is not allowed", "invalid_request_error")
            assert "GET" in refused.headers["allow"]
        posted_page = await http.post("/")
        assert posted_page.status_code == 405
    assert upstream.requests == []


async def test_api_keys_apply_and_stay_ours(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream, api_keys=("ours-1",))
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        for method in ("GET", "POST", "DELETE"):
            refused = await http.request(method, "/slots")
            assert_error(refused, 401, "Missing or invalid API key", "authentication_error")
        assert upstream.requests == []
        allowed = await http.get("/props", headers={"Authorization": "Bearer ours-1"})
        assert allowed.json() == PROPS
        by_header = await http.get("/props", headers={"X-Api-Key": "ours-1"})
        assert by_header.status_code == 200
    for sent in upstream.requests:  # our key is never the upstream's
        assert sent.header("authorization") is None and sent.header("x-api-key") is None


async def test_the_upstream_api_key_replaces_the_clients(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(start_server, upstream, upstream_api_key="sk-upstream")
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        await http.get("/props", headers={"Authorization": "Bearer client"})
    assert upstream.requests[-1].header("authorization") == "Bearer sk-upstream"


async def test_the_body_cap_applies(start_server: StartServer, upstream: FakeUpstream) -> None:
    proxy = await start_proxy(start_server, upstream, max_body_bytes=100)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        response = await http.post("/tokenize", content=b"x" * 101)
    assert_error(response, 413, "Request body too large", "invalid_request_error")
    assert upstream.requests == []


async def test_routes_go_to_the_plain_url_upstream_at_its_root(
    start_server: StartServer, nursery: trio.Nursery
) -> None:
    named, plain = FakeUpstream(["named-model"]), FakeUpstream()
    await named.start(nursery)
    await plain.start(nursery)
    proxy = await start_proxy(start_server, f"named-model={named.url}", plain)
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        props = await http.get("/props")
        posted = await http.post("/tokenize", json={"model": "named-model", "content": "a b"})
    assert props.json() == PROPS
    assert posted.json()["path"] == "/tokenize"
    assert [r.path for r in plain.requests] == ["/props", "/tokenize"]
    assert named.requests == []


async def test_an_unreachable_upstream_is_a_json_502(start_server: StartServer) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proxy = await start_proxy(start_server, f"http://127.0.0.1:{port}/v1")
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        for method in ("GET", "POST", "HEAD"):
            response = await http.request(method, "/props")
            assert response.status_code == 502
            if method != "HEAD":
                assert_error(
                    response, 502, "The upstream model server is unreachable", "server_error"
                )


async def test_without_an_upstream_unknown_routes_stay_a_json_404(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for method in ("GET", "POST"):
            response = await http.request(method, "/props")
            assert_error(response, 404, "The requested URL was not found", "not_found_error")


async def test_page_upstream_passes_the_root_through(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """``--page upstream``: ``/`` is the upstream's page, still public like ours."""
    proxy = await start_proxy(start_server, upstream, page="upstream", api_keys=("ours-1",))
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        page = await http.get("/?theme=dark")
        assert page.status_code == 200
        assert (page.json()["path"], page.json()["query"]) == ("/", "theme=dark")
        posted = await http.post("/", content=b"x")  # only reading the page is public
        assert_error(posted, 401, "Missing or invalid API key", "authentication_error")
        assets = await http.get("/_app/bundle.js")  # the upstream's assets need the key
        assert assets.status_code == 401
        keyed = await http.post("/", content=b"x", headers={"X-Api-Key": "ours-1"})
        assert keyed.json()["method"] == "POST"
        assert (await http.get("/health")).json()["status"] == "ok"
    assert [r.path for r in upstream.requests] == ["/", "/"]


async def test_an_upstream_cut_mid_body_is_a_cut_body_not_a_whole_one(
    start_server: StartServer, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The client sees the cut (a clean end would pass a partial body off as whole), and
    the log says so once, as a warning, not as Hypercorn's "Error in ASGI Framework"."""
    upstream.script.events = numbered_events(10)
    upstream.script.drop_after = 3
    proxy = await start_proxy(start_server, upstream)
    received = b""
    async with httpx.AsyncClient(base_url=proxy.url, timeout=10) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream("POST", "/completion", json={"stream": True}) as response:
                assert response.status_code == 200
                async for chunk in response.aiter_raw():
                    received += chunk
        assert (await http.get("/props")).json() == PROPS  # the server carries on
    assert received == b"".join(numbered_events(10)[:3])
    assert "upstream answer cut mid-body: RemoteProtocolError" in caplog.messages
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
