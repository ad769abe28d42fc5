"""The chat page in a real headless Chromium (Debian's package, driven by Playwright).

Each test drives the page as a person would (type, send, reload, go offline, press Stop)
and asserts on the server: the text the page ends with is, character for character, the
text of the server's whole generation, and Stop cancels the server's producer.

Playwright's Python API is synchronous (or asyncio): the browser runs in a worker thread
(``trio.to_thread``) while the server runs on trio in the test's own thread; the browser
side reaches the server's state through ``trio.from_thread``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from playwright.sync_api import BrowserContext, Page, Route, sync_playwright

from tests.conftest import StartServer
from tests.core.test_event_ids import event_ends
from tests.cutting_proxy import CuttingProxy
from tests.helpers import chat_text, ends_with_done, event_offset, sse_data
from trio_streams.core.event_ids import EventIdStamper
from trio_streams.core.session import StreamSession
from trio_streams.core.sse_split import EventSplitter
from trio_streams.server import RunningServer

CHROMIUM = shutil.which("chromium")
if CHROMIUM is None:
    # CI installs Debian's chromium (.ci/run), and there these tests must run: failing
    # loudly beats a silent skip. On a developer machine without it, say what to install.
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: apt-get install -y chromium")
    pytest.skip(
        "the browser tests need Debian's chromium: apt-get install -y chromium",
        allow_module_level=True,
    )
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "resume.png"
#: Slow enough that the answer (~256 tokens) takes seconds: room to act mid-answer.
BROWSER_TPS = 50.0
#: Page timeouts (ms); generous for a loaded 2-core CI machine.
TIMEOUT_MS = 30_000

T = TypeVar("T")


def in_browser(
    url: str,
    scenario: Callable[[BrowserContext, Page], T],
    path: str = "/",
    *,
    viewport: dict[str, int] | None = None,
    phone: bool = False,
) -> T:
    """Open the page in a fresh headless Chromium and run ``scenario`` (worker thread).

    ``viewport`` defaults to 900x640; ``phone``: a touch screen with a mobile viewport.
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context(
                viewport=viewport or {"width": 900, "height": 640},
                is_mobile=phone,
                has_touch=phone,
            )
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url + path)
            page.wait_for_selector("#status[data-state=idle]")
            result = scenario(context, page)
            assert not errors, errors
            return result
        finally:
            browser.close()


async def run_in_browser(server: RunningServer, scenario: Callable[[BrowserContext, Page], T]) -> T:
    return await trio.to_thread.run_sync(in_browser, server.url, scenario)


@pytest.fixture
async def slow_server(start_server: StartServer) -> RunningServer:
    return await start_server(demo_tps=BROWSER_TPS)


# -- what the browser side does --------------------------------------------------------------


def ask(page: Page, prompt: str, *, wait_for_chars: int) -> str:
    """Send ``prompt``; once ``wait_for_chars`` of the answer are shown, its conversation id."""
    page.fill("#prompt", prompt)
    page.click("#send")
    page.wait_for_function(
        "n => document.querySelector('#answer').textContent.length > n", arg=wait_for_chars
    )
    return saved(page)["conversationId"]


def saved(page: Page) -> dict[str, Any]:
    """What the page keeps in localStorage about the open conversation."""
    state: dict[str, Any] = page.evaluate(
        """() => {
          const index = JSON.parse(localStorage.getItem('trio-streams-chats'));
          return JSON.parse(localStorage.getItem('trio-streams-chat:' + index.current));
        }"""
    )
    return state


def answer(page: Page) -> str:
    return page.text_content("#answer") or ""


def server_session(server: RunningServer, conversation_id: str) -> StreamSession:
    """The server's session, read from the trio thread."""
    session = trio.from_thread.run_sync(server.manager.get, conversation_id)
    assert session is not None
    return session


#: The states of a stream read to its [DONE]: "length" when max_tokens cut the answer.
COMPLETE = "#status[data-state=done], #status[data-state=length]"


def wait_done(page: Page) -> None:
    """Until the stream was read to its end (whether or not max_tokens cut the answer)."""
    page.wait_for_selector(COMPLETE)


async def whole_generation(session: StreamSession) -> bytes:
    with trio.fail_after(10):
        raw = b"".join([chunk async for chunk in session.read(0)])
    assert ends_with_done(raw)
    return raw


# -- the tests ---------------------------------------------------------------------------------


@dataclass
class Reloaded:
    conversation_id: str = ""
    resuming_status: str = ""
    shown_while_resuming: str = ""
    resumed_status: str = ""
    final_text: str = ""
    final_offset: int = 0


