"""The page at ``/``: trio-streams' own chat page, a built page from a directory, or none.

The built-in page is plain HTML, CSS and ES modules shipped in the package: no build step
and no CDN, the files under ``trio_streams/http/static/`` are served as they are (Quart
serves ``/static/...`` from the package), so it works offline, from the same origin as the
API it calls, against the demo model or any upstream.

``--page-dir DIR`` serves another page's static files instead, such as llama.cpp's built
WebUI: ``/`` is the directory's ``index.html``, any other path the file at that path (the
catch-all route of :mod:`trio_streams.http.routes.passthrough` asks :meth:`PageDir.file`
first). ``--page upstream`` leaves ``/`` to the upstream model server's own page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quart import Response, send_file
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound
from werkzeug.security import safe_join

from trio_streams.http.option_values import BUILTIN, INDEX, PageChoice


@dataclass(frozen=True, slots=True)
class PageDir:
    """A built page's directory (``--page-dir``); its files are public, like ``/static/``."""

    root: Path

    def file(self, path: str) -> Path | None:
        """The file that URL path ``path`` names (``/`` is ``index.html``), or ``None``.

        ``safe_join`` refuses ``..`` and absolute parts, so no path leaves the directory.
        """
        name = path.lstrip("/") or INDEX
        joined = safe_join(str(self.root), name)
        if joined is None:
            return None
        found = Path(joined)
        return found if found.is_file() else None

    def serves(self, method: str, path: str) -> bool:
        """Whether this request is answered from the directory (GET or HEAD of a file)."""
        return method in ("GET", "HEAD") and self.file(path) is not None

    async def send(self, path: str) -> Response:
        """The file at ``path`` (a JSON 404 if it is gone)."""
        found = self.file(path)
        if found is None:
            raise NotFound()
        response: Response = await send_file(found, conditional=True)
        if found.name == INDEX:
            # A page's index names its hashed assets: revalidate it, so a new build shows.
            response.headers["Cache-Control"] = "no-cache"
        return response


def register(app: QuartTrio, page: PageChoice = BUILTIN, page_dir: PageDir | None = None) -> None:
    """Add ``GET /``: the directory's index, else the built-in page (whose assets are
    under ``/static/``); nothing for ``upstream``, whose ``/`` is passed through."""
    if page_dir is not None:

        @app.get("/")
        async def page_index() -> Response:
            return await page_dir.send("/")

    elif page == BUILTIN:

        @app.get("/")
        async def chat_page() -> Response:
            response: Response = await app.send_static_file("index.html")
            # Always revalidate, so a new version of the page is picked up on reload.
            response.headers["Cache-Control"] = "no-cache"
            return response
