"""``trio-streams serve``'s application options: the demo model, sessions, the store,
limits, keys, upstreams and CORS, and the :class:`~trio_streams.settings.Settings` they make.

Apart from the command (:mod:`trio_streams.cli`) and from the listener's options
(:mod:`trio_streams.listener_options`), which the ``hypercorn`` command sets its own way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from trio_streams.http.option_values import (
    INDEX,
    PAGE_CHOICES,
    UPSTREAM,
    check_origin,
    read_key_file,
)
from trio_streams.listener_options import env_option, listener_settings, option_group
from trio_streams.producers.upstream.routes import (
    UpstreamConfigError,
    UpstreamRoutes,
    split_api_keys,
)
from trio_streams.settings import Settings
from trio_streams.stores.url import check_store

_DEFAULTS = Settings()


def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value <= 0:
        raise click.BadParameter("must be greater than 0")
    return value


def _store(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_store(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _non_negative(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value < 0:
        raise click.BadParameter("must be 0 or more")
    return value


def _upstreams(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    if value:
        try:
            UpstreamRoutes.parse(value)
        except UpstreamConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _cors_origins(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    try:
        return tuple(check_origin(origin) for origin in value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_OPTIONS = [
    env_option(
        "--host",
        default=_DEFAULTS.host,
        help="Address to listen on.",
    ),
    env_option(
        "--port",
        default=_DEFAULTS.port,
        type=click.IntRange(0, 65535),
        help="TCP port to listen on (0 picks a free one).",
    ),
    env_option(
        "--demo-tps",
        default=_DEFAULTS.demo_tps,
        type=float,
        callback=_positive,
        help="Tokens per second of the built-in demo model.",
    ),
    env_option(
        "--demo-prefill",
        default=_DEFAULTS.demo_prefill,
        type=float,
        callback=_non_negative,
        help="Seconds the demo model waits before its first token, like prompt processing.",
    ),
    env_option(
        "--session-max-bytes",
        default=_DEFAULTS.session_max_bytes,
        type=click.IntRange(min=1),
        help="Bytes one session keeps; older bytes are dropped beyond this cap.",
    ),
    env_option(
        "--session-ttl",
        default=_DEFAULTS.session_ttl,
        type=float,
        callback=_non_negative,
        help="Seconds a finished session stays readable before it expires.",
    ),
    env_option(
        "--gc-interval",
        default=_DEFAULTS.gc_interval,
        type=float,
        callback=_positive,
        help="Seconds between sweeps that evict expired sessions.",
    ),
    env_option(
        "--ping-interval",
        default=_DEFAULTS.ping_interval,
        type=float,
        callback=_non_negative,
        help="Seconds of silence before a ': ping' keep-alive comment (0 disables).",
    ),
    env_option(
        "--max-body-bytes",
        default=_DEFAULTS.max_body_bytes,
        type=click.IntRange(min=1),
        help="Largest request body accepted.",
    ),
    env_option(
        "--ds-max-stream-bytes",
        default=_DEFAULTS.ds_max_stream_bytes,
        type=click.IntRange(min=1),
        help="Largest Durable Stream (/ds) in bytes; an append past it gets 413.",
    ),
    env_option(
        "--ds-max-streams",
        default=_DEFAULTS.ds_max_streams,
        type=click.IntRange(min=1),
        help="Durable Streams (/ds) held at once; a create past it gets 429 (memory store).",
    ),
    env_option(
        "--ds-max-total-bytes",
        default=_DEFAULTS.ds_max_total_bytes,
        type=click.IntRange(min=1),
        help="Bytes all Durable Streams (/ds) together may hold; 429 past it (memory store).",
    ),
    env_option(
        "--ds-long-poll-timeout",
        default=_DEFAULTS.ds_long_poll_timeout,
        type=float,
        callback=_positive,
        help="Seconds a Durable Streams long-poll (/ds) waits for data before its 204.",
    ),
    env_option(
        "--store",
        default=_DEFAULTS.store,
        callback=_store,
        help="Where sessions live: 'memory', or redis://HOST:PORT/DB to share them with "
        "every instance using that Redis or Valkey.",
    ),
    env_option(
        "--store-lease",
        default=_DEFAULTS.store_lease,
        type=float,
        callback=_positive,
        help="Redis store: seconds after which a dead instance's live sessions are "
        "finalized with an error event.",
    ),
    env_option(
        "--store-follower-connections",
        default=_DEFAULTS.store_follower_connections,
        type=click.IntRange(min=1),
        help="Deprecated, no effect: the Redis store now follows every session on one pub/sub "
        "connection (at most 8 Redis connections per instance).",
    ),
    env_option(
        "--api-key",
        "api_keys",
        multiple=True,
        help="Require this API key (repeatable; the variable may hold several, space-separated).",
    ),
    env_option(
        "--api-key-file",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Require the API keys in this file, one per line ('#' comments allowed).",
    ),
    env_option(
        "--max-total-bytes",
        default=_DEFAULTS.max_total_bytes,
        type=click.IntRange(min=1),
        help="Byte budget of all sessions together (a running one counts as its full cap).",
    ),
    env_option(
        "--max-sessions",
        default=_DEFAULTS.max_sessions,
        type=click.IntRange(min=1),
        help="Sessions held at once, running and finished.",
    ),
    env_option(
        "--max-producers",
        default=_DEFAULTS.max_producers,
        type=click.IntRange(min=1),
        help="Streams generating at once.",
    ),
    env_option(
        "--max-lookup-ids",
        default=_DEFAULTS.max_lookup_ids,
        type=click.IntRange(min=1),
        help="Conversation ids one lookup request may name.",
    ),
    env_option(
        "--upstream",
        "upstreams",
        multiple=True,
        callback=_upstreams,
        metavar="[NAME=]URL",
        help="Base URL of an OpenAI-compatible model server (e.g. http://127.0.0.1:8000/v1) to "
        "proxy instead of the demo model (never this server itself). Repeatable: NAME=URL serves "
        "requests whose 'model' is NAME, a plain URL the rest. The environment variable takes "
        "space-separated values.",
    ),
    env_option(
        "--upstream-api-key",
        "upstream_api_keys",
        multiple=True,
        show_default=False,
        metavar="[NAME=]KEY",
        help="Bearer key sent to the upstreams in place of the client's Authorization header. "
        "Repeatable: NAME=KEY for the upstream named NAME (--upstream NAME=URL), a plain KEY for "
        "the others. The environment variable takes space-separated values.",
    ),
    env_option(
        "--upstream-connect-timeout",
        default=_DEFAULTS.upstream_connect_timeout,
        type=float,
        callback=_positive,
        help="Seconds to connect to an upstream before answering 504.",
    ),
    env_option(
        "--upstream-read-timeout",
        default=_DEFAULTS.upstream_read_timeout,
        type=float,
        callback=_positive,
        help="Seconds an upstream may stay silent (prompt processing included) before the "
        "request fails (504, or an error event once streaming).",
    ),
    env_option(
        "--cors-origin",
        "cors_origins",
        multiple=True,
        callback=_cors_origins,
        metavar="ORIGIN",
        help="Let pages from this origin (scheme://host[:port], e.g. http://localhost:3000) call "
        "the API across origins (CORS). Repeatable; the variable takes space-separated values. "
        "None by default; '*' allows any origin, for servers whose every route needs an API key.",
    ),
    env_option(
        "--page",
        default=_DEFAULTS.page,
        type=click.Choice(PAGE_CHOICES),
        help="What / serves: 'builtin', trio-streams' chat page, or 'upstream', the --upstream "
        "server's own page (llama-server's WebUI) passed through, with trio-streams' sessions "
        "behind it.",
    ),
    env_option(
        "--page-dir",
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help="Serve a built web page's static files from this directory at / instead "
        "(e.g. llama.cpp's WebUI build); it must hold an index.html, and its files are public.",
    ),
    env_option(
        "--event-ids/--no-event-ids",
        default=_DEFAULTS.event_ids,
        help="Stamp every SSE event with 'id: <byte offset after it>' (EventSource resume).",
    ),
]


#: Add the application options to a click command.
app_options = option_group(_OPTIONS)


def _check_page(page: str, page_dir: str | None, upstream: bool) -> None:
    if page == UPSTREAM and not upstream:
        raise click.BadParameter(
            "'upstream' needs --upstream: the page is the upstream's own", param_hint="'--page'"
        )
    if page == UPSTREAM and page_dir is not None:
        raise click.BadParameter(
            "give either --page upstream or --page-dir, not both", param_hint="'--page-dir'"
        )
    if page_dir is not None and not (Path(page_dir) / INDEX).is_file():
        raise click.BadParameter(
            f"{page_dir!r} has no {INDEX}: give the directory of a built page",
            param_hint="'--page-dir'",
        )


def settings_from_options(ctx: click.Context) -> Settings:
    """The :class:`Settings` of ``serve``'s parsed options."""
    o = ctx.params
    if o["max_total_bytes"] < o["session_max_bytes"]:
        raise click.BadParameter(
            "must be at least --session-max-bytes", param_hint="'--max-total-bytes'"
        )
    routes = UpstreamRoutes.parse(o["upstreams"]) if o["upstreams"] else None
    names = [u.name for u in routes.upstreams if u.name] if routes is not None else []
    try:
        upstream_api_key, named_upstream_keys = split_api_keys(o["upstream_api_keys"], names)
    except UpstreamConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--upstream-api-key'") from None
    _check_page(o["page"], o["page_dir"], bool(o["upstreams"]))
    listener = listener_settings(ctx)
    keys = [key for key in o["api_keys"] if key.strip()]
    if o["api_key_file"] is not None:
        keys += read_key_file(o["api_key_file"])
    if keys:
        logging.getLogger("trio_streams").info("API keys required: %d configured", len(keys))
    if "*" in o["cors_origins"] and not keys:
        logging.getLogger("trio_streams").warning(
            "--cors-origin '*' without --api-key: any web page a visitor opens can use this API"
        )
    return Settings(
        host=o["host"],
        port=o["port"],
        demo_tps=o["demo_tps"],
        demo_prefill=o["demo_prefill"],
        session_max_bytes=o["session_max_bytes"],
        session_ttl=o["session_ttl"],
        gc_interval=o["gc_interval"],
        ping_interval=o["ping_interval"],
        max_body_bytes=o["max_body_bytes"],
        store=o["store"],
        store_lease=o["store_lease"],
        store_follower_connections=o["store_follower_connections"],
        api_keys=tuple(keys),
        max_total_bytes=o["max_total_bytes"],
        max_sessions=o["max_sessions"],
        max_producers=o["max_producers"],
        max_lookup_ids=o["max_lookup_ids"],
        upstreams=o["upstreams"],
        upstream_api_key=upstream_api_key,
        upstream_api_keys=named_upstream_keys,
        upstream_connect_timeout=o["upstream_connect_timeout"],
        upstream_read_timeout=o["upstream_read_timeout"],
        cors_origins=o["cors_origins"],
        event_ids=o["event_ids"],
        page=o["page"],
        page_dir=o["page_dir"],
        ds_max_stream_bytes=o["ds_max_stream_bytes"],
        ds_max_streams=o["ds_max_streams"],
        ds_max_total_bytes=o["ds_max_total_bytes"],
        ds_long_poll_timeout=o["ds_long_poll_timeout"],
        **listener,
    )
