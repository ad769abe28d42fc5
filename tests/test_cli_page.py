"""``serve --page`` and ``--page-dir``: their options as the command parses them, in-process
(tests/cli_options.py; tests/test_cli.py runs the command itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_options import serve_options
from tests.cli_refusals import refused_serve
from tests.conftest import StartServer
from tests.helpers import http_client
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


@pytest.mark.in_process(autojump=False)  # the page is read from disk in a thread: real time
async def test_a_page_directory_in_front_of_an_upstream_from_the_environment(
    start_server: StartServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<title>their page</title>")
    env = {"TRIO_STREAMS_UPSTREAM": upstream.url, "TRIO_STREAMS_PAGE_DIR": str(tmp_path)}
    server = await start_server(**serve_options(env=env))
    async with http_client(server, timeout=10) as client:
        page = await client.get("/")
        props = await client.get("/props")
    assert page.text == "<title>their page</title>"
    assert props.json() == PROPS
