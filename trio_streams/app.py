"""The Quart-Trio application: routes plus one JSON error shape for everything.

The app holds no state of its own; the :class:`SessionManager` it is given outlives it, so
the server (or an embedding application) decides when sessions are finalized.
"""

from __future__ import annotations

import logging

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from . import http_openai, http_page, http_streams
from .demo import DemoModel
from .errors import (
    SERVER_ERROR,
    UNAVAILABLE,
    ApiError,
    error_response,
    error_type_for_status,
    json_response,
)
from .manager import ManagerClosedError
from .store import SessionStore, StoreUnavailableError

logger = logging.getLogger("trio_streams")


def create_app(
    store: SessionStore, model: DemoModel, *, max_body_bytes: int = 1024 * 1024
) -> QuartTrio:
    app = QuartTrio("trio_streams")
    # Streams last as long as generation does; Quart's 60 s default would cut them.
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    http_streams.register(app, store)
    http_openai.register(app, store, model)
    http_page.register(app)

    @app.get("/health")
    async def health() -> Response:
        # Never touches a shared store: health answers while Redis is down.
        return json_response({"status": "ok", "sessions": store.local_session_count()})

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
        return error_response(status, message, error_type_for_status(status))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "Internal server error", SERVER_ERROR)

    return app
