"""The upstream proxy over the Redis store: two instances share what one proxied.

Real sockets throughout: a fake OpenAI-compatible upstream under Hypercorn, a real
Redis-protocol server, and two trio-streams instances proxying through the same store.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import StartServer
from tests.helpers import chat_body
from tests.redis_fixtures import RedisServer
from trio_streams.testing.fake_upstream import FakeUpstream, numbered_events


def proxy_options(upstream: FakeUpstream, redis: RedisServer) -> dict[str, Any]:
    # Event ids off: the stream is then byte for byte the upstream's.
    return {"upstreams": (upstream.url,), "store": redis.url, "event_ids": False}


async def test_a_stream_proxied_on_one_instance_resumes_on_the_other(
    start_server: StartServer, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    upstream.script.events = numbered_events(40)
    upstream.script.interval = 0.01
    a = await start_server(**proxy_options(upstream, redis_server))
    b = await start_server(**proxy_options(upstream, redis_server))
    headers = {"X-Conversation-Id": "shared-proxy"}
    part = b""
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a:
        request = on_a.build_request(
            "POST", "/v1/chat/completions", json=chat_body("shared"), headers=headers
        )
        response = await on_a.send(request, stream=True)
        async for chunk in response.aiter_raw():
            part += chunk
            if len(part) >= 200:
                break
        await response.aclose()
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as on_b:
        rest = await on_b.get("/v1/stream/shared-proxy", params={"from": len(part)})
    assert part + rest.content == b"".join(numbered_events(40))


async def test_an_upstream_error_leaves_no_shared_session(
    start_server: StartServer, upstream: FakeUpstream, redis_server: RedisServer
) -> None:
    upstream.script.fail_status = 400
    a = await start_server(**proxy_options(upstream, redis_server))
    b = await start_server(**proxy_options(upstream, redis_server))
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as on_a:
        response = await on_a.post(
            "/v1/chat/completions",
            json=chat_body("fail"),
            headers={"X-Conversation-Id": "shared-fail"},
        )
    assert response.status_code == 400
    assert response.content == upstream.script.fail_body
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as on_b:
        lookup = await on_b.post("/v1/streams/lookup", json={"conversation_ids": ["shared-fail"]})
        missing = await on_b.get("/v1/stream/shared-fail")
    assert lookup.json() == []
    assert missing.status_code == 404
