"""llama.cpp's own chat page through trio-streams in front of a real llama-server, in Chromium.

Starts ``llama-server`` and ``trio-streams serve --upstream … --page-dir WEBUI`` (serving the
built WebUI, which calls the API on its own origin) on free 127.0.0.1 ports, then drives the
page in headless Chromium (Playwright, Debian's ``/usr/bin/chromium``):

- it loads: ``/props`` reaches llama-server, the page does not say "Server unavailable";
- a reload in the middle of an answer, twice: the page reattaches
  (``GET /v1/stream/<id>?from=0``), the answer resumes, and the text the page saved equals
  the text of the server's stream;
- Stop: the page's ``DELETE /v1/stream/<id>`` reaches trio-streams, the session ends and
  llama-server frees its slot (read from its ``/slots``);
- and reports, without checking, what the page does after a reload when its answer is longer
  than the session's cap (a second trio-streams with a small ``--session-max-bytes``).

Prints what it saw and exits non-zero if a check failed. An optional check, not part of the
test suite: it needs a llama-server binary, a GGUF model and the built WebUI. Without them
it says so and exits 0. The answers are capped (``max_tokens``, added to the page's
requests) so a model that never emits its end token still finishes.

Usage: ``python scripts/check_webui.py [--llama-server PATH] [--model GGUF] [--webui DIR]``
(defaults: ``shared/peer/...`` beside the repository's checkout).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from check_llama_server import data_payloads, free_port, process, wait_healthy
from playwright.sync_api import Browser, Page, Request, Route, sync_playwright

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer"
CHROMIUM = "/usr/bin/chromium"
#: Tokens of the answers that are reloaded: long enough to outlast two page loads.
RELOAD_TOKENS = 1500
#: Seconds a whole answer may take (a busy machine's llama-server may do 10 tokens a second).
ANSWER = 300.0
#: ``--session-max-bytes`` of the second trio-streams, for the report on a capped answer.
CAP = 200_000
#: Seconds any one step may take (the page's 8 MB bundle is slow to load on a busy machine).
STEP = 90.0

READ_MESSAGES = """async () => new Promise((resolve, reject) => {
  const open = indexedDB.open("LlamaUi");
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const request = open.result.transaction("messages").objectStore("messages").getAll();
    request.onsuccess = () => { open.result.close(); resolve(request.result); };
    request.onerror = () => reject(request.error);
  };
})"""


class Failed(Exception):
    """A check did not hold; the message says what was seen."""


def wait_for(
    what: str, condition: Callable[[], Any], page: Page | None = None, timeout: float = STEP
) -> Any:
    """Poll ``condition`` until it is truthy (servers and a page: nothing else to wait on).

    With ``page``, the pauses are the page's own, so its events (the requests recorded by
    :class:`Check`) are delivered meanwhile: the sync API delivers them only inside its calls.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        if page is not None:
            page.wait_for_timeout(50)
        else:
            time.sleep(0.05)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


def runnable(binary: Path, scratch: Path) -> Path:
    """``binary``, or a copy beside real symlinks if its library links were copied flat.

    A directory copied without symlinks holds ``libllama.so.0`` as a small text file naming
    ``libllama.so.0.0.0``; the dynamic loader then fails with "file too short".
    """
    folder = binary.parent
    flattened = [
        path
        for path in folder.iterdir()
        if path.is_file() and path.stat().st_size < 256 and ".so" in path.name
    ]
    if not flattened:
        return binary
    copy = scratch / "llama-server"
    copy.mkdir()
    for path in folder.iterdir():
        target = copy / path.name
        if path in flattened and (folder / path.read_text().strip()).exists():
            target.symlink_to(path.read_text().strip())
        else:
            shutil.copy2(path, target)
    return copy / binary.name


def stream_text(raw: bytes) -> str:
    """The assistant text of a chat completion SSE stream, as a page would show it."""
    text = []
    for payload in data_payloads(raw):
        if payload == b"[DONE]":
            continue
        chunk = json.loads(payload)
        for choice in chunk.get("choices", []):
            text.append(choice.get("delta", {}).get("content") or "")
    return "".join(text)


