"""``serve --page`` and ``--page-dir`` run as a user runs them: a real process."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.cli_refusals import refused_serve
from tests.test_cli import start_process
from trio_streams.testing.fake_upstream import PROPS, FakeUpstream


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--page", "upstream"], "'upstream' needs --upstream"),
        (["--page", "theirs"], "'theirs' is not one of 'builtin', 'upstream'"),
        (["--page-dir", "/no/such/dir"], "does not exist"),
        (["--page-dir", "."], "has no index.html"),
        (
            ["--upstream", "http://a", "--page", "upstream", "--page-dir", "{index}"],
            "either --page upstream or --page-dir",
        ),
    ],
)
def test_a_bad_page_is_refused_before_serving(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "index.html").write_text("<title>page</title>")
    args = [arg.replace("{index}", str(tmp_path)) for arg in args]
    monkeypatch.chdir(tmp_path.parent)  # "--page-dir ." is a directory without index.html
    result = refused_serve("--port", "0", *args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr


async def test_a_page_directory_in_front_of_an_upstream_from_the_environment(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<title>their page</title>")
    upstream = FakeUpstream()
    stop_upstream = await upstream.start(nursery)
    server = await start_process(
        env={"TRIO_STREAMS_UPSTREAM": upstream.url, "TRIO_STREAMS_PAGE_DIR": str(tmp_path)}
    )
    try:
        url = await server.wait_for_url()
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            page = await client.get("/")
            props = await client.get("/props")
        assert page.text == "<title>their page</title>"
        assert props.json() == PROPS
    finally:
        server.process.send_signal(signal.SIGTERM)
        with trio.fail_after(5):
            assert await server.process.wait() == 0
        stop_upstream.set()