async def test_reload_mid_answer_resumes_to_exactly_the_servers_text(
    slow_server: RunningServer,
) -> None:
    seen = Reloaded()

    def scenario(context: BrowserContext, page: Page) -> None:
        seen.conversation_id = ask(page, "reload me in the middle", wait_for_chars=150)
        session = server_session(slow_server, seen.conversation_id)
        assert not session.is_done, "the answer finished before the reload"
        # Hold the resume request, so the resuming state can be seen (and photographed).
        held: list[Route] = []
        page.route(lambda url: "/v1/stream?" in url, lambda route: held.append(route))
        page.reload()
        page.wait_for_selector("#status[data-state=resuming]")
        while not held:
            page.wait_for_timeout(20)
        assert page.is_visible("#status")
        seen.resuming_status = page.text_content("#status") or ""
        seen.shown_while_resuming = answer(page)
        screenshot = page.screenshot()
        assert screenshot.startswith(b"\x89PNG")
        if os.environ.get("UPDATE_SCREENSHOT"):  # refresh docs/resume.png for the README
            SCREENSHOT.write_bytes(screenshot)
        held[0].continue_()
        page.wait_for_selector("#status[data-state=streaming]")
        seen.resumed_status = page.text_content("#status") or ""
        wait_done(page)
        seen.final_text, seen.final_offset = answer(page), saved(page)["offset"]

    await run_in_browser(slow_server, scenario)
    assert seen.resuming_status.startswith("Resuming from byte ")
    assert seen.resumed_status.startswith("Streaming (resumed at byte ")
    session = slow_server.manager.get(seen.conversation_id)
    assert session is not None
    raw = await whole_generation(session)
    full_text = chat_text(raw)
    # The page showed what it had kept across the reload, then the rest:
    assert seen.shown_while_resuming and full_text.startswith(seen.shown_while_resuming)
    assert seen.final_text == full_text  # character for character: no gap, no duplicate
    assert seen.final_offset == session.total_bytes == len(raw)  # it counted every byte


async def test_offline_then_online_heals_to_exactly_the_servers_text(
    slow_server: RunningServer,
) -> None:
    def scenario(context: BrowserContext, page: Page) -> tuple[str, int, int, str]:
        conversation_id = ask(page, "lose the network", wait_for_chars=150)
        session = server_session(slow_server, conversation_id)
        context.set_offline(True)
        page.wait_for_selector("#status[data-state=reconnecting]")
        offline_at = saved(page)["offset"]
        page.wait_for_timeout(800)  # the page retries and fails while offline
        assert saved(page)["offset"] == offline_at, "the page read while offline"
        assert page.text_content("#status").startswith("Offline at byte")  # type: ignore[union-attr]
        server_bytes_then = trio.from_thread.run_sync(lambda: session.total_bytes)
        context.set_offline(False)
        wait_done(page)
        return conversation_id, offline_at, server_bytes_then, answer(page)

    conversation_id, offline_at, server_bytes_then, final_text = await run_in_browser(
        slow_server, scenario
    )
    assert server_bytes_then > offline_at  # the server generated on while the page was offline
    session = slow_server.manager.get(conversation_id)
    assert session is not None
    assert final_text == chat_text(await whole_generation(session))


async def test_stop_cancels_the_servers_producer(slow_server: RunningServer) -> None:
    def scenario(context: BrowserContext, page: Page) -> tuple[StreamSession, str, str]:
        conversation_id = ask(page, "stop me", wait_for_chars=100)
        session = server_session(slow_server, conversation_id)
        assert not session.is_done
        page.click("#stop")
        page.wait_for_selector("#status[data-state=stopped]")
        shown = answer(page)
        page.reload()  # a stopped conversation stays stopped: no resume after a reload
        page.wait_for_selector("#status[data-state=stopped]")
        return session, shown, answer(page)

    session, shown, after_reload = await run_in_browser(slow_server, scenario)
    await trio.testing.wait_all_tasks_blocked()
    assert session.is_cancelled and session.is_done
    assert slow_server.manager.get(session.conversation_id) is None  # evicted by DELETE
    assert slow_server.manager.producer_count == 0
    raw = b"".join([chunk async for chunk in session.read(0)])
    assert not ends_with_done(raw)  # the generation really stopped short
    assert shown == after_reload and chat_text(raw).startswith(shown)