class Check:
    """The servers' URLs and what the page sent, for the scenarios below."""

    def __init__(self, proxy: str, llama: str) -> None:
        self.proxy = proxy
        self.llama = llama
        self.http = httpx.Client(base_url=proxy, timeout=30)
        self.seen: list[tuple[str, str, int | None]] = []  # (method, path, status)
        self.asked: list[str] = []  # conversation ids

    def clean_up(self) -> None:
        """Stop what a scenario left generating, so the next one starts on idle slots."""
        for conversation_id in self.asked:
            self.http.delete(f"/v1/stream/{conversation_id}")
        self.asked.clear()
        try:
            wait_for("llama-server's slots to free", lambda: not self.slots_busy(), timeout=60)
        except Failed as failure:
            print(f"(warning) {failure}: the next scenario shares llama-server with it")

    def lookup(self, conversation_id: str) -> dict[str, Any] | None:
        found = self.http.post("/v1/streams/lookup", json={"conversation_ids": [conversation_id]})
        entries: list[dict[str, Any]] = found.json()
        return entries[0] if entries else None

    def server_stream(self, conversation_id: str) -> bytes:
        return self.http.get(f"/v1/stream/{conversation_id}").content

    def slots_busy(self) -> bool:
        slots = httpx.get(self.llama + "/slots", timeout=10).json()
        return any(slot.get("is_processing") for slot in slots)

    def open_page(self, browser: Browser, max_tokens: int | None) -> Page:
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        context.set_default_timeout(STEP * 1000)
        page = context.new_page()
        page.on("response", lambda r: self._record(r.request, r.status))
        page.on("requestfailed", lambda request: self._record(request, None))

        def capped(route: Route) -> None:
            body = json.loads(route.request.post_data or "{}")
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            route.continue_(post_data=json.dumps(body))

        page.route("**/v1/chat/completions", capped)
        page.goto(self.proxy + "/")
        page.get_by_placeholder("Type a message...").wait_for()
        return page

    def _record(self, request: Request, status: int | None) -> None:
        if request.url.startswith(self.proxy) and "/_app/" not in request.url:
            self.seen.append((request.method, request.url[len(self.proxy) :], status))

    def ask(self, page: Page, prompt: str) -> str:
        """Send ``prompt``; the conversation id the page streams under."""
        with page.expect_request("**/v1/chat/completions") as sent:
            box = page.get_by_placeholder("Type a message...")
            box.fill(prompt)
            box.press("Enter")
        conversation_id = sent.value.headers.get("x-conversation-id")
        if not conversation_id:
            raise Failed("the page sent its completion without X-Conversation-Id")
        self.asked.append(conversation_id)
        return conversation_id

    def received(self, page: Page, conversation_id: str) -> int:
        """Bytes the page has saved as received (its resume record), 0 if none."""
        record = page.evaluate(
            "key => localStorage.getItem(key)", f"LlamaUi.streamResume.{conversation_id}"
        )
        return int(json.loads(record)["bytesReceived"]) if record else 0

    def saved_answer(self, page: Page, conversation_id: str) -> str | None:
        """The assistant message the page saved for the conversation (IndexedDB)."""
        messages = page.evaluate(READ_MESSAGES)
        answers = [
            m for m in messages if m.get("convId") == conversation_id and m["role"] == "assistant"
        ]
        if not answers:
            return None
        content: str = max(answers, key=lambda m: m["timestamp"])["content"]
        return content


def check_loads(check: Check, browser: Browser) -> None:
    page = check.open_page(browser, None)

    def props_read() -> bool:
        return any(
            method == "GET" and path.startswith("/props") and status == 200
            for method, path, status in check.seen
        )

    wait_for("GET /props", props_read, page)
    page.get_by_text("tiny-llama").or_(page.get_by_text("Server unavailable")).first.wait_for()
    unavailable = page.get_by_text("Server unavailable").count()
    if unavailable:
        raise Failed("the page says 'Server unavailable'")
    props = [entry for entry in check.seen if entry[1].startswith(("/props", "/tools"))]
    print(f"page loaded through trio-streams: {props}")


