"""The README and the documentation pages say what is true.

Their examples run as a reader would run them: the Python ones as scripts, the curl
stories with bash, against a real ``trio-streams serve`` process (its address substituted
for the documented ``http://127.0.0.1:8080``). Every other Python block must compile and
every bash block must parse. Every relative link must point to a file that exists, and a
link to a heading of a page to a heading that exists.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import httpx
import pytest
import trio
from playwright.sync_api import sync_playwright

from tests.conftest import StartServer
from tests.helpers import chat_body, chat_text
from tests.redis_fixtures import RedisServer
from tests.serve_process import serve_process
from tests.test_cli import start_process
from trio_streams import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
DOCUMENTED_URL = "http://127.0.0.1:8080"

#: The curl stories run on a clock this many times faster than the documented one: their
#: waits (``timeout 2``, ``sleep 1``) are divided by it and the demo model's pace is
#: multiplied by it, so every cut still lands at the same point of the answer.
STORY_SPEEDUP = 2
#: Slow enough that a story can drop a stream mid-answer (50 tokens/s on the documented
#: clock), fast enough for a test.
STORY_TPS = str(50 * STORY_SPEEDUP)
_WAIT = re.compile(r"\b(timeout|sleep) ([0-9.]+)\b")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_MARKED = re.compile(
    r"<!-- (?:readme|docs)-example: ([\w-]+) -->\n```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE
)
# [text](target) and ![alt](target); a target may carry a "title".
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True)
class Block:
    page: Path
    language: str
    code: str

    def __str__(self) -> str:
        line = self.page.read_text()[: self.page.read_text().find(self.code)].count("\n") + 1
        return f"{self.page.relative_to(ROOT)}:{line}"


def blocks(language: str) -> list[Block]:
    found = []
    for page in PAGES:
        for match in _FENCE.finditer(page.read_text()):
            if match.group(1) == language:
                found.append(Block(page, language, match.group(2)))
    return found


def example(page: Path, name: str) -> str:
    """The code block marked ``<!-- readme-example: NAME -->`` (or ``docs-example``)."""
    for match in _MARKED.finditer(page.read_text()):
        if match.group(1) == name:
            return match.group(3)
    raise AssertionError(f"example {name!r} not found in {page.relative_to(ROOT)}")


def readme_example(name: str) -> str:
    """The example named ``name`` in the README, else in the first docs page that has it
    (other tests run some examples with assertions of their own)."""
    for page in PAGES:
        if re.search(rf"<!-- (?:readme|docs)-example: {re.escape(name)} -->", page.read_text()):
            return example(page, name)
    raise AssertionError(f"example {name!r} not found")


def for_server(code: str, url: str) -> str:
    """``code`` aimed at the server under test instead of the documented address."""
    assert DOCUMENTED_URL in code, "the example does not talk to the documented address"
    return code.replace(DOCUMENTED_URL, url)


# --- every block, every link ------------------------------------------------------------


def test_the_pages_have_examples_to_check() -> None:
    assert len(blocks("python")) >= 6 and len(blocks("bash")) >= 10


@pytest.mark.parametrize("block", blocks("python"), ids=str)
def test_python_block_compiles(block: Block) -> None:
    compile(block.code, str(block), "exec")


@pytest.mark.parametrize("block", blocks("bash"), ids=str)
def test_bash_block_parses(block: Block) -> None:
    result = subprocess.run(
        ["bash", "-n"], input=block.code, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{block}: {result.stderr}"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension (MkDocs) gives a heading."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(page: Path) -> Iterator[str]:
    text = _FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    for match in _LINK.finditer(text):
        yield match.group(1)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_link_check_finds_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A `title`\n[ok](#a-title) [gone](x.md) [bad](#nope)\n```\n[x](y)\n```\n")
    assert list(links(page)) == ["#a-title", "x.md", "#nope"]
    assert anchors(page) == {"a-title"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_link_leaves_the_repository(page: Path) -> None:
    """A file beside the checkout (such as a shared spec) exists here but not for readers."""
    assert "../shared" not in page.read_text()
    for target in links(page):
        if not re.match(r"[a-z]+:", target):
            assert (page.parent / target.partition("#")[0]).resolve().is_relative_to(ROOT)


def test_readme_stays_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    first = _FENCE.search(text)
    assert first is not None
    assert "pip install -e . && trio-streams serve" in first.group(2)
    tests = re.search(r"pip install -e '\.\[test\]' && (pytest.*)$", first.group(2), re.M)
    assert tests is not None
    # CI runs the README's test command, as it is written there.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci and f"\n{tests[1]}\n" in ci


def test_every_page_runs_the_suite_as_the_readme_does() -> None:
    """A page that runs the suite (``pytest`` on no file) runs it with the README's options
    (``-n auto``): a reader copying the command gets the run CI makes, not a serial one."""
    readme = re.search(r"pip install -e '\.\[test\]' && (pytest.*)$", README.read_text(), re.M)
    assert readme is not None
    options = readme[1].removeprefix("pytest")
    commands = [
        line.split("#")[0].strip()
        for page in PAGES
        for match in _FENCE.finditer(page.read_text())
        for line in match.group(2).splitlines()
        if re.search(r"(^|&& )pytest\b", line)
    ]
    suite = [c for c in commands if not re.search(r"pytest .*\btests/", c)]
    assert len(suite) >= 3, commands
    for command in suite:
        assert re.search(r"pytest" + re.escape(options) + r"( |$)", command), command


@pytest.mark.parametrize("command", ["serve", "tail"])
def test_every_option_is_in_the_configuration_page(command: str) -> None:
    """An option added to the CLI without a row in the table fails here."""
    table = (DOCS / "configuration.md").read_text()
    options = [p for p in cli.main.commands[command].params if isinstance(p, click.Option)]
    assert options
    for option in options:
        for name in option.opts:
            assert re.search(rf"^\| `{re.escape(name)}[ `]", table, re.MULTILINE), name
        if option.envvar:
            assert f"`{option.envvar}`" in table, option.envvar


# --- examples that run on their own ------------------------------------------------------


def run_python(code: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("page", [README, DOCS / "embedding.md"], ids=["README", "embedding"])
def test_embedding_example_resumes_without_loss_or_duplication(page: Path) -> None:
    stream, info = run_python(example(page, "embedding")).rsplit("\n\n", 1)
    # Each event carries its generation and the byte offset just after it as its id
    # (EventSource resume).
    generation = re.search(r"generation='([0-9a-f]{16})'", info)
    assert generation is not None
    expected = (
        "data: 1\nid: G-33\n\ndata: 2\nid: G-66\n\ndata: 3\nid: G-99\n\ndata: [DONE]\nid: G-138"
    )
    assert stream == expected.replace("G", generation.group(1))
    assert "conversation_id='conversation-1'" in info and "is_done=True" in info


def test_embedded_server_example_serves_and_stops() -> None:
    output = run_python(example(DOCS / "embedding.md", "serve"))
    assert output == "{'status': 'ok', 'sessions': 0}\n"


# --- examples that talk to a running server ----------------------------------------------


@asynccontextmanager
async def running_server(nursery: trio.Nursery, *args: str) -> AsyncIterator[str]:
    """A real ``trio-streams serve`` process on a free port, its URL; SIGTERM at the end."""
    server = await start_process(*args)
    try:
        url = await server.wait_for_url()
        nursery.start_soon(server.drain_stderr)  # its access log must not fill the pipe
        yield url
    finally:
        server.process.send_signal(signal.SIGTERM)
        with trio.move_on_after(10):
            await server.process.wait()
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server slow enough that a story can drop a stream mid-answer (on the stories'
    faster clock: see :func:`faster`), shared by the stories (each its own conversations)."""
    log = tmp_path_factory.mktemp("served") / "stderr.log"
    with serve_process(log, "--demo-tps", STORY_TPS) as url:
        yield url


