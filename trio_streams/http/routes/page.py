"""The chat page at ``/``: plain HTML, CSS and ES modules shipped in the package.

No build step and no CDN: the files under ``trio_streams/http/static/`` are served as they are
(Quart serves ``/static/...`` from the package), so the page works offline, from the same
origin as the API it calls, against the demo model or any upstream.
"""

from __future__ import annotations

from quart import Response
from quart_trio import QuartTrio


def register(app: QuartTrio) -> None:
    """Add ``GET /`` (the page); its assets are under ``/static/``."""

    @app.get("/")
    async def chat_page() -> Response:
        response: Response = await app.send_static_file("index.html")
        # Always revalidate, so a new version of the page is picked up on reload.
        response.headers["Cache-Control"] = "no-cache"
        return response
