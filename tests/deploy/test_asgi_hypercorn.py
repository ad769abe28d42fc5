"""``hypercorn --worker-class trio 'trio_streams.asgi:create_app()'``, the real command.

The app opens its store in the ASGI lifespan and takes its settings from the same
``TRIO_STREAMS_*`` variables as ``trio-streams serve``.
"""

from __future__ import annotations

import signal

import httpx
import trio

from tests.deploy.processes import HYPERCORN, RUNNING, hypercorn_command, running
from tests.helpers import chat_body, ends_with_done

APP = "trio_streams.asgi:create_app()"
#: Slow enough that the long stream (100,000 tokens) is still being generated when the
#: SIGTERM comes; fast enough that the short one (10 tokens) is not waited for.
ENV = {
    "TRIO_STREAMS_DEMO_TPS": "100",
    "TRIO_STREAMS_API_KEY": "k1",
    "TRIO_STREAMS_PROXY_HEADERS": "legacy",
}
AUTH = {"Authorization": "Bearer k1"}


async def test_session_resume_delete_and_graceful_sigterm() -> None:
    command = hypercorn_command("--bind", "127.0.0.1:0", "--graceful-timeout", "30")
    async with running(command, env=ENV) as server:
        [url] = await server.urls(RUNNING)
        async with httpx.AsyncClient(base_url=url, timeout=10, headers=AUTH) as client:
            # Settings come from TRIO_STREAMS_*: the API key is required.
            refused = await client.get("/v1/models", headers={"Authorization": ""})
            assert refused.status_code == 401

            # A session, read to its end, then resumed from the middle.
            first = await client.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=10),
                headers={"X-Conversation-Id": "deploy-1"},
            )
            assert first.status_code == 200 and ends_with_done(first.content)
            whole = first.content
            middle = len(whole) // 2
            resumed = await client.get("/v1/stream/deploy-1", params={"from": middle})
            assert resumed.content == whole[middle:]

            # DELETE ends it for good (sent as through a proxy: its client is logged).
            deleted = await client.delete(
                "/v1/stream/deploy-1", headers={"X-Forwarded-For": "198.51.100.23"}
            )
            assert deleted.status_code == 204
            gone = await client.get("/v1/stream/deploy-1", params={"from": 0})
            assert gone.status_code == 404

            # A reader of a stream that would run for minutes, then SIGTERM.
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(max_tokens=100_000),
                headers={"X-Conversation-Id": "deploy-2"},
            ) as response:
                chunks = response.aiter_raw()
                await chunks.__anext__()
                server.process.send_signal(signal.SIGTERM)
                # Its session is finalized at once: the response ends (a cut one would
                # raise), long before Hypercorn's graceful timeout (30 s).
                with trio.fail_after(3):
                    async for _ in chunks:
                        pass
        with trio.fail_after(5):
            await server.drain_stderr()
            assert await server.process.wait() == 0
    log = server.stderr.decode()
    assert "shutting down: finalizing" in log
    assert '"method":"DELETE","path":"/v1/stream/#' in log and '"client":"198.51.100.23"' in log
    assert "deploy-2" not in log  # ids are never logged in full
    assert "Traceback" not in log


async def test_a_bad_variable_stops_the_worker_with_serves_message() -> None:
    env = {"TRIO_STREAMS_DEMO_TPS": "-1"}
    async with running(hypercorn_command("--bind", "127.0.0.1:0"), env=env) as server:
        with trio.fail_after(20):
            await server.drain_stderr()
            # The worker exits 1; Hypercorn 0.18's parent then reports 0 (its _join_exited
            # runs twice): the message is what tells.
            await server.process.wait()
    log = server.stderr.decode()
    assert "trio-streams: Invalid value for '--demo-tps'" in log
    assert "(env var: 'TRIO_STREAMS_DEMO_TPS')" in log
    assert "must be greater than 0" in log
    assert "Running on" not in log


async def test_listener_variables_are_named_as_serve_only() -> None:
    env = {"TRIO_STREAMS_PORT": "9999", "TRIO_STREAMS_BACKLOG": "10"}
    async with running(hypercorn_command("--bind", "127.0.0.1:0"), env=env) as server:
        [url] = await server.urls(RUNNING)
        assert not url.endswith(":9999")
        assert await server.stop() == 0
    assert "TRIO_STREAMS_PORT, TRIO_STREAMS_BACKLOG: for trio-streams serve only" in (
        server.stderr.decode()
    )


async def test_another_worker_class_is_refused_with_the_flag_to_use() -> None:
    command = [HYPERCORN, "--worker-class", "asyncio", "--bind", "127.0.0.1:0", APP]
    async with running(command) as server:
        with trio.fail_after(20):
            await server.drain_stderr()
            await server.process.wait()
    log = server.stderr.decode()
    assert "trio-streams runs on trio: hypercorn --worker-class trio" in log
    assert "Running on" not in log
