"""Cross-origin access (CORS) for browser frontends served from another origin.

A chat frontend often runs on an origin of its own (a Next.js app on one port, this server
on another); without CORS headers the browser refuses to let it read our answers. The
headers are added by `quart-cors <https://github.com/pgjones/quart-cors>`_ (an
``after_request`` hook, so error answers carry them too and a page can read their JSON)
with a policy kept here:

* **Only the configured origins.** Nothing is sent for any other origin, so the browser
  blocks it. There is no wildcard unless ``*`` is configured explicitly; it then answers
  ``Access-Control-Allow-Origin: *``. Credentials (cookies) are never allowed: keys travel
  in ``Authorization`` or ``X-Api-Key``, which a page sets itself.
* **Preflight for every route.** Quart answers ``OPTIONS`` for every route by itself; the
  hook adds the allowed methods and headers. :func:`is_preflight` lets authentication
  pass a preflight, which browsers send without the key.
* **The headers a client reads are exposed**: ``Retry-After`` (``429``/``503``),
  ``WWW-Authenticate`` (``401``), ``X-Request-Id`` (passed through from an upstream) and
  ``X-Stream-Generation`` (the generation a stream response reads, which a page pins when
  it resumes). A stream's offset is each event's ``id:`` and its conversation id is the
  client's own. The Durable Streams protocol's request and response headers are allowed
  and exposed too (``/ds``: offsets, cursors, closure, producers, ``ETag``).
"""

from __future__ import annotations

from collections.abc import Iterable

from quart import Request
from quart_cors import cors
from quart_trio import QuartTrio

from trio_streams.http.option_values import check_origin

#: Request headers a browser may send: ours, then those of the OpenAI JavaScript SDK
#: (``X-Stainless-*`` on every request), so it works from a page too.
ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    "X-Api-Key",
    "X-Conversation-Id",
    "OpenAI-Organization",
    "OpenAI-Project",
    "X-Stainless-Arch",
    "X-Stainless-Lang",
    "X-Stainless-OS",
    "X-Stainless-Package-Version",
    "X-Stainless-Retry-Count",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Timeout",
    # The Durable Streams protocol's (``/ds``), and the conditional GET it uses.
    "If-None-Match",
    "Stream-Closed",
    "Stream-Expires-At",
    "Stream-Fork-Offset",
    "Stream-Fork-Sub-Offset",
    "Stream-Forked-From",
    "Stream-Seq",
    "Stream-TTL",
    "Producer-Epoch",
    "Producer-Id",
    "Producer-Seq",
)
#: Every method a route serves (the proxy passes PUT and PATCH through to its upstream).
ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: Response headers beyond the CORS-safelisted ones that a client needs to read.
EXPOSE_HEADERS = (
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-Id",
    "X-Stream-Generation",
    # The Durable Streams protocol's (``/ds``).
    "ETag",
    "Stream-Closed",
    "Stream-Cursor",
    "Stream-Expires-At",
    "Stream-Next-Offset",
    "Stream-SSE-Data-Encoding",
    "Stream-TTL",
    "Stream-Up-To-Date",
    "Producer-Epoch",
    "Producer-Expected-Seq",
    "Producer-Received-Seq",
    "Producer-Seq",
)
#: Seconds a browser may cache a preflight answer (Chromium caps it at 7200).
MAX_AGE = 600


def is_preflight(request: Request) -> bool:
    """Whether ``request`` is a CORS preflight (browsers send it without credentials)."""
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def install(app: QuartTrio, origins: Iterable[str]) -> None:
    """Answer cross-origin requests from ``origins``; with none, CORS stays off."""
    allowed = sorted({check_origin(origin) for origin in origins})
    if not allowed:
        return
    cors(
        app,
        allow_origin=allowed,
        allow_headers=ALLOW_HEADERS,
        allow_methods=ALLOW_METHODS,
        expose_headers=EXPOSE_HEADERS,
        allow_credentials=False,
        max_age=MAX_AGE,
        send_origin_wildcard=True,
    )
