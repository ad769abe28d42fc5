"""Several chat tabs streaming at once, in Chromium: HTTP/2 versus HTTP/1.1.

A browser opens at most 6 HTTP/1.1 connections per origin, and a stream holds its
connection until it ends: an 8-tab user's 7th and 8th answers wait for others to finish.
Over HTTPS, Hypercorn speaks HTTP/2 (ALPN) and every stream shares one connection.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from playwright.sync_api import sync_playwright

from tests.conftest import StartServer
from tests.deploy.conftest import Tls
from tests.http.test_browser import CHROMIUM, TIMEOUT_MS

TABS = 8
#: Each answer takes a few seconds: long enough to see which ones stream together.
TPS = 60.0
PROMPT = "tell me about streams"


#: Each tab notes (wall clock, shared by the tabs) when its answer shows its first text and
#: when the page says it is done; a MutationObserver is not throttled like a background timer.
WATCH = """
addEventListener("DOMContentLoaded", () => {
  new MutationObserver(() => {
    const text = document.querySelector("#answer").textContent;
    const state = document.querySelector("#status").dataset.state;
    if (!window.startedAt && text.length > 0) window.startedAt = Date.now();
    // "length": the demo's default answer may end at the token limit; either way it ended.
    if (!window.doneAt && (state === "done" || state === "length")) window.doneAt = Date.now();
  }).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
});
"""
ASK = """prompt => {
  document.querySelector("#prompt").value = prompt;
  document.querySelector("#send").click();
}"""


@dataclass
class Tab:
    started: float  # first answer text shown (ms, wall clock)
    done: float
    protocols: list[str]  # of its chat requests, as the browser reports them


def timeline(tabs: list[Tab]) -> str:
    """Each tab's start and end, in seconds from the first start (assertion messages)."""
    zero = min(tab.started for tab in tabs)
    return ", ".join(f"{(t.started - zero) / 1000:.2f}-{(t.done - zero) / 1000:.2f}" for t in tabs)


def eight_tabs(url: str) -> list[Tab]:
    """Open 8 tabs of the chat page, ask in each at once, and note when each answer starts
    and ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            context = browser.new_context(ignore_https_errors=True)  # a trustme certificate
            context.set_default_timeout(TIMEOUT_MS)
            context.add_init_script(WATCH)
            pages = [context.new_page() for _ in range(TABS)]
            for page in pages:
                page.goto(url)
                page.wait_for_selector("#status[data-state=idle]")
            for page in pages:
                page.evaluate(ASK, PROMPT)
            for page in pages:
                page.wait_for_function("window.doneAt")
            return [
                Tab(
                    page.evaluate("window.startedAt"),
                    page.evaluate("window.doneAt"),
                    page.evaluate(
                        """performance.getEntriesByType("resource")
                            .filter(entry => entry.name.includes("v1/chat/completions"))
                            .map(entry => entry.nextHopProtocol)"""
                    ),
                )
                for page in pages
            ]
        finally:
            browser.close()


async def test_over_http2_all_eight_tabs_stream_at_once(
    start_server: StartServer, tls: Tls
) -> None:
    server = await start_server(demo_tps=TPS, certfile=str(tls.certfile), keyfile=str(tls.keyfile))
    assert server.url.startswith("https://")
    tabs = await trio.to_thread.run_sync(eight_tabs, server.url)
    assert all(tab.protocols == ["h2"] for tab in tabs)
    first_done = min(tab.done for tab in tabs)
    # Every answer had started well before the first one ended.
    assert all(tab.started < first_done - 1 for tab in tabs), timeline(tabs)


async def test_over_http11_the_seventh_and_eighth_tabs_wait(start_server: StartServer) -> None:
    server = await start_server(demo_tps=TPS)
    tabs = await trio.to_thread.run_sync(eight_tabs, server.url)
    assert all(tab.protocols == ["http/1.1"] for tab in tabs)
    first_done = min(tab.done for tab in tabs)
    starts = sorted(tab.started for tab in tabs)
    # Six streams at once (the browser's connections per origin); the other two start
    # only once a connection is free, when an answer has ended: the connection is free a
    # moment before its page shows "done" (0.01 s seen), well after the six started (4 s).
    assert all(start < first_done - 1 for start in starts[:6]), timeline(tabs)
    assert all(start > first_done - 0.5 for start in starts[6:]), timeline(tabs)
