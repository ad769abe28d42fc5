"""The chat page against a server that requires an API key (real headless Chromium)."""

from __future__ import annotations

import trio
from playwright.sync_api import BrowserContext, Page

from tests.conftest import StartServer
from tests.helpers import chat_text
from tests.http.test_browser import (
    BROWSER_TPS,
    answer,
    ask,
    in_browser,
    wait_done,
    whole_generation,
)
from trio_streams.http.auth import ApiKeys

KEY = "page-key-42"


async def test_the_page_sends_the_key_it_was_opened_with(start_server: StartServer) -> None:
    server = await start_server(demo_tps=BROWSER_TPS * 4, api_keys=(KEY,))
    seen: dict[str, str] = {}

    def scenario(context: BrowserContext, page: Page) -> None:
        seen["url"] = page.url
        seen["cid"] = ask(page, "keys please", wait_for_chars=20)
        page.reload()  # the key outlives the fragment: it is in localStorage
        wait_done(page)
        seen["text"] = answer(page)

    await trio.to_thread.run_sync(in_browser, server.url, scenario, f"/#key={KEY}")
    assert "key=" not in seen["url"]  # removed from the address bar (and from history)
    session = server.manager.get(seen["cid"])
    assert session is not None and session.owner == ApiKeys([KEY]).owner_of(KEY)
    assert seen["text"] == chat_text(await whole_generation(session))
