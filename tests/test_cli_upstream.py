"""``trio-streams serve --upstream …``: its options as the command parses them, in-process.

tests/cli_options.py makes the settings ``serve`` would serve with; tests/test_cli.py runs
the command itself as a real process.
"""

from __future__ import annotations

import logging

import pytest

from tests.cli_options import serve_options
from tests.cli_refusals import refused_serve
from tests.conftest import StartServer
from tests.helpers import chat_body, http_client, without_event_ids
from trio_streams.testing.fake_upstream import FakeUpstream, numbered_events


@pytest.mark.in_process
async def test_serve_in_front_of_an_upstream_from_environment_variables(
    start_server: StartServer, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_streams")
    env = {
        "TRIO_STREAMS_UPSTREAM": f"named={upstream.url} {upstream.url}",
        "TRIO_STREAMS_UPSTREAM_API_KEY": "sk-from-env named=sk-named",
        "TRIO_STREAMS_UPSTREAM_READ_TIMEOUT": "30",
    }
    server = await start_server(**serve_options(env=env))
    async with http_client(server, timeout=10) as client:
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
    assert "proxying to upstream named=" + upstream.url in caplog.text
    assert "sk-from-env" not in caplog.text and "sk-named" not in caplog.text


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
