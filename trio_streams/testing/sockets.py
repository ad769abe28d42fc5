"""Serving an ASGI app on a real socket, for the tests where a socket is the point."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


async def serve_on_free_port(app: Any, nursery: trio.Nursery) -> tuple[str, trio.Event]:
    """Serve the ASGI ``app`` under Hypercorn on a free port of 127.0.0.1, in ``nursery``:
    its URL, and an event to set to stop it."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    stop = trio.Event()
    binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
    return str(binds[0]), stop
