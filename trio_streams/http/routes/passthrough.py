"""Every route trio-streams does not serve itself: a page's files, then the upstream.

llama.cpp's WebUI, and other clients of llama-server, call routes outside ``/v1``:
``GET /props`` first (without it the page says "Server unavailable"), ``/tools``,
``/slots``, ``/tokenize``... With ``--upstream`` they all pass through to the upstream's
server root (:meth:`~trio_streams.producers.upstream.routes.Upstream.root_url`), the
plain-URL upstream when there are several, under the same rules as ``/v1/*``: the same
header filtering, API keys and body cap, and an unreachable upstream is a JSON ``502``
(``504`` on a timeout). The answer is relayed as it arrives, so a streaming route
(llama-server's own ``/completion``) streams; a client that leaves closes the upstream
request.

Our routes win: a path one of our routes serves (``/health``, ``/metrics``, ``/``,
``/static/…``, ``/openapi.json``) is never forwarded, even for a method we do not serve,
which is a ``405``. Without an upstream, a path that no route and no page file serves is
the usual JSON ``404``.
"""

from __future__ import annotations

import logging

import httpx
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, NotFound

from trio_streams.http.errors import ApiError
from trio_streams.http.routes.page import PageDir
from trio_streams.http.routes.proxy import as_response
from trio_streams.http.stream_transport import BodyCut
from trio_streams.producers.upstream.client import UpstreamClient, response_headers
from trio_streams.producers.upstream.relay import UpstreamRequest, gateway_error, reply_from

logger = logging.getLogger("trio_streams")

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
#: The endpoints of the catch-all routes below: every other route is ours.
_CATCH_ALL = frozenset({"pass_root", "pass_path"})


class UpstreamBody:
    """An upstream answer's body, relayed chunk by chunk as it arrives.

    Quart closes a response body it has started sending (``aclose``), whether the body
    ended or its client left; closing this one closes the upstream request, so the
    upstream's connection is never left checked out of the pool.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.aiter_bytes()

    def __aiter__(self) -> UpstreamBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except httpx.TransportError as exc:
            # The status is sent: cutting the connection is the only honest signal left.
            logger.warning("upstream answer cut mid-body: %s", type(exc).__name__)
            raise BodyCut from exc

    async def aclose(self) -> None:
        await self._response.aclose()


async def relay(client: UpstreamClient, outgoing: UpstreamRequest) -> Response:
    """Send ``outgoing``; its answer as a response streamed back (errors as for ``/v1``)."""
    sent = client.http.build_request(
        outgoing.method, outgoing.url, headers=outgoing.headers, content=outgoing.body
    )
    try:
        response = await client.http.send(sent, stream=True)
    except httpx.TransportError as exc:
        return as_response(gateway_error(exc))
    if response.status_code < 400 and outgoing.method != "HEAD":
        body = UpstreamBody(response)
        reply = Response(
            body, status=response.status_code, headers=Headers(response_headers(response))
        )
        reply.timeout = None  # a streaming route lasts as long as generation does
        return reply
    try:
        # Errors are small and may need rewriting (a non-JSON error becomes a JSON 502).
        content = await response.aread()
    except httpx.TransportError as exc:
        return as_response(gateway_error(exc))
    finally:
        await response.aclose()
    return as_response(reply_from(response, content))


def register(app: QuartTrio, client: UpstreamClient | None, page_dir: PageDir | None) -> None:
    """Add the catch-all routes: ``page_dir``'s files, then ``client``'s upstream.

    ``/`` itself is passed through only when no page claims it (``--page upstream``).
    """
    if client is None and page_dir is None:
        return  # nothing to add: unknown routes stay the JSON 404

    def own_methods(path: str) -> list[str]:
        """The methods our own routes serve at ``path`` (none: the path is not ours)."""
        adapter = app.url_map.bind("localhost")
        methods = []
        for method in METHODS:
            try:
                rule, _ = adapter.match(path, method=method, return_rule=True)
            except HTTPException:  # not found, another method, a redirect
                continue
            if rule.endpoint not in _CATCH_ALL:
                methods.append(method)
        return methods

    async def pass_on(path: str) -> Response:
        if page_dir is not None and page_dir.serves(request.method, path):
            return await page_dir.send(path)
        if allowed := own_methods(path):
            error = ApiError(405, f"Method {request.method} is not allowed on {path}").response()
            error.headers["Allow"] = ", ".join(allowed)
            return error
        if client is None:
            raise NotFound()
        upstream = client.routes.for_other_routes()
        # Read whole and capped (--max-body-bytes) before routing, as for every route.
        data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        outgoing = UpstreamRequest(
            method=request.method,
            url=upstream.root_url(path, request.query_string),
            headers=client.request_headers(request.headers.items(), upstream),
            body=data,
        )
        return await relay(client, outgoing)

    if "/" not in {rule.rule for rule in app.url_map.iter_rules()}:

        @app.route("/", methods=list(METHODS))
        async def pass_root() -> Response:
            return await pass_on("/")

    @app.route("/<path:rest>", methods=list(METHODS))
    async def pass_path(rest: str) -> Response:
        return await pass_on(request.path)
