"""``--store`` on the command line and in the environment, and starting while Redis is down."""

from __future__ import annotations

import signal

import httpx
import pytest
import trio
from click.testing import CliRunner

from tests.conftest import StartServer
from tests.helpers import assert_error, chat_body
from tests.redis_fixtures import RedisServer
from tests.test_cli import start_process
from trio_streams.cli import main


async def test_the_store_comes_from_the_environment(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    process = await start_process(env={"TRIO_STREAMS_STORE": redis_server.url})
    other = await start_server(store=redis_server.url)
    try:
        url = await process.wait_for_url()
        async with httpx.AsyncClient(timeout=10) as http:
            started = await http.post(
                f"{url}/v1/chat/completions",
                json=chat_body(max_tokens=5),
                headers={"X-Conversation-Id": "from-env"},
            )
            replay = await http.get(f"{other.url}/v1/stream/from-env")
        assert replay.status_code == 200 and replay.content == started.content
    finally:
        process.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(process.drain_stderr)
                assert await process.process.wait() == 0
    assert f"sessions shared through {redis_server.url} as instance" in process.stderr.decode()


def test_help_shows_the_store_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--store",
        "TRIO_STREAMS_STORE",
        "--store-lease",
        "TRIO_STREAMS_STORE_LEASE",
        "--store-follower-connections",
        "TRIO_STREAMS_STORE_FOLLOWER_CONNECTIONS",
    ):
        assert option in result.output


@pytest.mark.parametrize("value", ["mysql://127.0.0.1/0", "redis://", "memroy"])
def test_a_bad_store_is_refused(value: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--store", value])
    assert result.exit_code == 2
    assert "Invalid value for '--store'" in result.output


async def test_an_instance_starts_while_redis_is_down_and_recovers(
    start_server: StartServer, redis_server: RedisServer
) -> None:
    redis_server.stop()
    server = await start_server(store=redis_server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/health")).json()["status"] == "ok"
        request = {"json": chat_body(max_tokens=3), "headers": {"X-Conversation-Id": "c"}}
        refused = await http.post("/v1/chat/completions", **request)  # type: ignore[arg-type]
        assert_error(refused, 503, "Session store unavailable", "unavailable_error")
        assert_error(await http.delete("/v1/stream/c"), 503, "Session store", "unavailable_error")
        plain = await http.post("/v1/chat/completions", json=chat_body(max_tokens=3))
        assert plain.status_code == 200  # a plain stream needs no shared store
        redis_server.start()
        started = await http.post("/v1/chat/completions", **request)  # type: ignore[arg-type]
        assert started.status_code == 200
        assert (await http.get("/v1/stream/c")).content == started.content


async def test_sigterm_exits_cleanly_even_while_redis_is_down(redis_server: RedisServer) -> None:
    process = await start_process("--store", redis_server.url, "--demo-tps", "20")
    try:
        url = await process.wait_for_url()
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json=chat_body(max_tokens=100_000),
                headers={"X-Conversation-Id": "c-term"},
            ) as response,
        ):
            await response.aiter_raw().__anext__()  # producing
            redis_server.stop()
            process.process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(process.drain_stderr)
                    assert await process.process.wait() == 0
    finally:
        if process.process.returncode is None:
            process.process.kill()
            await process.process.wait()
    assert "Traceback" not in process.stderr.decode()
