"""``--page-dir``: a built page's static files at ``/`` (llama.cpp's WebUI, for one).

A tiny page in a temporary directory, served by a real trio-streams server, alone and in
front of the fake upstream.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import StartServer
from tests.helpers import assert_error
from trio_streams.http.routes.page import PageDir
from trio_streams.testing.fake_upstream import PROPS, FakeUpstream

INDEX = b"<!doctype html><title>built page</title><script src='./_app/app.js'></script>"
SCRIPT = b"fetch('./props')"
STYLE = b"body { margin: 0 }"


@pytest.fixture
def page_dir(tmp_path: Path) -> Path:
    (tmp_path / "_app" / "immutable").mkdir(parents=True)
    (tmp_path / "index.html").write_bytes(INDEX)
    (tmp_path / "_app" / "app.js").write_bytes(SCRIPT)
    (tmp_path / "_app" / "immutable" / "style.css").write_bytes(STYLE)
    (tmp_path / "health").write_bytes(b"a file named like one of our routes")
    return tmp_path


async def test_the_directory_is_the_page(start_server: StartServer, page_dir: Path) -> None:
    server = await start_server(page_dir=str(page_dir))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        index = await http.get("/")
        assert index.content == INDEX
        assert index.headers["content-type"].startswith("text/html")
        assert index.headers["cache-control"] == "no-cache"
        script = await http.get("/_app/app.js")
        assert script.content == SCRIPT
        # An ES module must come with a JavaScript type, or the browser refuses to run it.
        assert script.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
        style = await http.get("/_app/immutable/style.css")
        assert style.content == STYLE and style.headers["content-type"].startswith("text/css")
        again = await http.get("/_app/app.js", headers={"If-None-Match": script.headers["etag"]})
        assert again.status_code == 304
        assert (await http.head("/_app/app.js")).status_code == 200
        missing = await http.get("/_app/missing.js")
        assert_error(missing, 404, "The requested URL was not found", "not_found_error")
        assert (await http.get("/health")).json()["status"] == "ok"  # ours win over a file
        assert (await http.post("/_app/app.js")).status_code == 404  # files are only read


async def test_page_files_are_public_and_the_api_is_not(
    start_server: StartServer, page_dir: Path, upstream: FakeUpstream
) -> None:
    server = await start_server(
        page_dir=str(page_dir), upstreams=(upstream.url,), api_keys=("ours-1",)
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/")).content == INDEX
        assert (await http.get("/_app/app.js")).content == SCRIPT
        refused = await http.get("/props")
        assert_error(refused, 401, "Missing or invalid API key", "authentication_error")
        posted = await http.post("/_app/app.js")  # not a read of a file: the upstream's
        assert posted.status_code == 401
        props = await http.get("/props", headers={"Authorization": "Bearer ours-1"})
        assert props.json() == PROPS
    assert [request.path for request in upstream.requests] == ["/props"]


async def test_with_an_upstream_what_the_directory_lacks_passes_through(
    start_server: StartServer, page_dir: Path, upstream: FakeUpstream
) -> None:
    server = await start_server(page_dir=str(page_dir), upstreams=(upstream.url,))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/")).content == INDEX
        assert (await http.get("/props")).json() == PROPS
        assert (await http.get("/_app/missing.js")).json()["path"] == "/_app/missing.js"
    assert [request.path for request in upstream.requests] == ["/props", "/_app/missing.js"]


def test_no_path_leaves_the_directory(page_dir: Path) -> None:
    (page_dir.parent / "secret.txt").write_text("outside")
    files = PageDir(page_dir)
    assert files.file("/") == page_dir / "index.html"
    assert files.file("/_app/app.js") == page_dir / "_app" / "app.js"
    for path in ["/../secret.txt", "/_app/../../secret.txt", "//etc/passwd", "/_app"]:
        assert files.file(path) is None, path
    assert not files.serves("POST", "/_app/app.js")