async def test_a_stalled_connection_is_dropped_and_resumed(
    slow_server: RunningServer, nursery: trio.Nursery
) -> None:
    """A network that goes silent (no error, no close) does not leave the page hanging."""
    budgets = iter([4000])
    proxy = CuttingProxy(
        int(slow_server.url.rsplit(":", 1)[1]),
        lambda: next(budgets, None),
        trigger=b"POST /v1/chat/completions",
        stall=True,
    )
    await nursery.start(proxy.serve)

    def scenario(context: BrowserContext, page: Page) -> tuple[str, str]:
        conversation_id = ask(page, "a silent network", wait_for_chars=10)
        wait_done(page)
        return conversation_id, answer(page)

    conversation_id, final_text = await trio.to_thread.run_sync(
        in_browser, proxy.url, scenario, "/?stall_ms=1000"
    )
    assert proxy.cuts == 1  # the answer's connection went silent after 4000 bytes
    session = slow_server.manager.get(conversation_id)
    assert session is not None
    assert final_text == chat_text(await whole_generation(session))


async def test_a_native_eventsource_resumes_through_last_event_id(
    slow_server: RunningServer, nursery: trio.Nursery
) -> None:
    """The browser's own EventSource, reconnecting by itself, loses and repeats nothing.

    The page is loaded through a proxy that cuts the EventSource's first two connections
    in the middle of the stream; EventSource reconnects on its own with Last-Event-ID.
    """
    budgets = iter([1500, 2500])
    proxy = CuttingProxy(
        int(slow_server.url.rsplit(":", 1)[1]),
        lambda: next(budgets, None),
        trigger=b"GET /v1/stream/",
    )
    await nursery.start(proxy.serve)

    def scenario(context: BrowserContext, page: Page) -> tuple[str, list[str], list[str]]:
        conversation_id = ask(page, "an eventsource", wait_for_chars=20)
        # A second reader of the same stream: the browser's EventSource (GET, path form).
        page.evaluate(
            """id => {
              window.esData = []; window.esIds = [];
              const source = new EventSource('v1/stream/' + encodeURIComponent(id));
              source.onmessage = (event) => {
                window.esData.push(event.data);
                window.esIds.push(event.lastEventId);
                if (event.data === '[DONE]') source.close();
              };
            }""",
            conversation_id,
        )
        page.wait_for_function("window.esData.includes('[DONE]')")
        return conversation_id, page.evaluate("window.esData"), page.evaluate("window.esIds")

    conversation_id, data, ids = await trio.to_thread.run_sync(in_browser, proxy.url, scenario)
    assert proxy.cuts == 2  # the EventSource really lost its connection twice
    session = slow_server.manager.get(conversation_id)
    assert session is not None
    raw = await whole_generation(session)
    assert data == sse_data(raw)  # every event once, in order: nothing lost or repeated
    assert [event_offset(event_id) for event_id in ids] == sorted(event_ends(raw))


async def test_the_pages_splitter_counts_bytes_like_the_server_for_any_line_ending(
    server: RunningServer,
) -> None:
    """The page's own byte-counting SSE splitter (static/sse.js), fed in random pieces.

    Upstreams may end lines with CRLF or CR; non-ASCII text spans chunk boundaries. The
    offsets the page saves must be the server's offsets after each event, always.
    """
    stamper = EventIdStamper()
    stream = b""
    for index, eol in enumerate(["\n", "\r\n", "\r"] * 20):
        event = f": ping{eol}{eol}" if index % 7 == 3 else f"data: é{index}·ü{eol}{eol}"
        stream += stamper.stamp(event.encode(), len(stream))
    splitter = EventSplitter(0)
    expected = [(e.data, e.id, e.offset) for e in splitter.feed(stream) + splitter.flush()]

    def scenario(context: BrowserContext, page: Page) -> list[list[Any]]:
        result: list[list[Any]] = page.evaluate(
            """async (bytes) => {
              const { EventSplitter, parseEvent } = await import('./static/sse.js');
              const data = new Uint8Array(bytes);
              const splitter = new EventSplitter(0);
              const out = [];
              let at = 0, seed = 7;
              while (at < data.length) {
                seed = (seed * 1103515245 + 12345) % 2147483648;
                const size = seed % 23;
                const events = splitter.push(data.slice(at, at + size), at + size >= data.length);
                for (const [raw, end] of events) {
                  const event = parseEvent(raw);
                  out.push([event.data, event.id, end]);
                }
                at += size;
              }
              return out;
            }""",
            list(stream),
        )
        return result

    got = await run_in_browser(server, scenario)
    assert [tuple(item) for item in got] == expected
