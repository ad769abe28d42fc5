"""The Quart-Trio application: routes plus one JSON error shape for everything.

The app holds no state of its own; the session store it is given (or a bare
:class:`SessionManager`, seen as a :class:`~trio_streams.stores.memory.MemoryStore`) outlives it,
so the server (or an embedding application) decides when sessions are finalized.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from trio_streams.core.errors import CONFLICT, RATE_LIMIT, SERVER_ERROR, UNAVAILABLE
from trio_streams.core.limits import CapacityError, ConversationOwnedError
from trio_streams.core.manager import ManagerClosedError, SessionManager
from trio_streams.http import auth, cors, loop_guard, openapi, option_values
from trio_streams.http.access_log import AccessLog
from trio_streams.http.errors import ApiError, error_response, error_type_for_status, json_response
from trio_streams.http.metrics import EXTENSION_KEY, Metrics
from trio_streams.http.routes import (
    ai_sdk,
    demo,
    durable_sessions,
    durable_streams,
    page,
    passthrough,
    proxy,
    responses,
    streams,
)
from trio_streams.http.routes.demo_responses import DemoResponses
from trio_streams.http.stream_transport import StreamingConnection
from trio_streams.producers.demo import DemoModel
from trio_streams.producers.upstream.client import UpstreamClient
from trio_streams.stores.memory import as_store
from trio_streams.stores.protocol import SessionStore, StoreUnavailableError

STATIC = Path(__file__).parent / "static"

logger = logging.getLogger("trio_streams")


def create_app(
    sessions: SessionStore | SessionManager,
    model: DemoModel,
    *,
    max_body_bytes: int = 1024 * 1024,
    api_keys: Iterable[str] = (),
    max_lookup_ids: int = option_values.DEFAULT_MAX_LOOKUP_IDS,
    upstream: UpstreamClient | None = None,
    cors_origins: Iterable[str] = (),
    page_choice: option_values.PageChoice = option_values.BUILTIN,
    page_dir: str | Path | None = None,
    ds_long_poll_timeout: float = option_values.DEFAULT_LONG_POLL_TIMEOUT,
) -> QuartTrio:
    """The app; with ``upstream`` the OpenAI routes proxy to model servers, not the demo.

    ``cors_origins`` are the browser origins (``scheme://host[:port]``, or ``*``) whose
    pages may call the API (see :mod:`trio_streams.http.cors`). ``page_dir`` serves a built
    page's files at ``/`` (its files are public); ``page_choice="upstream"`` passes ``/`` to
    the upstream (see :mod:`trio_streams.http.routes.page`).
    """
    store, manager = as_store(sessions)
    app = QuartTrio("trio_streams", static_folder=str(STATIC))
    # Stream responses' chunks go to Hypercorn in a lean loop (what they contain is
    # decided by routes.streams.stream_response); every other response as Quart sends it.
    app.asgi_http_class = StreamingConnection
    # Streams last as long as generation does; Quart's 60 s default would cut them.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["MAX_LOOKUP_IDS"] = max_lookup_ids
    metrics = Metrics(manager)
    app.extensions[EXTENSION_KEY] = metrics
    # One JSON line per request on the "trio_streams.access" logger, ids shortened.
    app.asgi_app = AccessLog(app.asgi_app)  # type: ignore[method-assign]
    # Outermost: answers this server's own probe for an --upstream that is itself.
    loop_guard.install(app)

    @app.before_request
    async def receive_the_whole_body() -> None:
        """Read the request body (capped by MAX_CONTENT_LENGTH) before any answer.

        Hypercorn cannot reuse a keep-alive connection whose request body was still
        arriving when the response ended: the client's next request on it would hang.
        Early answers (401, 404, 405, 413) would trigger that, so the body is read first.
        """
        await request.get_data(cache=True)

    files = page.PageDir(Path(page_dir)) if page_dir is not None else None
    auth.install(app, auth.ApiKeys(api_keys), public=files.serves if files else None)
    cors.install(app, cors_origins)

    streams.register(app, store)
    if upstream is None:
        start_chat = demo.register(app, store, model)
        responses.register(app, store, DemoResponses(store, model))
    else:
        start_chat = proxy.register(app, store, upstream)
    ai_sdk.register(app, store, start_chat)
    durable_streams.register(app, store, long_poll_timeout=ds_long_poll_timeout)
    durable_sessions.register(app, store, long_poll_timeout=ds_long_poll_timeout)
    page.register(app, page_choice, files)

    @app.get("/health")
    async def health() -> Response:
        # Never touches a shared store: health answers while Redis is down.
        return json_response({"status": "ok", "sessions": store.local_session_count()})

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return metrics.response()

    @app.get("/openapi.json")
    async def openapi_document() -> Response:
        return json_response(openapi.document(proxy=upstream is not None))

    # After the page: `/` passes through only when no page took it (routes of ours win).
    passthrough.register(app, upstream, files)

    @app.errorhandler(CapacityError)
    async def at_capacity(error: CapacityError) -> Response:
        response = error_response(429, error.reason, RATE_LIMIT)
        response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.errorhandler(ConversationOwnedError)
    async def owned(error: ConversationOwnedError) -> Response:
        return error_response(409, "Conversation id is in use by another API key", CONFLICT)

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error.response()

    @app.errorhandler(ManagerClosedError)
    async def closed(error: ManagerClosedError) -> Response:
        return error_response(503, "Server is shutting down", UNAVAILABLE)

    @app.errorhandler(StoreUnavailableError)
    async def store_unavailable(error: StoreUnavailableError) -> Response:
        logger.warning("%s", error)
        return error_response(503, "Session store unavailable, try again", UNAVAILABLE)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = error.description or error.name
        if status == 413:  # werkzeug's text names neither the limit nor how to raise it
            message = (
                f"Request body too large: the limit is {app.config['MAX_CONTENT_LENGTH']} "
                "bytes (--max-body-bytes, TRIO_STREAMS_MAX_BODY_BYTES)"
            )
        response = error_response(status, message, error_type_for_status(status))
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return response

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "Internal server error", SERVER_ERROR)

    return app
