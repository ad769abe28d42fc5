"""What a new user runs into first: an unknown model, and a body over the size limit.

An unknown ``model`` gets OpenAI's own 404 (so the OpenAI SDK raises ``NotFoundError`` with
``code == "model_not_found"``), never the demo's answer under a name it does not have; a
too-large body gets a 413 that says the limit and the option that raises it.
"""

from __future__ import annotations

import httpx
import jsonschema_rs
import openai
import pytest
import trio

from tests.conftest import StartServer
from tests.helpers import assert_error, chat_body, http_client, openai_sdk
from trio_streams.http.openapi import document
from trio_streams.server import RunningServer

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process


def model_not_found(model: str) -> dict[str, object]:
    return {
        "error": {
            "code": "model_not_found",
            "message": f"The model '{model}' does not exist; this server serves 'demo'",
            "type": "invalid_request_error",
            "param": "model",
        }
    }


def documented_404(path: str) -> dict[str, object]:
    spec = document()
    schema = spec["paths"][path]["post"]["responses"]["404"]["content"]["application/json"]
    return {**schema["schema"], "components": spec["components"]}


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat_body()),
        ("/v1/completions", {"prompt": "hello", "max_tokens": 3}),
    ],
)
async def test_an_unknown_model_is_404_model_not_found(
    server: RunningServer,
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, object],
    stream: bool,
) -> None:
    for model in ("gpt-4o", "Demo", "demo ", ""):
        response = await client.post(
            path,
            json={**body, "model": model, "stream": stream},
            headers={"X-Conversation-Id": "unknown-model"},
        )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.json() == model_not_found(model)
        jsonschema_rs.validate(documented_404(path), response.json())
    assert server.manager.get("unknown-model") is None  # no session, nothing generated


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/completions", {"prompt": "hi"}),
    ],
)
async def test_demo_or_no_model_is_the_demo(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    for extra in ({}, {"model": "demo"}):
        response = await client.post(path, json={**body, **extra, "max_tokens": 2})
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "demo"


async def test_a_malformed_request_hears_what_is_malformed_before_the_model(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "x", "messages": 3})
    assert_error(response, 400, "'messages' must be an array", "invalid_request_error")
    response = await client.post("/v1/chat/completions", json={"model": 7, "messages": []})
    assert_error(response, 400, "'model' must be a string", "invalid_request_error")


@pytest.mark.in_process(False)  # the SDK (httpx2) talks to a real socket
async def test_the_openai_sdk_raises_not_found_with_openais_code(server: RunningServer) -> None:
    def ask() -> openai.NotFoundError:
        sdk = openai_sdk(server.url)
        try:
            sdk.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        except openai.NotFoundError as exc:
            return exc
        raise AssertionError("an unknown model was answered")

    error = await trio.to_thread.run_sync(ask)
    assert error.status_code == 404
    assert error.code == "model_not_found"
    assert error.type == "invalid_request_error"
    assert error.param == "model"


async def test_a_too_large_body_says_the_limit_and_the_option(start_server: StartServer) -> None:
    server = await start_server(max_body_bytes=1000)
    async with http_client(server, timeout=10) as client:
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/streams/lookup"):
            response = await client.post(path, content=b"{" + b" " * 2000 + b"}")
            assert_error(
                response,
                413,
                "Request body too large: the limit is 1000 bytes (--max-body-bytes, "
                "TRIO_STREAMS_MAX_BODY_BYTES)",
                "invalid_request_error",
            )
        # The connection stays usable: the body was read before the answer.
        assert (await client.get("/health")).status_code == 200