async def run_bash(code: str, cwd: Path) -> str:
    with trio.fail_after(60):
        result = await trio.run_process(
            ["bash", "-c", code], cwd=cwd, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def read_all(url: str, conversation_id: str) -> bytes:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(f"{url}/v1/stream/{conversation_id}?from=0")
        assert response.status_code == 200
        return response.content


def faster(code: str) -> str:
    """A story's ``timeout N`` and ``sleep N`` on the :data:`STORY_SPEEDUP` clock."""
    scaled, count = _WAIT.subn(lambda m: f"{m[1]} {float(m[2]) / STORY_SPEEDUP:g}", code)
    assert count, "the story waits for nothing: no need to scale it"
    return scaled


async def test_readme_curl_story(served: str, tmp_path: Path) -> None:
    output = await run_bash(faster(for_server(example(README, "curl-story"), served)), tmp_path)
    part, rest = (tmp_path / "part.sse").read_bytes(), (tmp_path / "rest.sse").read_bytes()
    # 1-3: the stream was cut mid-answer, went on, and the resume completes it exactly.
    assert part and rest and f"received {len(part)} bytes" in output
    assert '"conversation_id":"my-chat"' in output
    assert part + rest == await read_all(served, "my-chat")
    assert re.search(rb"data: \[DONE\]\nid: [0-9a-f]{16}-%d\n\n\Z" % len(part + rest), part + rest)
    # 4: the DELETE answered 204, and the stream it stopped ended without [DONE].
    assert "\n204\n" in output
    async with httpx.AsyncClient(timeout=30) as http:
        stopped = await http.get(f"{served}/v1/stream/other")
    assert stopped.status_code == 404
    # 5: the errors, in the documented shape.
    assert '{"error":{"code":404,"message":"Stream not found or expired"' in output
    assert '{"error":{"code":400,"message":"Invalid \'from\' offset"' in output
    assert '{"error":{"code":400,"message":"invalid body: ' in output


async def test_getting_started_resume(served: str, tmp_path: Path) -> None:
    code = faster(for_server(example(DOCS / "getting-started.md", "first-resume"), served))
    assert await run_bash(code, tmp_path) == "identical\n"
    whole = (tmp_path / "whole.sse").read_bytes()
    assert (tmp_path / "part.sse").read_bytes() != whole  # it was cut before the end
    assert re.search(rb"data: \[DONE\]\nid: [0-9a-f]{16}-%d\n\n\Z" % len(whole), whole)


@pytest.mark.parametrize(
    ("page", "name", "conversation_id"),
    [
        (README, "openai", "my-chat-2"),
        (DOCS / "clients.md", "openai", "sdk-chat"),
        (DOCS / "clients.md", "client", "my-chat-3"),
    ],
    ids=["README-openai", "clients-openai", "clients-python-client"],
)
async def test_python_examples_against_the_server(
    examples_server: str, tmp_path: Path, page: Path, name: str, conversation_id: str
) -> None:
    code = for_server(example(page, name), examples_server)
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-c", code], cwd=tmp_path, capture_stdout=True,
            capture_stderr=True, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    printed = result.stdout.decode()
    # What it printed is the text of the session it started, which the server kept.
    stream = await read_all(examples_server, conversation_id)
    text = chat_text(stream)
    assert len(text) > 50 and printed.startswith(text)
    if name == "client":
        assert f"conversation_id='{conversation_id}'" in printed and "is_done=True" in printed


@pytest.mark.redis
async def test_redis_story_across_two_instances(nursery: trio.Nursery, tmp_path: Path) -> None:
    code = example(DOCS / "redis.md", "redis")
    starts = [line for line in code.splitlines() if line.startswith("trio-streams serve")]
    assert len(starts) == 2 and all("--store redis://" in line for line in starts)
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        store = ("--store", redis.url, "--demo-tps", STORY_TPS)
        async with (
            running_server(nursery, *store) as first,
            running_server(nursery, *store) as second,
        ):
            story = "\n".join(line for line in code.splitlines() if line not in starts)
            story = story.replace("http://127.0.0.1:8081", first)
            story = story.replace("http://127.0.0.1:8082", second)
            output = await run_bash(faster(story), tmp_path)
            part, rest = (tmp_path / "part.sse").read_bytes(), (tmp_path / "rest.sse").read_bytes()
            assert part and rest and '"conversation_id":"my-chat"' in output
            whole = part + rest  # started on the first, resumed on the second
            assert re.search(rb"data: \[DONE\]\nid: [0-9a-f]{16}-%d\n\n\Z" % len(whole), whole)
            async with httpx.AsyncClient(timeout=30) as http:
                # The DELETE on the second instance removed it from both.
                for url in (first, second):
                    assert (await http.get(f"{url}/v1/stream/my-chat")).status_code == 404
    finally:
        redis.stop()


# --- the EventSource example, in a real browser ------------------------------------------


def eventsource_in_chromium(url: str, snippet: str) -> list[str]:
    """Run ``snippet`` on a page of the server's origin; what it logged, once it closed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI"):  # as in tests/http/test_browser.py: CI has chromium
            raise RuntimeError("chromium is missing: apt-get install -y chromium")
        pytest.skip("needs Debian's chromium: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            logged: list[str] = []
            page.on("console", lambda message: logged.append(message.text))
            page.goto(url + "/")
            page.evaluate(f"() => {{\n{snippet}\nwindow.documented = source;\n}}")
            page.wait_for_function("window.documented.readyState === EventSource.CLOSED")
            return logged
        finally:
            browser.close()


@pytest.mark.browser
async def test_eventsource_example_follows_the_stream_to_its_end(
    start_server: StartServer,
) -> None:
    snippet = example(DOCS / "clients.md", "eventsource")
    server = await start_server(demo_tps=100)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat_body(max_tokens=60),
            headers={"X-Conversation-Id": "my-chat"},
        ) as started,
    ):  # fmt: skip
        assert started.status_code == 200
        logged = await trio.to_thread.run_sync(eventsource_in_chromium, server.url, snippet)
        stream = await started.aread()
    # It printed the whole answer, once, and closed at data: [DONE] (else it reconnects).
    assert "".join(logged) == chat_text(stream) and len(chat_text(stream)) > 50
