"""/openapi.json is kept true: it names exactly the app's routes, and it is valid OpenAPI."""

from __future__ import annotations

import re

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from tests.helpers import chat_body
from trio_streams.core.errors import error_body
from trio_streams.core.manager import SessionManager
from trio_streams.http.app import create_app
from trio_streams.http.errors import error_type_for_status
from trio_streams.http.openapi import document
from trio_streams.producers.demo import DemoModel
from trio_streams.producers.upstream.client import UpstreamClient, UpstreamOptions
from trio_streams.producers.upstream.routes import UpstreamRoutes

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process

#: Methods the framework answers by itself on every route (not part of the API).
IMPLICIT = {"HEAD", "OPTIONS"}


def app_routes(upstream: UpstreamClient | None = None) -> set[tuple[str, str]]:
    app = create_app(SessionManager(), DemoModel(), upstream=upstream)
    routes = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        routes |= {(method, path) for method in (rule.methods or set()) - IMPLICIT}
    return routes


def documented_routes(*, proxy: bool = False) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document(proxy=proxy)["paths"].items()
        for method in operations
    }


def test_every_route_is_documented_and_nothing_else() -> None:
    assert app_routes() == documented_routes()


def test_every_proxy_route_is_documented_and_nothing_else() -> None:
    options = UpstreamOptions(UpstreamRoutes.parse(["http://127.0.0.1:1/v1"]))
    upstream = UpstreamClient(None, options)  # type: ignore[arg-type]  # routes only
    assert app_routes(upstream) == documented_routes(proxy=True)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(document())  # raises on any violation of the OpenAPI 3.1 meta-schema
    validate(document(proxy=True))


def resolve(schema: dict[str, object]) -> dict[str, object]:
    """The schema with ``#/components/...`` refs resolvable by jsonschema."""
    return {**schema, "components": document()["components"]}


def response_schema(path: str, method: str, status: int) -> dict[str, object]:
    response = document()["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = document()["components"]["responses"][str(status)]
    schema: dict[str, object] = response["content"]["application/json"]["schema"]
    return resolve(schema)


async def test_sample_responses_match_their_schemas(client: httpx.AsyncClient) -> None:
    samples = [
        ("get", "/health", {}, 200),
        ("get", "/v1/models", {}, 200),
        ("post", "/v1/chat/completions", {"json": {"messages": []}}, 200),
        ("post", "/v1/completions", {"json": {"prompt": "hi", "max_tokens": 2}}, 200),
        ("post", "/v1/streams/lookup", {"json": {"conversation_ids": ["x"]}}, 200),
        ("get", "/v1/stream/{conversation_id}", {}, 404),
        ("post", "/v1/streams/lookup", {"content": b"nope"}, 400),
        ("post", "/v1/chat/completions", {"json": {"messages": 3}}, 400),
    ]
    await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2), headers={"X-Conversation-Id": "x"}
    )
    for method, path, kwargs, status in samples:
        url = path.replace("{conversation_id}", "unknown")
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, (path, response.text)
        body = response.json()
        jsonschema_rs.validate(response_schema(path, method, status), body)
        if path == "/v1/streams/lookup" and status == 200:
            assert body and body[0]["conversation_id"] == "x"


async def test_generations_and_end_reasons_match_the_document(client: httpx.AsyncClient) -> None:
    """The 409 of a replaced generation, the 404 of a stopped stream (with its reason), the
    lookup's generation and dropped_prefix, and the stream's X-Stream-Generation header."""
    started = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2), headers={"X-Conversation-Id": "g"}
    )
    old = started.headers["x-stream-generation"]
    header_schema = document()["paths"]["/v1/stream"]["get"]["responses"]["200"]["headers"]
    jsonschema_rs.validate(header_schema["X-Stream-Generation"]["schema"], old)
    await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2), headers={"X-Conversation-Id": "g"}
    )
    [info] = (await client.post("/v1/streams/lookup", json={"conversation_ids": ["g"]})).json()
    jsonschema_rs.validate(resolve({"$ref": "#/components/schemas/SessionInfo"}), info)
    assert info["generation"] != old
    replaced = await client.get("/v1/stream", params={"conv_id": "g", "generation": old})
    assert replaced.status_code == 409
    jsonschema_rs.validate(response_schema("/v1/stream", "get", 409), replaced.json())
    await client.delete("/v1/stream/g")
    stopped = await client.get("/v1/stream/g")
    assert stopped.status_code == 404 and stopped.json()["error"]["reason"] == "stopped"
    jsonschema_rs.validate(
        response_schema("/v1/stream/{conversation_id}", "get", 404), stopped.json()
    )
    await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=2), headers={"X-Conversation-Id": "h"}
    )
    beyond = await client.get("/v1/stream/h", params={"from": 10**7})
    assert beyond.status_code == 400
    jsonschema_rs.validate(
        response_schema("/v1/stream/{conversation_id}", "get", 400), beyond.json()
    )


async def test_served_document_is_the_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200 and response.json() == document()


error_schema = resolve({"$ref": "#/components/schemas/Error"})


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from([400, 401, 404, 409, 413, 429, 503]), message=st.text())
def test_every_error_response_is_the_documented_shape(status: int, message: str) -> None:
    jsonschema_rs.validate(error_schema, error_body(status, message, error_type_for_status(status)))


@pytest.mark.parametrize("path", sorted({path for _, path in documented_routes()}))
def test_documented_paths_name_their_errors(path: str) -> None:
    for operation in document()["paths"][path].values():
        codes = set(operation["responses"])
        if path != "/" and not path.startswith(("/health", "/static/")):
            assert "401" in codes, path  # every route but /health may need a key
