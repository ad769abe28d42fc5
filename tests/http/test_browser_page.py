"""The chat page's layout and conversations, at a phone and a desktop size (real Chromium).

Layout is asserted on geometry the browser computed (line boxes, bounding boxes, scroll
positions), not on pixels; the screenshots in docs/ are taken from the same runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from playwright.sync_api import BrowserContext, Page, Route

from tests.helpers import chat_text
from tests.http.test_browser import (
    BROWSER_TPS,
    COMPLETE,
    answer,
    ask,
    in_browser,
    saved,
    server_session,
    wait_done,
    whole_generation,
)
from trio_streams.server import RunningServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
PHONE = {"width": 390, "height": 844}
#: A small laptop: wide enough for the conversation list beside the chat, short enough
#: that a whole answer does not fit and the page scrolls.
DESKTOP = {"width": 1024, "height": 640}

# Where the answer's last line is, where the form is, and how far the page is scrolled.
GEOMETRY = """() => {
  const range = document.createRange();
  range.selectNodeContents(document.querySelector('#answer'));
  const lines = range.getClientRects();
  const last = lines[lines.length - 1];
  const form = document.querySelector('#ask').getBoundingClientRect();
  const page = document.scrollingElement;
  return {
    lastTop: last ? last.top : null, lastBottom: last ? last.bottom : null,
    formTop: form.top, formBottom: form.bottom,
    scrollTop: page.scrollTop, viewport: page.clientHeight, scrollHeight: page.scrollHeight,
    scrollWidth: page.scrollWidth, width: page.clientWidth,
  };
}"""


async def run_at(
    server: RunningServer, viewport: dict[str, int], scenario: Any, phone: bool
) -> Any:
    return await trio.to_thread.run_sync(
        lambda: in_browser(server.url, scenario, viewport=viewport, phone=phone)
    )


def geometry(page: Page) -> dict[str, float]:
    result: dict[str, float] = page.evaluate(GEOMETRY)
    return result


def assert_following(page: Page) -> dict[str, float]:
    """The page is at its very end and the answer's last line is above the form."""
    where = geometry(page)
    assert where["scrollTop"] + where["viewport"] >= where["scrollHeight"] - 1, where
    assert where["lastBottom"] <= where["formTop"] + 0.5, where
    assert where["lastTop"] >= 0, where
    return where


def with_max_tokens(page: Page, max_tokens: int) -> None:
    """Send the page's completions with ``max_tokens`` (the page itself sends none)."""

    def rewrite(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "max_tokens": max_tokens}))

    page.route("**/v1/chat/completions", rewrite)


def samples_while_streaming(page: Page, count: int) -> list[dict[str, float]]:
    """Geometry after each of ``count`` growths of the answer, once it overflows the page."""
    page.wait_for_function(
        "() => document.scrollingElement.scrollHeight > document.scrollingElement.clientHeight"
    )
    samples = []
    for _ in range(count):
        shown = len(answer(page))
        page.wait_for_function(
            "n => document.querySelector('#answer').textContent.length > n", arg=shown
        )
        samples.append(assert_following(page))
    return samples