def check_reload(check: Check, browser: Browser, reloads: int = 2) -> None:
    page = check.open_page(browser, RELOAD_TOKENS)
    conversation_id = check.ask(page, "Tell me a long story")
    reattached = f"/v1/stream/{conversation_id}?from=0"
    for number in range(1, reloads + 1):
        before = wait_for(
            "the answer to start", lambda: check.received(page, conversation_id), page
        )
        page.reload()
        wait_for("the reattach", lambda: ("GET", reattached, 200) in check.seen, page)
        session = check.lookup(conversation_id)
        live = session is not None and not session["is_done"]
        print(
            f"reload {number}: page had {before} bytes; reattached with GET {reattached} -> 200 "
            f"while the answer was {'still generating' if live else 'already done'}"
        )
        if not live:
            raise Failed("the answer ended before the page reattached: not a reload mid-answer")
        check.seen.clear()
    wait_for(
        "the answer to end",
        lambda: (check.lookup(conversation_id) or {}).get("is_done"),
        page,
        timeout=ANSWER,
    )
    raw = check.server_stream(conversation_id)
    expected = stream_text(raw)
    events = len(data_payloads(raw))
    try:
        wait_for(
            "the page's saved answer to equal the server's stream",
            lambda: check.saved_answer(page, conversation_id) == expected,
            page,
            timeout=30,
        )
    except Failed:
        saved = check.saved_answer(page, conversation_id) or ""
        raise Failed(
            f"saved answer differs: {len(saved)} chars saved, {len(expected)} streamed; "
            f"first difference at {next_difference(saved, expected)}"
        ) from None
    print(
        f"after {reloads} reloads: the saved answer equals the server's stream "
        f"({len(expected)} characters; {len(raw)} bytes in {events} events, "
        f"{len(raw) / events:.0f} bytes an event)"
    )


def next_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def check_stop(check: Check, browser: Browser) -> None:
    page = check.open_page(browser, None)  # uncapped: only Stop ends it
    conversation_id = check.ask(page, "Count forever")
    wait_for("the answer to start", lambda: check.received(page, conversation_id) > 2000, page)
    delete = f"/v1/stream/{conversation_id}"
    at_delete: list[dict[str, Any] | None] = []

    def before_delete(route: Route) -> None:
        if route.request.method == "DELETE":
            at_delete.append(check.lookup(conversation_id))  # the state the DELETE meets
        route.continue_()

    page.route(f"**{delete}", before_delete)
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.get_by_role("button", name=re.compile("stop", re.IGNORECASE)).first.click()
    started = time.perf_counter()
    response = deleted.value
    if not response.url.endswith(delete) or response.status != 204:
        raise Failed(f"Stop sent DELETE {response.url} -> {response.status}")
    live = at_delete[0] if at_delete else None
    if live is None or live["is_done"]:
        raise Failed(f"the answer was not generating any more when Stop's DELETE left: {live}")
    # The producer stopped: its upstream request closed, which frees llama-server's slot.
    wait_for("llama-server's slot to free", lambda: not check.slots_busy(), timeout=10)
    idle = time.perf_counter() - started
    session = check.lookup(conversation_id)
    if session is not None and not session["is_done"]:
        raise Failed(f"the session still runs after Stop: {session}")
    after = check.http.get(delete).status_code
    print(
        f"Stop: DELETE {delete} -> 204 mid-answer (at {live['total_bytes']} bytes); "
        f"llama-server's slot free {1000 * idle:.0f} ms after "
        f"the DELETE answered; lookup then finds {session}, GET {delete} -> {after}"
    )


