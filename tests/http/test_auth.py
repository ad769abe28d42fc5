"""API keys over real Hypercorn: every route but the public ones, and sessions per key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServer
from tests.helpers import assert_error, chat_body, http_client
from trio_streams.http.auth import ApiKeys
from trio_streams.http.option_values import read_key_file
from trio_streams.server import RunningServer

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process

ALICE, BOB = "alice-key-0123", "bob-key-4567"
PROTECTED = [
    ("GET", "/v1/models"),
    ("GET", "/v1/stream/c1"),
    ("GET", "/v1/stream?conv_id=c1"),
    ("DELETE", "/v1/stream/c1"),
    ("POST", "/v1/streams/lookup"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/no/such/route"),  # unknown routes too: no probing without a key
]


@pytest.fixture
async def keyed(start_server: StartServer) -> RunningServer:
    return await start_server(api_keys=(ALICE, BOB))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        {"X-Api-Key": "wrong"},
        {"Authorization": f"Basic {ALICE}"},
        {"Authorization": "Bearer"},
        bearer(ALICE[:-1]),
        bearer(ALICE + "x"),
    ],
)
async def test_every_protected_route_needs_a_valid_key(
    keyed: RunningServer, headers: dict[str, str]
) -> None:
    async with http_client(keyed, timeout=10) as client:
        for method, path in PROTECTED:
            response = await client.request(method, path, headers=headers, json={})
            assert_error(response, 401, "Missing or invalid API key", "authentication_error")
            assert response.headers["www-authenticate"] == "Bearer"
    assert len(keyed.manager) == 0


async def test_health_is_public_and_both_header_forms_work(keyed: RunningServer) -> None:
    async with http_client(keyed, timeout=10) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/v1/models", headers=bearer(ALICE))).status_code == 200
        assert (await client.get("/v1/models", headers={"X-Api-Key": BOB})).status_code == 200
        lower = {"authorization": f"bearer {ALICE}"}  # scheme is case-insensitive
        assert (await client.get("/v1/models", headers=lower)).status_code == 200


async def test_a_session_is_invisible_to_another_key(keyed: RunningServer) -> None:
    async with http_client(keyed, timeout=10) as client:
        started = await client.post(
            "/v1/chat/completions",
            json=chat_body("secret things", max_tokens=5),
            headers={**bearer(ALICE), "X-Conversation-Id": "conv-a"},
        )
        assert started.status_code == 200
        mine = await client.get("/v1/stream/conv-a", headers=bearer(ALICE))
        assert mine.content == started.content

        # Bob gets exactly what an unknown id gets: 404, the same body; lookup omits it.
        theirs = await client.get("/v1/stream/conv-a", headers=bearer(BOB))
        unknown = await client.get("/v1/stream/never-was", headers=bearer(BOB))
        assert_error(theirs, 404, "Stream not found or expired", "not_found_error")
        assert theirs.content == unknown.content
        query = await client.get("/v1/stream?conv_id=conv-a", headers=bearer(BOB))
        assert query.status_code == 404
        body = {"conversation_ids": ["conv-a", "never-was"]}
        looked = await client.post("/v1/streams/lookup", json=body, headers=bearer(BOB))
        assert looked.json() == []
        looked = await client.post("/v1/streams/lookup", json=body, headers=bearer(ALICE))
        assert [entry["conversation_id"] for entry in looked.json()] == ["conv-a"]

        # Bob's DELETE answers 204 like any DELETE, and stops nothing.
        assert (await client.delete("/v1/stream/conv-a", headers=bearer(BOB))).status_code == 204
        assert keyed.manager.get("conv-a") is not None
        # Bob cannot take the id over either (that would stop Alice's stream).
        taken = await client.post(
            "/v1/chat/completions",
            json=chat_body("hijack", max_tokens=5),
            headers={**bearer(BOB), "X-Conversation-Id": "conv-a"},
        )
        assert_error(taken, 409, "Conversation id is in use", "conflict_error")
        assert (await client.delete("/v1/stream/conv-a", headers=bearer(ALICE))).status_code == 204
        assert keyed.manager.get("conv-a") is None


async def test_sessions_record_a_fingerprint_never_the_key(keyed: RunningServer) -> None:
    async with http_client(keyed, timeout=10) as client:
        await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=2),
            headers={"X-Api-Key": ALICE, "X-Conversation-Id": "c-fp"},
        )
    session = keyed.manager.get("c-fp")
    assert session is not None and session.owner is not None
    assert ALICE not in session.owner and session.owner.startswith("key:")
    assert session.owner == ApiKeys([ALICE]).owner_of(ALICE)


async def test_without_keys_everything_is_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/models")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


def test_key_comparison_finds_each_key_and_nothing_else(tmp_path: Path) -> None:
    keys = ApiKeys([ALICE, BOB, " ", ""])
    assert len(keys) == 2 and keys.enabled
    assert keys.owner_of(ALICE) != keys.owner_of(BOB)
    assert keys.owner_of(ALICE) is not None and keys.owner_of(BOB) is not None
    for wrong in (None, "", ALICE.upper(), ALICE + " ", "\udcff"):
        assert keys.owner_of(wrong) is None
    assert not ApiKeys().enabled and ApiKeys().owner_of(ALICE) is None
    key_file = tmp_path / "keys"
    key_file.write_text(f"# team keys\n{ALICE}\n\n  {BOB}  \n")
    assert read_key_file(key_file) == [ALICE, BOB]
