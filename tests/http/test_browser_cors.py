"""CORS as a browser enforces it: the chat page served from a second origin (Chromium).

The page is served by another Hypercorn on another port (tests/page_origin.py) and calls
the trio-streams server on the first: allowed by ``--cors-origin``, it streams, resumes
after a reload, stops, and a native EventSource resumes through Last-Event-ID; from an
origin that is not allowed, the browser blocks every call and the server starts nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from playwright.sync_api import BrowserContext, ConsoleMessage, Page

from tests.conftest import StartServer
from tests.core.test_event_ids import event_ends
from tests.cutting_proxy import CuttingProxy
from tests.helpers import chat_text, event_offset, sse_data
from tests.http.test_browser import (
    BROWSER_TPS,
    answer,
    ask,
    in_browser,
    saved,
    server_session,
    wait_done,
    whole_generation,
)
from tests.page_origin import PageOrigin

KEY = "cross-origin-key"


@pytest.fixture
async def page_origin(nursery: trio.Nursery) -> AsyncIterator[PageOrigin]:
    origin = PageOrigin()
    stop = await origin.start(nursery)
    yield origin
    stop.set()


async def test_a_page_on_an_allowed_origin_streams_resumes_and_stops(
    start_server: StartServer, page_origin: PageOrigin, caplog: pytest.LogCaptureFixture
) -> None:
    """With an API key: every call carries Authorization, so each is preflighted."""
    caplog.set_level(logging.INFO, logger="trio_streams.access")
    server = await start_server(
        demo_tps=BROWSER_TPS, cors_origins=(page_origin.url,), api_keys=(KEY,)
    )
    page_origin.api_url = server.url
    seen: dict[str, Any] = {}

    def scenario(context: BrowserContext, page: Page) -> None:
        seen["page_url"] = page.url
        seen["models"] = page.locator("#model option").all_text_contents()
        seen["cid"] = ask(page, "across origins", wait_for_chars=150)
        assert not server_session(server, seen["cid"]).is_done
        page.reload()  # resumes from the saved offset, across origins
        page.wait_for_selector("#status[data-state=streaming]")
        seen["resumed"] = page.text_content("#status")
        wait_done(page)
        seen["text"] = answer(page)
        seen["offset"] = saved(page)["offset"]
        seen["stopped_cid"] = ask(page, "stop me across origins", wait_for_chars=50)
        page.click("#stop")
        page.wait_for_selector("#status[data-state=stopped]")

    await trio.to_thread.run_sync(in_browser, page_origin.url, scenario, f"/#key={KEY}")
    assert seen["page_url"].startswith(page_origin.url)  # the page's origin is not the API's
    assert page_origin.url != server.url
    assert seen["models"] == ["demo"]  # read from the API (the fallback would be too, so:)
    # The server saw the browser's preflights (answered 200 without the key) for every
    # route the page calls, then the calls themselves.
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "trio_streams.access"]
    preflights = {(r["path"], r["status"]) for r in access if r["method"] == "OPTIONS"}
    assert {path for path, _ in preflights} >= {
        "/v1/models", "/v1/chat/completions", "/v1/stream"
    }  # fmt: skip
    assert {status for _, status in preflights} == {200}
    assert {"GET", "POST", "DELETE"} <= {r["method"] for r in access if r["status"] < 300}
    assert seen["resumed"].startswith("Streaming (resumed at byte ")
    session = server.manager.get(seen["cid"])
    assert session is not None
    raw = await whole_generation(session)
    assert seen["text"] == chat_text(raw) and seen["offset"] == len(raw)
    stopped = server.manager.get(seen["stopped_cid"])
    assert stopped is None  # DELETE, across origins, evicted it
    await trio.testing.wait_all_tasks_blocked()
    assert server.manager.producer_count == 0


async def test_an_eventsource_on_an_allowed_origin_resumes_with_last_event_id(
    start_server: StartServer, page_origin: PageOrigin, nursery: trio.Nursery
) -> None:
    """The browser's own EventSource, cut twice, reconnects across origins by itself."""
    server = await start_server(demo_tps=BROWSER_TPS, cors_origins=(page_origin.url,))
    budgets = iter([1500, 2500])
    proxy = CuttingProxy(
        int(server.url.rsplit(":", 1)[1]), lambda: next(budgets, None), trigger=b"GET /v1/stream/"
    )
    await nursery.start(proxy.serve)
    page_origin.api_url = proxy.url

    def scenario(context: BrowserContext, page: Page) -> tuple[str, list[str], list[str]]:
        conversation_id = ask(page, "an eventsource across origins", wait_for_chars=20)
        page.evaluate(
            """([api, id]) => {
              window.esData = []; window.esIds = [];
              const source = new EventSource(api + '/v1/stream/' + encodeURIComponent(id));
              source.onmessage = (event) => {
                window.esData.push(event.data);
                window.esIds.push(event.lastEventId);
                if (event.data === '[DONE]') source.close();
              };
            }""",
            [proxy.url, conversation_id],
        )
        page.wait_for_function("window.esData.includes('[DONE]')")
        return conversation_id, page.evaluate("window.esData"), page.evaluate("window.esIds")

    conversation_id, data, ids = await trio.to_thread.run_sync(
        in_browser, page_origin.url, scenario
    )
    assert proxy.cuts == 2
    session = server.manager.get(conversation_id)
    assert session is not None
    raw = await whole_generation(session)
    assert data == sse_data(raw)
    assert [event_offset(event_id) for event_id in ids] == sorted(event_ends(raw))


async def test_a_page_on_a_refused_origin_is_blocked_by_the_browser(
    start_server: StartServer, page_origin: PageOrigin
) -> None:
    server = await start_server(demo_tps=BROWSER_TPS, cors_origins=("http://localhost:3000",))
    page_origin.api_url = server.url
    seen: dict[str, Any] = {}

    def scenario(context: BrowserContext, page: Page) -> None:
        console: list[str] = []
        page.on("console", lambda message: console.append(message_text(message)))
        page.fill("#prompt", "let me in")
        page.click("#send")
        page.wait_for_selector("#status[data-state=reconnecting]")
        seen["status"] = page.text_content("#status")
        seen["cid"] = saved(page)["conversationId"]
        # A simple GET needs no preflight: the server answers it, the browser hides it.
        seen["simple_get"] = page.evaluate(
            "api => fetch(api + '/v1/models').then(() => 'read', (error) => error.name)",
            server.url,
        )
        seen["console"] = console

    await trio.to_thread.run_sync(in_browser, page_origin.url, scenario)
    assert seen["status"].startswith("Connection lost at byte 0")
    assert seen["simple_get"] == "TypeError"
    assert any("blocked by CORS policy" in line for line in seen["console"]), seen["console"]
    assert server.manager.get(seen["cid"]) is None  # the POST never reached the server
    assert server.store.local_session_count() == 0


def message_text(message: ConsoleMessage) -> str:
    return message.text
