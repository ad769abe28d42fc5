"""The ``trio-streams`` command line.

The web stack (Quart, Hypercorn: about half a second) is imported by ``serve`` when it runs,
and the HTTP client by ``tail``: ``--help``, ``--version`` and a refused option start
without them.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, BinaryIO, TextIO

import click
import trio
from click.core import ParameterSource

from trio_streams.app_options import app_options, settings_from_options
from trio_streams.core.address import DEFAULT_URL
from trio_streams.core.generations import split_event_id
from trio_streams.listener_options import LISTENER_OPTIONS, env_option, listener_options
from trio_streams.settings import Settings
from trio_streams.stores.url import MEMORY, check_store

#: The environment of the client commands, listed in the top-level help as well as in
#: ``tail --help``: a variable that only a subcommand's help names is hard to find.
_CLIENT_ENVIRONMENT = f"""\b
Client environment (tail):
  TRIO_STREAMS_URL             the server (default: {DEFAULT_URL})
  TRIO_STREAMS_CLIENT_API_KEY  the API key to send to a server that requires one
"""


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    epilog=_CLIENT_ENVIRONMENT,
)
@click.version_option(package_name="trio-streams", message="%(prog)s %(version)s")
def main() -> None:
    """Resumable, cancellable LLM token streams over HTTP."""


@main.command()
@app_options
@listener_options
@env_option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log verbosity (stderr).",
)
@click.pass_context
def serve(ctx: click.Context, /, **options: Any) -> None:
    """Serve the HTTP API: the built-in demo model, or a proxy in front of --upstream.

    SIGINT and SIGTERM shut down gracefully: every session is finalized, every reader ends.
    """
    configure_logging(options["log_level"])
    settings = settings_from_options(ctx)
    from trio_streams.http.loop_guard import UpstreamLoopError
    from trio_streams.server import ListenError, first_leaf, serve_workers
    from trio_streams.server import serve as serve_forever

    if settings.workers > 1:
        if check_store(settings.store) == MEMORY:
            raise click.BadParameter(
                "several worker processes need a shared store (--store redis://HOST:PORT/DB): "
                "with the memory store each process holds its own sessions, and a resume "
                "reaching another process would not find them",
                param_hint="'--workers'",
            )
        os.environ["TRIO_STREAMS_LOG_LEVEL"] = options["log_level"]  # the workers' too
        ctx.exit(serve_workers(settings))
    try:
        trio.run(partial(serve_forever, settings, handle_signals=True))
    except UpstreamLoopError as exc:
        raise click.BadParameter(str(exc), param_hint="'--upstream'") from None
    except BaseExceptionGroup as error:
        if (cannot_listen := first_leaf(error, ListenError)) is None:
            raise
        raise click.ClickException(str(cannot_listen)) from None


def settings_from_environment() -> Settings:
    """The settings ``trio-streams serve`` would run with, from its ``TRIO_STREAMS_*``
    variables alone: one parser (with its checks and error messages) for both ways to serve.

    Raises :class:`click.ClickException` (``format_message()`` says what is wrong).
    """
    with serve.make_context("trio-streams serve", []) as ctx:
        configure_logging(ctx.params["log_level"], root=False)
        settings = settings_from_options(ctx)
        ignored = [
            str(param.envvar)
            for param in serve.params
            if param.name in LISTENER_OPTIONS
            and ctx.get_parameter_source(param.name) == ParameterSource.ENVIRONMENT
        ]
    if ignored:
        logging.getLogger("trio_streams").warning(
            "%s: for trio-streams serve only; the hypercorn command takes its own options "
            "(--bind, --certfile, --backlog, --config...)",
            ", ".join(ignored),
        )
    return settings


def configure_logging(level: str, *, root: bool = True) -> None:
    """Log to stderr at ``level``; httpx's per-request lines only at debug.

    ``root=False`` (under the ``hypercorn`` command, whose loggers have handlers of their
    own and would print twice through the root's) gives the ``trio_streams`` loggers a
    handler of their own, unless they were given one already.
    """
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if root:
        logging.basicConfig(stream=sys.stderr, level=level.upper(), format=log_format)
    else:
        ours = logging.getLogger("trio_streams")
        ours.setLevel(level.upper())
        if not ours.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(log_format))
            ours.addHandler(handler)
            ours.propagate = False
    if level != "debug":
        # httpx logs every upstream request at INFO: an access log we keep off, as Hypercorn's.
        logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@click.argument("conversation_id")
@click.option(
    "--from",
    "position",
    default="0",
    help="Byte offset to start from, or an event id (<generation>-<offset>: pinned to "
    "that generation).",
)
@click.option(
    "--url",
    default=DEFAULT_URL,
    envvar="TRIO_STREAMS_URL",
    show_envvar=True,
    help="The trio-streams server.",
)
@click.option("--raw", is_flag=True, help="Print the SSE bytes as they are, not the text.")
@click.option(
    "--api-key",
    default=None,
    envvar="TRIO_STREAMS_CLIENT_API_KEY",
    show_envvar=True,
    help="API key to send (as a Bearer token) to a server that requires one.",
)
def tail(conversation_id: str, position: str, url: str, raw: bool, api_key: str | None) -> None:
    """Print a conversation's stream until it ends, resuming across reconnects.

    Exits 0 when the answer is complete; 1 when the stream cannot be read or ended without
    its answer (stopped, replaced, evicted, failed), with the reason on stderr.
    """
    from trio_streams.client.tail import stdout

    reading = tail_reading(conversation_id, position, url, raw, api_key, stdout(), sys.stderr)
    sys.exit(trio.run(reading))


def tail_reading(
    conversation_id: str,
    position: str,
    url: str,
    raw: bool,
    api_key: str | None,
    out: BinaryIO,
    err: TextIO,
) -> Callable[[], Awaitable[int]]:
    """What ``tail`` runs for its options (``--from`` checked here): the reading that
    returns the exit status. The tests run it in-process, inside their own trio run."""
    parsed = split_event_id(position)
    if parsed is None:
        raise click.BadParameter("expected a byte offset or an event id", param_hint="--from")
    generation, offset = parsed
    from trio_streams.client.tail import tail as tail_stream

    return partial(
        tail_stream,
        url,
        conversation_id,
        int(offset),
        generation=generation,
        raw=raw,
        out=out,
        err=err,
        api_key=api_key,
    )
