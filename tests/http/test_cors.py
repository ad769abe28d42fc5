"""CORS over real Hypercorn: allowed and refused origins, preflights, exposed headers.

What the browser does with these headers is shown in Chromium by test_browser_cors.py;
here every header the server sends (or does not send) is checked, route by route.
"""

from __future__ import annotations

import httpx
import pytest

from tests.cli_options import serve_options
from tests.cli_refusals import refused_serve
from tests.conftest import StartServer
from tests.helpers import chat_body, chat_text, http_client
from trio_streams.http.cors import ALLOW_HEADERS, EXPOSE_HEADERS, MAX_AGE
from trio_streams.http.option_values import check_origin
from trio_streams.testing.fake_upstream import FakeUpstream

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process

ALLOWED = "http://localhost:3000"
OTHER_ALLOWED = "https://chat.example.test"
REFUSED = "http://evil.example.test"
KEY = "cors-key-7"

#: Every route a browser frontend calls, with its method and the headers it sends.
PREFLIGHTS = [
    ("/v1/chat/completions", "POST", "content-type,x-conversation-id,authorization"),
    ("/v1/completions", "POST", "content-type,x-conversation-id,x-api-key"),
    ("/v1/models", "GET", "authorization"),
    ("/v1/stream/chat-1", "GET", "last-event-id,authorization"),
    ("/v1/stream?conv_id=chat-1&from=10", "GET", "x-api-key"),
    ("/v1/stream/chat-1", "DELETE", "authorization"),
    ("/v1/stream?conv_id=chat-1", "DELETE", "x-api-key"),
    ("/v1/streams/lookup", "POST", "content-type,authorization"),
]


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",") if item.strip()}


async def preflight(
    http: httpx.AsyncClient, path: str, method: str, headers: str, origin: str = ALLOWED
) -> httpx.Response:
    return await http.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize(("path", "method", "requested"), PREFLIGHTS)
async def test_preflight_allows_every_route_method_and_header_we_use(
    start_server: StartServer, path: str, method: str, requested: str
) -> None:
    server = await start_server(cors_origins=(ALLOWED, OTHER_ALLOWED), api_keys=(KEY,))
    async with http_client(server, timeout=10) as http:
        # No key: browsers never send one with a preflight, and auth must let it through.
        response = await preflight(http, path, method, requested)
        refused = await preflight(http, path, method, requested, origin=REFUSED)
    assert response.status_code == 200, response.text
    headers = cors_headers(response)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert method.lower() in header_set(headers["access-control-allow-methods"])
    assert header_set(headers["access-control-allow-headers"]) == header_set(requested)
    assert headers["access-control-max-age"] == str(MAX_AGE)
    assert "access-control-allow-credentials" not in headers  # keys are headers, not cookies
    assert "origin" in header_set(response.headers["vary"])
    assert cors_headers(refused) == {}  # another origin learns nothing: the browser blocks it


async def test_preflight_leaves_out_headers_not_on_the_list(start_server: StartServer) -> None:
    server = await start_server(cors_origins=(ALLOWED,))
    async with http_client(server, timeout=10) as http:
        response = await preflight(
            http, "/v1/chat/completions", "POST", "content-type,x-stainless-os,x-not-ours"
        )
    allowed = header_set(response.headers["access-control-allow-headers"])
    assert allowed == {"content-type", "x-stainless-os"}  # the browser refuses x-not-ours
    assert {"x-conversation-id", "last-event-id", "x-api-key"} <= {h.lower() for h in ALLOW_HEADERS}


async def test_an_allowed_origin_reads_a_stream_and_its_resume(start_server: StartServer) -> None:
    server = await start_server(cors_origins=(ALLOWED, OTHER_ALLOWED))
    origin = {"Origin": OTHER_ALLOWED}
    async with http_client(server, timeout=10) as http:
        started = await http.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=30),
            headers={**origin, "X-Conversation-Id": "cors-conv-1"},
        )
        resumed = await http.get("/v1/stream/cors-conv-1?from=200", headers=origin)
        lookup = await http.post(
            "/v1/streams/lookup", json={"conversation_ids": ["cors-conv-1"]}, headers=origin
        )
        stopped = await http.delete("/v1/stream/cors-conv-1", headers=origin)
    for response in (started, resumed, lookup, stopped):
        assert response.status_code in (200, 204)
        headers = cors_headers(response)
        assert headers["access-control-allow-origin"] == OTHER_ALLOWED
        assert header_set(headers["access-control-expose-headers"]) == {
            name.lower() for name in EXPOSE_HEADERS
        }
        assert "origin" in header_set(response.headers["vary"])
    assert started.headers["content-type"].startswith("text/event-stream")
    assert chat_text(started.content).endswith(chat_text(resumed.content))
    assert lookup.json()[0]["conversation_id"] == "cors-conv-1"


