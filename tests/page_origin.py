"""The chat page served from a second origin, as a frontend on its own host serves it.

A plain ASGI app on real Hypercorn (its own free port of 127.0.0.1, so its own origin)
serves the package's static files, with ``index.html`` naming the API server in
``<meta name="trio-streams-api">``: the page then calls that server across origins.
"""

from __future__ import annotations

import mimetypes
from typing import Any

import trio

from tests.helpers import serve_on_free_port
from trio_streams.http.app import STATIC

Message = dict[str, Any]


class PageOrigin:
    """Serves ``/`` and ``/static/<file>``; ``api_url`` must be set before the page loads."""

    def __init__(self) -> None:
        self.url = ""
        self.api_url = ""
        self.paths: list[str] = []

    def index(self) -> bytes:
        html = (STATIC / "index.html").read_text(encoding="utf-8")
        meta = f'<meta name="trio-streams-api" content="{self.api_url}/">'
        return html.replace("<head>", "<head>\n  " + meta, 1).encode()

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path: str = scope["path"]
        self.paths.append(path)
        name = path.removeprefix("/static/")
        status, content_type, body = 404, "text/plain", b"not found"
        if path == "/":
            status, content_type, body = 200, "text/html; charset=utf-8", self.index()
        elif path.startswith("/static/") and "/" not in name and (STATIC / name).is_file():
            guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
            status, content_type, body = 200, guessed, (STATIC / name).read_bytes()
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def start(self, nursery: trio.Nursery) -> trio.Event:
        """Serve on a free port of 127.0.0.1; set the returned event to stop."""
        self.url, stop = await serve_on_free_port(self, nursery)
        return stop
