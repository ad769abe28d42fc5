"""The OpenAI-compatible routes when trio-streams runs in front of model servers.

Streaming completions (``/v1/chat/completions``, ``/v1/completions``, ``/v1/responses``
with ``"stream": true``) become sessions exactly like the demo model's: resumable with
``X-Conversation-Id``, stopped by DELETE, cancelled by a client disconnect without one.
Every other ``/v1/*`` request, and non-streaming completions, pass through whole.
``GET /v1/models`` merges what every upstream reports.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from trio_streams.core.errors import NOT_FOUND
from trio_streams.core.producer import Producer
from trio_streams.core.redact import redact
from trio_streams.http import auth
from trio_streams.http.errors import ApiError, json_response
from trio_streams.http.routes import responses
from trio_streams.http.routes.chat_start import StartChatStream
from trio_streams.http.routes.demo import conversation_header, ping_interval
from trio_streams.http.routes.responses import PlainResponses
from trio_streams.http.routes.streams import stream_response
from trio_streams.producers.upstream.client import UpstreamClient
from trio_streams.producers.upstream.relay import (
    UpstreamHandoff,
    UpstreamReply,
    UpstreamRequest,
    UpstreamStreamProducer,
    gateway_error,
    own_error,
    reply_from,
)
from trio_streams.producers.upstream.routes import Upstream
from trio_streams.stores.protocol import SessionStore, StreamHandle

logger = logging.getLogger("trio_streams")

#: Seconds an upstream gets to answer ``/models`` (capped by the read timeout).
MODELS_TIMEOUT = 15.0
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
# Our own API under /v1: a method it does not serve must not leak to the upstream.
_RESERVED = ("stream", "streams")


async def _request_body() -> bytes:
    data = await request.get_data(as_text=False)
    return data if isinstance(data, bytes) else data.encode()


def as_response(reply: UpstreamReply) -> Response:
    """A whole upstream answer (or our own 502/504) as the Quart response the client gets."""
    return Response(reply.body, status=reply.status, headers=Headers(reply.headers))


def _json_object(data: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None``: a body we cannot read is the upstream's call."""
    try:
        body = json.loads(data) if data else None
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def register(app: QuartTrio, store: SessionStore, client: UpstreamClient) -> StartChatStream:
    """Add the proxy routes to ``app``.

    Returns how other routes (the AI SDK's ``/api/chat``) start a chat stream upstream.
    """
    routes = client.routes

    def pick(body: dict[str, Any] | None) -> Upstream:
        if body is None or "model" not in body:
            return routes.for_other_routes()
        upstream = routes.for_model(body["model"])
        if upstream is None:
            raise ApiError(404, f"The model '{body['model']}' is not served here", NOT_FOUND)
        return upstream

    def upstream_request(upstream: Upstream, path: str, data: bytes) -> UpstreamRequest:
        return UpstreamRequest(
            method=request.method,
            url=upstream.url(path, request.query_string),
            headers=client.request_headers(request.headers.items(), upstream),
            body=data,
        )

    async def forward(outgoing: UpstreamRequest) -> Response:
        """A whole request and its whole answer (errors mapped as for streams)."""
        try:
            response = await client.http.request(
                outgoing.method, outgoing.url, headers=outgoing.headers, content=outgoing.body
            )
        except httpx.TransportError as exc:
            return as_response(gateway_error(exc))
        return as_response(reply_from(response, response.content))

    async def open_stream(
        outgoing: UpstreamRequest, body: dict[str, Any], conversation_id: str | None
    ) -> StreamHandle | Response:
        """The session, once the upstream answered with a stream; or its error answer."""
        interval = ping_interval(body)
        handoff = UpstreamHandoff()
        session = await store.start(
            conversation_id,
            UpstreamStreamProducer(client, outgoing, handoff),
            ping_interval=interval,
            owner=auth.current_owner(),
        )
        commit_after = store.manager.ping_interval if interval is None else interval
        try:
            reply = await handoff.wait(commit_after)
        except BaseException:
            if conversation_id is None:
                session.cancel()  # its client left before the upstream even answered
            raise
        if reply is not None:
            await store.discard(session)
            return as_response(reply)
        if conversation_id:
            logger.info("started upstream stream %s", redact(conversation_id))
        return session

    async def stream(outgoing: UpstreamRequest, body: dict[str, Any]) -> Response:
        conversation_id = conversation_header()
        session = await open_stream(outgoing, body, conversation_id)
        if isinstance(session, Response):
            return session
        return stream_response(session, 0, owns_producer=conversation_id is None)

    async def start_chat(body: dict[str, Any], conversation_id: str) -> StreamHandle | Response:
        data = json.dumps(body).encode()
        outgoing = upstream_request(pick(body), "/chat/completions", data)
        return await open_stream(outgoing, body, conversation_id)

    async def complete(path: str) -> Response:
        data = await _request_body()
        body = _json_object(data)
        outgoing = upstream_request(pick(body), path, data)
        if body is not None and body.get("stream") is True:
            return await stream(outgoing, body)
        return await forward(outgoing)

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Response:
        return await complete("/chat/completions")

    @app.post("/v1/completions")
    async def completions() -> Response:
        return await complete("/completions")

    def background(body: dict[str, Any]) -> tuple[Producer, str]:
        """A background response: streamed from the upstream whatever the client asked
        (it may read the events or not), without ``background``, which a plain model
        server does not know; its failures become the response's error."""
        upstream = pick(body)
        forwarded = {**body, "stream": True}
        forwarded.pop("background", None)
        data = json.dumps(forwarded, separators=(",", ":")).encode()
        handoff = UpstreamHandoff()
        handoff.commit()  # nobody waits for the status: errors go in-band, to the log
        outgoing = upstream_request(upstream, "/responses", data)
        model = body.get("model")
        return UpstreamStreamProducer(client, outgoing, handoff), str(model or "")

    responses.register(app, store, PlainResponses(lambda: complete("/responses"), background))

    @app.get("/v1/models")
    async def models() -> Response:
        if routes.default is not None and len(routes.upstreams) == 1:
            # One upstream: its answer unchanged (llama-server adds fields of its own).
            return await forward(upstream_request(routes.default, "/models", b""))
        incoming = list(request.headers.items())
        listed: dict[Upstream, list[dict[str, Any]] | None] = {}

        async def fetch(upstream: Upstream) -> None:
            headers = client.request_headers(incoming, upstream)
            listed[upstream] = await _list_models(client, upstream, headers)

        async with trio.open_nursery() as nursery:
            for upstream in routes.upstreams:
                nursery.start_soon(fetch, upstream)
        merged: dict[str, dict[str, Any]] = {}
        for upstream in routes.upstreams:  # in the order given, first one wins a duplicate
            entries = listed[upstream]
            if entries is None:
                continue
            # The routing name is what clients must send; list it even if the upstream
            # reports its model under another id (llama-server reports the file name).
            name = upstream.name
            if name is not None and not any(entry.get("id") == name for entry in entries):
                merged.setdefault(name, _model_entry(name))
            for entry in entries:
                merged.setdefault(str(entry.get("id")), entry)
        if all(entries is None for entries in listed.values()):
            return as_response(own_error(502, "No upstream model server answered /models"))
        return json_response({"object": "list", "data": list(merged.values())})

    @app.route("/v1/<path:rest>", methods=_ALL_METHODS)
    async def other(rest: str) -> Response:
        if rest.split("/", 1)[0] in _RESERVED:
            raise ApiError(405, f"Method {request.method} is not allowed on /v1/{rest}")
        data = await _request_body()
        return await forward(upstream_request(pick(_json_object(data)), "/" + rest, data))

    return start_chat


async def _list_models(
    client: UpstreamClient, upstream: Upstream, headers: list[tuple[str, str]]
) -> list[dict[str, Any]] | None:
    """An upstream's ``/models`` entries, or ``None`` if it did not answer a model list."""
    # A model list is quick to make: don't let one stuck upstream hold the whole list for the
    # long read timeout meant for prompt processing.
    options = client.options
    timeout = httpx.Timeout(
        min(options.read_timeout, MODELS_TIMEOUT), connect=options.connect_timeout
    )
    try:
        response = await client.http.get(upstream.url("/models"), headers=headers, timeout=timeout)
        payload = response.json() if response.is_success else None
    except (httpx.TransportError, ValueError) as exc:
        logger.warning("upstream %s did not list its models: %s", upstream, type(exc).__name__)
        return None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        logger.warning("upstream %s answered /models without a model list", upstream)
        return None
    return [entry for entry in data if isinstance(entry, dict)]


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(time.time()), "owned_by": "upstream"}
