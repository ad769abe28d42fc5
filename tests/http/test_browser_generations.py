"""The chat page in Chromium when its stream is replaced or stopped elsewhere (issue 15).

The page pins every resume to the generation it started reading, so a regenerate while
it is away is reported, never spliced onto the text it shows; a Stop from another tab
(or any DELETE) shows "Stopped from another tab.", whether the page is reading the
stream then (the end event) or comes back later (the ``404`` that names the reason).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
from playwright.sync_api import BrowserContext, Page, Request

from tests.conftest import StartServer
from tests.helpers import chat_body, chat_text
from tests.http.test_browser import BROWSER_TPS, answer, ask, run_in_browser, saved
from trio_streams.server import RunningServer

#: A page of the app's origin that runs no script: the page is away, and its saved
#: state can still be read there.
AWAY = "/openapi.json"


@pytest.fixture
async def slow_server(start_server: StartServer) -> RunningServer:
    return await start_server(demo_tps=BROWSER_TPS)


async def test_a_page_away_during_a_regenerate_reports_it_and_keeps_its_text(
    slow_server: RunningServer,
) -> None:
    resumes: list[str] = []

    async def regenerate(conversation_id: str) -> bytes:
        async with httpx.AsyncClient(base_url=slow_server.url, timeout=30) as http:
            response = await http.post(
                "/v1/chat/completions",
                json=chat_body("a different question", max_tokens=40),
                headers={"X-Conversation-Id": conversation_id},
            )
            return response.content

    def scenario(context: BrowserContext, page: Page) -> dict[str, Any]:
        conversation_id = ask(page, "regenerate me while I am away", wait_for_chars=120)
        page.goto(slow_server.url + AWAY)  # away: the page reads nothing meanwhile
        left = saved(page)
        new = trio.from_thread.run(regenerate, conversation_id)
        page.on("request", lambda request: note_resume(request, resumes))
        page.goto(slow_server.url + "/")  # back: it resumes the saved conversation
        page.wait_for_selector("#status[data-state=replaced]")
        return {
            "left": left,
            "new": new,
            "status": page.text_content("#status"),
            "shown": answer(page),
            "after": saved(page),
        }

    seen = await run_in_browser(slow_server, scenario)
    left, after = seen["left"], seen["after"]
    assert seen["status"].startswith("Replaced:")
    # Pinned to the generation it had: the resume named it, and was refused.
    assert resumes and all(f"generation={left['generation']}" in url for url in resumes)
    assert all(f"from={left['offset']}" in url for url in resumes)
    # Not a byte of the new answer: the text and the offset are what the page left with.
    assert seen["shown"] == left["text"] == after["text"]
    assert after["offset"] == left["offset"]
    assert chat_text(seen["new"]) not in seen["shown"]


def note_resume(request: Request, resumes: list[str]) -> None:
    if "/v1/stream?" in request.url and request.method == "GET":
        resumes.append(request.url)


async def test_a_stop_from_another_tab_shows_while_reading_and_after_a_reload(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> tuple[str, str, str, str]:
        conversation_id = ask(page, "stop me from elsewhere", wait_for_chars=100)
        other = context.new_page()  # another tab of the same page
        other.goto(slow_server.url + "/")
        other.evaluate(
            "id => fetch('/v1/stream?conv_id=' + encodeURIComponent(id), {method: 'DELETE'})",
            conversation_id,
        )
        page.wait_for_selector("#status[data-state=stopped]")
        while_reading = page.text_content("#status") or ""
        shown = answer(page)
        page.reload()
        page.wait_for_selector("#status[data-state=stopped]")
        return conversation_id, while_reading, shown, page.text_content("#status") or ""

    conversation_id, while_reading, shown, after_reload = await run_in_browser(
        slow_server, scenario
    )
    assert while_reading == after_reload == "Stopped from another tab."
    assert shown
    assert slow_server.manager.get(conversation_id) is None


async def test_a_page_that_comes_back_after_a_stop_learns_it_from_the_404(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> str:
        conversation_id = ask(page, "stop me while I am away", wait_for_chars=100)
        page.goto(slow_server.url + AWAY)
        trio.from_thread.run_sync(slow_server.manager.stop, conversation_id)
        page.goto(slow_server.url + "/")
        page.wait_for_selector("#status[data-state=stopped]")
        return page.text_content("#status") or ""

    assert await run_in_browser(slow_server, scenario) == "Stopped from another tab."