async def test_phone_title_placeholder_and_following_the_answer(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        # The name is one line box ("trio-streams", not "trio-" then "streams").
        seen["header_height"] = page.evaluate(
            "document.querySelector('header').getBoundingClientRect().height"
        )
        seen["title_lines"] = page.evaluate(
            """() => { const r = document.createRange();
                       r.selectNodeContents(document.querySelector('h1'));
                       return r.getClientRects().length; }"""
        )
        header = page.locator("header").bounding_box()
        assert header is not None
        seen["header_right"] = header["x"] + header["width"]
        # The placeholder fits its box: as text, it would not overflow the textarea.
        seen["placeholder_fits"] = page.evaluate(
            """() => { const t = document.querySelector('#prompt');
                       t.value = t.placeholder;
                       const fits = t.scrollHeight <= t.clientHeight
                                    && t.scrollWidth <= t.clientWidth;
                       t.value = ''; return fits; }"""
        )
        with_max_tokens(page, 100_000)  # the whole answer: several screens on a phone
        seen["conversation_id"] = ask(page, "follow me on a phone", wait_for_chars=5)
        seen["followed"] = samples_while_streaming(page, 5)
        # The reader scrolls up to read (well away from the end): the page stops pulling
        # them down.
        page.wait_for_function(
            "() => { const p = document.scrollingElement;"
            "        return p.scrollHeight > p.clientHeight + 300; }"
        )
        page.evaluate("window.scrollTo(0, 0)")
        shown = len(answer(page))
        page.wait_for_function(
            "n => document.querySelector('#answer').textContent.length > n + 40", arg=shown
        )
        seen["after_scrolling_up"] = geometry(page)["scrollTop"]
        # Back at the bottom, it follows again, to the end.
        page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
        wait_done(page)
        seen["at_the_end"] = assert_following(page)
        seen["overflow"] = geometry(page)
        seen["text"] = answer(page)
        page.click("#history summary")  # the list is folded on a phone: open it
        page.evaluate("window.scrollTo(0, 0)")
        shot = page.screenshot()
        if os.environ.get("UPDATE_SCREENSHOT"):  # refresh docs/chat-phone.png
            (DOCS / "chat-phone.png").write_bytes(shot)
        return seen

    seen = await run_at(slow_server, PHONE, scenario, phone=True)
    assert seen["title_lines"] == 1
    assert seen["header_height"] < 60  # name, model and New chat on one row
    assert seen["header_right"] <= PHONE["width"]
    assert seen["placeholder_fits"]
    assert len(seen["followed"]) == 5
    assert seen["after_scrolling_up"] == 0
    assert seen["overflow"]["scrollWidth"] <= seen["overflow"]["width"]  # no sideways scroll
    session = slow_server.manager.get(seen["conversation_id"])
    assert session is not None
    assert seen["text"] == chat_text(await whole_generation(session))


async def test_desktop_the_last_line_of_a_long_answer_is_above_the_input_bar(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> dict[str, Any]:
        ask(page, "a short one first", wait_for_chars=5)
        wait_done(page)
        ask(page, "a long answer on a laptop screen", wait_for_chars=5)
        followed = samples_while_streaming(page, 3)
        wait_done(page)
        end = assert_following(page)
        list_box = page.locator("#chat-list").bounding_box()
        main_box = page.locator("main").bounding_box()
        page.set_viewport_size({"width": 1280, "height": 800})  # the whole page, for docs/
        shot = page.screenshot()
        if os.environ.get("UPDATE_SCREENSHOT"):  # refresh docs/chat-desktop.png
            (DOCS / "chat-desktop.png").write_bytes(shot)
        return {"followed": followed, "end": end, "list": list_box, "main": main_box}

    seen = await run_at(slow_server, DESKTOP, scenario, phone=False)
    assert seen["end"]["scrollHeight"] > seen["end"]["viewport"]  # it did scroll
    assert seen["end"]["lastBottom"] <= seen["end"]["formTop"]
    # The list of conversations is open beside the chat, not above it.
    assert seen["list"]["x"] + seen["list"]["width"] <= seen["main"]["x"]


@pytest.mark.parametrize(
    ("max_tokens", "state", "says"),
    [(12, "length", "Cut at the token limit"), (100_000, "done", "Done")],
)
async def test_an_answer_cut_by_max_tokens_says_so(
    slow_server: RunningServer, max_tokens: int, state: str, says: str
) -> None:
    def scenario(context: BrowserContext, page: Page) -> tuple[str, str, str, str]:
        with_max_tokens(page, max_tokens)
        conversation_id = ask(page, "how long is this answer", wait_for_chars=0)
        page.wait_for_selector(COMPLETE)
        status = page.locator("#status")
        badge = page.locator(".chat-open[aria-current=true] .chat-state").text_content() or ""
        return (
            conversation_id,
            status.get_attribute("data-state") or "",
            status.text_content() or "",
            badge,
        )

    conversation_id, shown_state, status, badge = await run_at(
        slow_server, DESKTOP, scenario, phone=False
    )
    session = slow_server.manager.get(conversation_id)
    assert session is not None
    raw = await whole_generation(session)
    reasons = [
        choice["finish_reason"]
        for line in raw.decode().splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
        if choice.get("finish_reason")
    ]
    assert reasons == [state if state == "length" else "stop"]  # what the server said
    assert shown_state == state and status.startswith(says)
    assert badge == ("cut" if state == "length" else "done")


async def test_several_conversations_each_resume_from_the_server(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        first = ask(page, "the first conversation", wait_for_chars=80)
        page.click("#new-chat")
        page.wait_for_selector("#status[data-state=idle]")
        assert answer(page) == ""
        second = ask(page, "the second conversation", wait_for_chars=80)
        seen["first_running_when_left"] = not server_session(slow_server, first).is_done
        left_at = page.evaluate(
            "id => JSON.parse(localStorage.getItem('trio-streams-chat:' + id)).offset", first
        )
        # Back to the first, mid-answer: it resumes where the page left it.
        page.click(f".chat-open[data-id='{first}']")
        page.wait_for_selector("#status[data-state=streaming]")
        seen["resumed_status"] = page.text_content("#status")
        seen["left_at"] = left_at
        seen["first_running_when_back"] = not server_session(slow_server, first).is_done
        wait_done(page)
        seen["first_text"] = answer(page)
        page.click(f".chat-open[data-id='{second}']")
        wait_done(page)
        seen["second_text"] = answer(page)
        page.reload()  # both kept, the open one still open
        wait_done(page)
        seen["after_reload"] = (answer(page), saved(page)["conversationId"])
        seen["titles"] = page.locator(".chat-title").all_text_contents()
        # A third, deleted while it generates: the server stops it.
        third = ask(page, "the third conversation", wait_for_chars=40)
        seen["third_session"] = server_session(slow_server, third)
        assert not seen["third_session"].is_done
        with page.expect_response(lambda response: response.request.method == "DELETE") as stop:
            page.click(f".chat-open[data-id='{third}'] + .chat-delete")
        seen["delete_status"] = stop.value.status
        page.wait_for_selector("#status[data-state=idle]")
        seen["titles_after_delete"] = page.locator(".chat-title").all_text_contents()
        seen["third_stored"] = page.evaluate(
            "id => localStorage.getItem('trio-streams-chat:' + id)", third
        )
        seen["ids"] = (first, second, third)
        return seen

    seen = await run_at(slow_server, DESKTOP, scenario, phone=False)
    first, second, third = seen["ids"]
    assert seen["first_running_when_left"] and seen["first_running_when_back"]
    assert seen["resumed_status"] == f"Streaming (resumed at byte {seen['left_at']})"
    for conversation_id, text in ((first, seen["first_text"]), (second, seen["second_text"])):
        session = slow_server.manager.get(conversation_id)
        assert session is not None
        assert text == chat_text(await whole_generation(session))  # no gap, no duplicate
    assert seen["after_reload"] == (seen["second_text"], second)
    assert seen["titles"] == ["the second conversation", "the first conversation"]
    assert seen["titles_after_delete"] == seen["titles"]
    assert seen["third_stored"] is None
    assert seen["delete_status"] == 204
    await trio.testing.wait_all_tasks_blocked()
    assert seen["third_session"].is_cancelled  # stopped on the server, not left to run
    assert slow_server.manager.get(third) is None


@pytest.fixture
async def slow_server(start_server: Any) -> RunningServer:
    server: RunningServer = await start_server(demo_tps=BROWSER_TPS)
    return server


async def test_the_conversation_an_older_page_kept_is_adopted_and_resumes(
    slow_server: RunningServer,
) -> None:
    """A browser upgraded mid-answer: the single entry of the old layout joins the list."""

    def scenario(context: BrowserContext, page: Page) -> tuple[str, list[str], str, Any]:
        conversation_id = ask(page, "kept by the old page", wait_for_chars=60)
        page.evaluate(
            """id => {
              const key = 'trio-streams-chat:' + id;
              localStorage.setItem('trio-streams-chat', localStorage.getItem(key));
              localStorage.removeItem(key);
              localStorage.removeItem('trio-streams-chats');
            }""",
            conversation_id,
        )
        assert not server_session(slow_server, conversation_id).is_done
        page.reload()
        wait_done(page)
        legacy = page.evaluate("localStorage.getItem('trio-streams-chat')")
        titles = page.locator(".chat-title").all_text_contents()
        return conversation_id, titles, answer(page), legacy

    conversation_id, titles, text, legacy = await run_at(
        slow_server, DESKTOP, scenario, phone=False
    )
    assert titles == ["kept by the old page"] and legacy is None
    session = slow_server.manager.get(conversation_id)
    assert session is not None
    assert text == chat_text(await whole_generation(session))