def report_capped(check: Check, browser: Browser) -> None:
    """Not a check: what the page does today with an answer longer than the session's cap.

    After a reload the page reattaches from offset 0, which the cap has dropped.
    """
    page = check.open_page(browser, RELOAD_TOKENS)
    conversation_id = check.ask(page, "Tell me a long story")
    wait_for(
        "the answer to pass the cap", lambda: check.received(page, conversation_id) > CAP, page
    )
    page.reload()
    reattach = f"/v1/stream/{conversation_id}?from=0"
    status = wait_for(
        "the reattach",
        lambda: next((s for m, p, s in check.seen if m == "GET" and p == reattach), None),
        page,
    )
    wait_for(
        "the answer to end",
        lambda: (check.lookup(conversation_id) or {}).get("is_done"),
        page,
        timeout=ANSWER,
    )
    page.wait_for_timeout(2000)
    saved = check.saved_answer(page, conversation_id) or ""
    session = check.lookup(conversation_id) or {}
    print(
        f"(report) an answer longer than --session-max-bytes {CAP}: reattach GET {reattach} -> "
        f"{status}; the page saved {len(saved)} characters of an answer of "
        f"{session.get('total_bytes')} bytes"
    )


def main(llama_server: Path, model: Path, webui: Path) -> int:
    missing = [
        str(path) for path in (llama_server, model, webui / "index.html") if not path.exists()
    ]
    if missing:
        print(f"skipped: not found: {', '.join(missing)} (give --llama-server, --model, --webui)")
        return 0
    llama_port, proxy_port, capped_port = free_port(), free_port(), free_port()
    llama = f"http://127.0.0.1:{llama_port}"
    proxy = f"http://127.0.0.1:{proxy_port}"
    capped = f"http://127.0.0.1:{capped_port}"
    with tempfile.TemporaryDirectory(prefix="check-webui-") as scratch:
        binary = runnable(llama_server, Path(scratch))
        llama_args = [
            str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(llama_port),
            "-c", "8192", "-np", "2", "--threads", "1", "--slots",
        ]  # fmt: skip
        proxy_args = [
            sys.executable, "-m", "trio_streams", "serve",
            "--upstream", llama + "/v1", "--page-dir", str(webui),
        ]  # fmt: skip
        capped_args = [*proxy_args, "--port", str(capped_port), "--session-max-bytes", str(CAP)]
        logs = Path(scratch)
        failures = []
        with (
            process(llama_args, str(logs / "llama-server.log")),
            process([*proxy_args, "--port", str(proxy_port)], str(logs / "trio-streams.log")),
            process(capped_args, str(logs / "trio-streams-capped.log")),
            sync_playwright() as playwright,
        ):
            wait_healthy(llama)
            wait_healthy(proxy)
            wait_healthy(capped)
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            scenarios: list[tuple[str, Callable[[Check, Browser], None], Check]] = [
                ("load", check_loads, Check(proxy, llama)),
                ("reload", check_reload, Check(proxy, llama)),
                ("stop", check_stop, Check(proxy, llama)),
                ("cap", report_capped, Check(capped, llama)),  # a report, not a check
            ]
            for name, scenario, check in scenarios:
                try:
                    scenario(check, browser)
                except Failed as failure:
                    print(f"{'(report)' if name == 'cap' else 'FAILED'} {name}: {failure}")
                    failures += [] if name == "cap" else [name]
                finally:
                    for context in browser.contexts:
                        context.close()  # the page stops reading before its streams stop
                    check.clean_up()
            browser.close()
        if failures:
            for log in sorted(logs.glob("*.log")):
                print(f"--- last lines of {log.name}:")
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    print("all checks passed" if not failures else f"failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--llama-server",
        type=Path,
        default=PEER / "llama-server" / "llama-server",
        help="path of the llama-server binary",
    )
    parser.add_argument("--model", type=Path, default=PEER / "tiny-llama.gguf", help="a GGUF model")
    parser.add_argument(
        "--webui", type=Path, default=PEER / "webui", help="llama.cpp's built WebUI directory"
    )
    arguments = parser.parse_args()
    sys.exit(main(arguments.llama_server, arguments.model, arguments.webui))
