"""What the HTTP layer's options accept, without the web stack: defaults, the page choices
and the checks of an origin and a key file.

The command line parses ``serve``'s options with these; kept apart from the routes (which
import Quart) so ``trio-streams --help``, ``--version`` and ``tail`` start without loading
Quart, Flask and Hypercorn. The routes, CORS and auth modules take them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

#: Seconds a Durable Streams long-poll waits by default (``--ds-long-poll-timeout``).
DEFAULT_LONG_POLL_TIMEOUT = 20.0
#: Conversation ids one lookup request may name by default (``--max-lookup-ids``).
DEFAULT_MAX_LOOKUP_IDS = 100

#: Which page ``/`` serves: ours, or the upstream's (passed through).
PageChoice = Literal["builtin", "upstream"]
BUILTIN: PageChoice = "builtin"
UPSTREAM: PageChoice = "upstream"
PAGE_CHOICES: tuple[PageChoice, ...] = (BUILTIN, UPSTREAM)
INDEX = "index.html"

ANY_ORIGIN = "*"


def check_origin(value: str) -> str:
    """``value`` as an origin to allow (``scheme://host[:port]``), or :class:`ValueError`.

    A browser's ``Origin`` header has no path and no trailing slash, and is compared as a
    string: ``http://localhost:3000/`` would never match, so it is refused here rather than
    failing silently in the browser. ``null`` (sandboxed frames, ``file:`` pages) is
    refused: any page can make its origin ``null``.
    """
    origin = value.strip()
    if origin == ANY_ORIGIN:
        return origin
    if origin.lower() == "null":
        raise ValueError("'null' is not an origin to trust: any sandboxed page sends it")
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or origin.endswith(("?", "#"))
    ):
        raise ValueError(
            f"{value!r} is not an origin: give scheme://host[:port], "
            "without a path or a trailing slash (e.g. http://localhost:3000), or '*'"
        )
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return origin


def read_key_file(path: str | Path) -> list[str]:
    """Keys from a file, one per line; blank lines and ``#`` comments are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
