"""The Redis store's append script against the memory store, which applies
:func:`~trio_streams.core.durable.appends.plan_append` as it is: random sequences of
appends and closes (producers, epochs, sequences, ``Stream-Seq``, content types, JSON
bodies good and bad, closures) get the same answers, errors included, and leave the same
bytes.

The script decides in Lua, atomically; this is what keeps it the same rules.
"""

from __future__ import annotations

import itertools

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.redis_fixtures import RedisServer
from trio_streams.core.durable.errors import DurableStreamError
from trio_streams.core.durable.model import AppendRequest, CreateRequest
from trio_streams.core.durable.producers import ProducerClaim
from trio_streams.stores.durable.memory import MemoryDurableStore
from trio_streams.stores.durable.protocol import DurableStore
from trio_streams.stores.redis.store import RedisStore

_ids = itertools.count()
MAX_BYTES = 64

claims = st.none() | st.builds(
    ProducerClaim,
    st.sampled_from(["p", "q"]),
    st.integers(min_value=0, max_value=2),
    st.integers(min_value=0, max_value=3),
)
appends = st.builds(
    AppendRequest,
    data=st.sampled_from([b"", b"a", b"bc", b"[]", b"{", b'{"k":1}', b"[1,2]", b"x" * 40]),
    content_type=st.sampled_from(
        [None, "", "text/plain", "text/plain", "application/json", "application/json", "TEXT/PLAIN"]
    ),
    stream_seq=st.none() | st.sampled_from(["", "1", "10", "2", "a", "\u00e9"]),
    producer=claims,
    close=st.booleans(),
)


async def run(store: DurableStore, name: str, request: AppendRequest) -> object:
    try:
        return await store.append(name, request)
    except DurableStreamError as exc:
        return (type(exc).__name__, exc.message, exc.headers)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content_type=st.sampled_from(["text/plain", "application/json"]),
    requests=st.lists(appends, max_size=12),
)
def test_the_redis_store_answers_appends_as_plan_append_does(
    redis_server: RedisServer, content_type: str, requests: list[AppendRequest]
) -> None:
    name = f"prop-{next(_ids)}"

    async def scenario() -> None:
        async with (
            MemoryDurableStore(max_stream_bytes=MAX_BYTES) as memory,
            RedisStore(redis_server.url, ds_max_stream_bytes=MAX_BYTES) as shared,
        ):
            redis = shared.durable_streams
            for store in (memory, redis):
                await store.create(name, CreateRequest(content_type))
            for request in requests:
                expected = await run(memory, name, request)
                assert await run(redis, name, request) == expected, request
            assert await redis.read(name, 0) == await memory.read(name, 0)

    trio.run(scenario)
