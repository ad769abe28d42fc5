"""``trio-streams serve --upstream …`` run as a user runs it: a real process."""

from __future__ import annotations

import signal

import httpx
import trio

from tests.cli_refusals import refused_serve
from tests.helpers import chat_body, without_event_ids
from tests.test_cli import start_process
from trio_streams.testing.fake_upstream import FakeUpstream, numbered_events


async def test_serve_in_front_of_an_upstream_from_environment_variables(
    nursery: trio.Nursery,
) -> None:
    upstream = FakeUpstream()
    stop_upstream = await upstream.start(nursery)
    server = await start_process(
        env={
            "TRIO_STREAMS_UPSTREAM": f"named={upstream.url} {upstream.url}",
            "TRIO_STREAMS_UPSTREAM_API_KEY": "sk-from-env named=sk-named",
            "TRIO_STREAMS_UPSTREAM_READ_TIMEOUT": "30",
        }
    )
    try:
        url = await server.wait_for_url()
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            response = await client.post(
                "/v1/chat/completions", json=chat_body(), headers={"X-Conversation-Id": "cli"}
            )
            await client.post("/v1/chat/completions", json=chat_body(model="named"))
            models = await client.get("/v1/models")  # asks both: one key each
        assert without_event_ids(response.content) == b"".join(numbered_events(5))
        sent = [request.header("authorization") for request in upstream.requests]
        assert sent[:2] == ["Bearer sk-from-env", "Bearer sk-named"]
        assert sorted(sent[2:]) == ["Bearer sk-from-env", "Bearer sk-named"]
        assert [entry["id"] for entry in models.json()["data"]] == ["named", "fake-model"]
    finally:
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 0
        stop_upstream.set()
    assert b"proxying to upstream named=" + upstream.url.encode() in server.stderr
    assert b"sk-from-env" not in server.stderr and b"sk-named" not in server.stderr


def test_help_lists_the_upstream_options(serve_help: str) -> None:
    for option in (
        "--upstream", "--upstream-api-key", "--upstream-connect-timeout",
        "--upstream-read-timeout", "TRIO_STREAMS_UPSTREAM_API_KEY",
    ):  # fmt: skip
        assert option in serve_help


def test_a_bad_upstream_is_refused_before_serving() -> None:
    for args, message in [
        (["--upstream", "localhost:8080"], "is not an http(s) URL"),
        (["--upstream", "http://a", "--upstream", "http://b"], "more than one default"),
        (["--upstream", "http://a", "--upstream-read-timeout", "0"], "must be greater than 0"),
        (
            ["--upstream", "a=http://a", "--upstream-api-key", "k1", "--upstream-api-key", "k2"],
            "more than one key for every upstream",
        ),
    ]:
        result = refused_serve("--port", "0", *args)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
