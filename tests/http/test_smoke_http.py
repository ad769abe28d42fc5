from __future__ import annotations

import httpx
import pytest

from tests.helpers import chat_body, chat_text, ends_with_done

#: The API in-process (tests/conftest.py): these tests need no socket.
pytestmark = pytest.mark.in_process


async def test_stream_and_resume(client: httpx.AsyncClient) -> None:
    headers = {"X-Conversation-Id": "smoke"}
    response = await client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=10), headers=headers
    )
    assert response.status_code == 200
    full = response.content
    assert ends_with_done(full)
    again = await client.get("/v1/stream/smoke", params={"from": 100})
    assert again.content == full[100:]
    assert chat_text(full).startswith("You asked about")