async def test_a_refused_origin_gets_no_cors_header_on_any_answer(
    start_server: StartServer,
) -> None:
    server = await start_server(cors_origins=(ALLOWED,))
    async with http_client(server, timeout=10) as http:
        answers = [
            await http.get("/v1/models", headers={"Origin": REFUSED}),
            await http.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=3),
                headers={"Origin": REFUSED, "X-Conversation-Id": "cors-conv-2"},
            ),
            await http.get("/v1/stream/missing", headers={"Origin": REFUSED}),
            # An origin is compared whole: scheme, host and port.
            await http.get("/v1/models", headers={"Origin": "https://localhost:3000"}),
            await http.get("/v1/models", headers={"Origin": "http://localhost:3001"}),
            await http.get("/v1/models", headers={"Origin": "null"}),
        ]
    for response in answers:
        assert cors_headers(response) == {}, response.request.url
        assert response.status_code in (200, 404)  # answered: the browser is what blocks


async def test_errors_carry_cors_headers_so_a_page_can_read_them(
    start_server: StartServer,
) -> None:
    """A 401 and a 429 reach the page whole: their JSON, WWW-Authenticate, Retry-After."""
    server = await start_server(cors_origins=(ALLOWED,), api_keys=(KEY,), max_producers=1)
    origin = {"Origin": ALLOWED}
    auth = {"Authorization": f"Bearer {KEY}"}
    async with http_client(server, timeout=10) as http:
        no_key = await http.get("/v1/models", headers=origin)
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body(max_tokens=100_000),
            headers={**origin, **auth, "X-Conversation-Id": "cors-busy"},
        ) as busy:
            assert busy.status_code == 200
            full = await http.post(
                "/v1/chat/completions",
                json=chat_body(),
                headers={**origin, **auth, "X-Conversation-Id": "cors-second"},
            )
            await http.delete("/v1/stream/cors-busy", headers={**origin, **auth})
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == 401
    assert full.status_code == 429 and full.json()["error"]["code"] == 429
    for response, exposed in ((no_key, "www-authenticate"), (full, "retry-after")):
        headers = cors_headers(response)
        assert headers["access-control-allow-origin"] == ALLOWED
        assert exposed in header_set(headers["access-control-expose-headers"])
        assert exposed in {name.lower() for name in response.headers}


@pytest.mark.in_process(False)  # its server_url fixture serves on a real socket
async def test_without_cors_origins_no_origin_gets_cors_headers(server_url: str) -> None:
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as http:
        simple = await http.get("/v1/models", headers={"Origin": ALLOWED})
        pre = await preflight(http, "/v1/chat/completions", "POST", "content-type")
    assert cors_headers(simple) == {} and cors_headers(pre) == {}


@pytest.fixture
async def server_url(start_server: StartServer) -> str:
    return (await start_server()).url


async def test_the_wildcard_is_only_what_it_says(start_server: StartServer) -> None:
    server = await start_server(cors_origins=("*",))
    async with http_client(server, timeout=10) as http:
        simple = await http.get("/v1/models", headers={"Origin": REFUSED})
        pre = await preflight(http, "/v1/stream/x", "GET", "last-event-id", origin=REFUSED)
    assert simple.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors_headers(pre)


async def test_an_upstreams_own_cors_headers_are_not_passed_on(
    start_server: StartServer, upstream: FakeUpstream
) -> None:
    """A model server that allows every origin must not open ours to them."""
    upstream.script.echo_headers = [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-credentials", b"true"),
    ]
    server = await start_server(upstreams=(upstream.url,), cors_origins=(ALLOWED,))
    async with http_client(server, timeout=10) as http:
        refused = await http.get("/v1/echo", headers={"Origin": REFUSED})
        allowed = await http.get("/v1/echo", headers={"Origin": ALLOWED})
    assert refused.status_code == 200 and refused.headers["x-upstream"] == "yes"
    assert cors_headers(refused) == {}
    assert cors_headers(allowed)["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in cors_headers(allowed)


@pytest.mark.parametrize(
    "value",
    ["http://localhost:3000/", "localhost:3000", "http://a.test/app", "ftp://a.test", "null",
     "http://a.test:99999", "http://user@a.test", ""],
)  # fmt: skip
def test_what_is_not_an_origin_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_origin(value)


def test_origins_are_kept_as_browsers_send_them() -> None:
    for origin in ("http://localhost:3000", "https://chat.example.test", "http://[::1]:8080", "*"):
        assert check_origin(origin) == origin


def test_the_cli_refuses_a_path_or_trailing_slash() -> None:
    result = refused_serve("--cors-origin", "http://localhost:3000/")
    assert result.exit_code == 2
    assert "--cors-origin" in result.stderr and "trailing slash" in result.stderr


@pytest.mark.in_process(False)  # a real process, on the real clock
async def test_the_cli_takes_origins_from_the_environment(start_server: StartServer) -> None:
    env = {"TRIO_STREAMS_CORS_ORIGIN": f"{ALLOWED} {OTHER_ALLOWED}"}
    server = await start_server(**serve_options(env=env))
    async with http_client(server, timeout=10) as http:
        answers = {
            origin: await preflight(http, "/v1/streams/lookup", "POST", "content-type", origin)
            for origin in (ALLOWED, OTHER_ALLOWED, REFUSED)
        }
    assert answers[ALLOWED].headers["access-control-allow-origin"] == ALLOWED
    assert answers[OTHER_ALLOWED].headers["access-control-allow-origin"] == OTHER_ALLOWED
    assert cors_headers(answers[REFUSED]) == {}
