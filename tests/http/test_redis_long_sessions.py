"""A session longer than one Redis segment, through HTTP on two instances of one Redis.

Instance A proxies a long upstream answer (about 2.2 MiB: three 1 MiB byte segments); once
it is finished, its log keeps its bytes only in the segments. Instance B, which never saw
it live, serves it back whole and from offsets inside and at the edges of segments, on
the SSE route and the Durable Streams session view, byte for byte what A's client got.
"""

from __future__ import annotations

import httpx

from tests.conftest import StartServer
from tests.redis_fixtures import RedisServer
from trio_streams.stores.redis.keys import SEGMENT_BYTES, log_key
from trio_streams.stores.redis.pool import command_client
from trio_streams.testing.fake_upstream import FakeUpstream, chunk_event

CONVERSATION = "long-answer"
#: 1,100 events of about 2 KiB: past two segment boundaries.
EVENTS = [chunk_event(index, f"{index:06d}" + "x" * 2000) for index in range(1100)]


async def catch_up(http: httpx.AsyncClient, url: str) -> bytes:
    """The Durable Streams session view from offset -1, one catch-up read at a time."""
    received, offset = b"", "-1"
    for _ in range(20):
        answer = await http.get(f"{url}/ds/v1/session/{CONVERSATION}", params={"offset": offset})
        assert answer.status_code == 200, answer.text
        received += answer.content
        offset = answer.headers["Stream-Next-Offset"]
        if answer.headers.get("Stream-Up-To-Date") == "true":
            return received
    raise AssertionError("the catch-up never reached the end")


async def test_a_long_finished_session_reads_back_whole_on_another_instance(
    start_server: StartServer, redis_server: RedisServer, upstream: FakeUpstream
) -> None:
    upstream.script.events = [*EVENTS, b"data: [DONE]\n\n"]
    a = await start_server(store=redis_server.url, upstreams=(upstream.url,))
    b = await start_server(store=redis_server.url, upstreams=(upstream.url,))
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{a.url}/v1/chat/completions",
            headers={"X-Conversation-Id": CONVERSATION},
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
        whole = answer.content
        generation = answer.headers["X-Stream-Generation"]
        stream = f"{b.url}/v1/stream/{CONVERSATION}"
        # B's reader ends at the log's terminal marker: the session is finalized by then.
        assert (await http.get(stream, params={"from": "0"})).content == whole
        found = (
            await http.post(f"{b.url}/v1/streams/lookup", json={"conversation_ids": [CONVERSATION]})
        ).json()
        assert found[0]["is_done"] and found[0]["total_bytes"] == len(whole) > 2 * SEGMENT_BYTES

        # The finished log keeps its bytes in its segments only: its entries are gone.
        client = command_client(redis_server.url, connections=1, connect_timeout=2)
        async with client:
            assert await client.xlen(log_key(CONVERSATION, generation)) == 1

        edges = (0, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 2 * SEGMENT_BYTES + 7)
        for offset in edges:
            read = await http.get(stream, params={"from": str(offset)})
            assert read.content == whole[offset:], offset
        assert await catch_up(http, b.url) == whole
