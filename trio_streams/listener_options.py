"""``trio-streams serve``'s Hypercorn options: addresses, TLS, config file, backlog,
shutdown timeout and proxy headers.

Apart from the application's options (:mod:`trio_streams.cli`) because they configure the
listener, which the ``hypercorn`` command configures with flags of its own.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from trio_streams.settings import DEFAULT_BACKLOG

F = TypeVar("F", bound=Callable[..., Any])

#: ``serve`` parameters that configure the listener, ``--host`` and ``--port`` included.
LISTENER_OPTIONS = (
    "host", "port", "bind", "hypercorn_config", "certfile", "keyfile", "backlog",
    "graceful_timeout", "workers",
)  # fmt: skip


def env_option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """A ``serve`` option that its environment variable can set too, shown in ``--help``:
    ``--session-ttl`` is ``TRIO_STREAMS_SESSION_TTL`` (of ``--a/--no-a``, the first name's).

    One rule for every ``serve`` option, so a new one cannot get a variable named
    otherwise (the README's table lists them all).
    """
    name = decls[0].split("/")[0].removeprefix("--")
    envvar = "TRIO_STREAMS_" + name.upper().replace("-", "_")
    return click.option(*decls, envvar=envvar, show_envvar=True, **attrs)


_OPTIONS = [
    env_option(
        "--bind",
        multiple=True,
        metavar="ADDRESS",
        help="Listen on HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N (repeatable; replaces "
        "--host/--port). The environment variable takes space-separated values.",
    ),
    env_option(
        "--config",
        "hypercorn_config",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="Hypercorn's own TOML config file, for anything Hypercorn can set; the options "
        "given here (or by their variables) win over it.",
    ),
    env_option(
        "--certfile",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="TLS certificate chain (PEM): serve HTTPS, and HTTP/2 to clients that offer it.",
    ),
    env_option(
        "--keyfile",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="TLS private key (PEM) of --certfile.",
    ),
    env_option(
        "--backlog",
        default=DEFAULT_BACKLOG,
        type=click.IntRange(min=1),
        help="Connections the kernel queues before they are accepted: room for every client "
        "reconnecting at once after a restart (capped by net.core.somaxconn).",
    ),
    env_option(
        "--graceful-timeout",
        default=3.0,
        type=click.FloatRange(min=0),
        help="Seconds shutdown waits for responses still being sent (every session is "
        "finalized first, so streams end at once).",
    ),
    env_option(
        "--workers",
        default=1,
        type=click.IntRange(min=1),
        help="Worker processes (Hypercorn's, each on trio) sharing the listening sockets. Above "
        "1 it needs --store redis://...: processes share no memory, so only a shared store "
        "lets any of them resume a session another started.",
    ),
    env_option(
        "--proxy-headers",
        default=None,
        type=click.Choice(["legacy", "modern"]),
        help="Behind a reverse proxy: take the client address (and scheme, host) from "
        "X-Forwarded-For/-Proto/-Host (legacy) or Forwarded (modern). Only behind a proxy that "
        "sets them: a client could otherwise claim any address.",
    ),
    env_option(
        "--trusted-hops",
        default=1,
        type=click.IntRange(min=1),
        help="With --proxy-headers: how many proxies in front of this server add to those headers.",
    ),
]


def option_group(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator that adds ``options`` to a click command, in their order."""

    def add(command: F) -> F:
        for option in reversed(options):
            command = option(command)
        return command

    return add


#: Add the listener options to a click command.
listener_options = option_group(_OPTIONS)


def listener_settings(ctx: click.Context) -> dict[str, Any]:
    """The :class:`~trio_streams.settings.Settings` fields of the listener options.

    Options left at their defaults stay unset (``None``, no ``bind``) so that a ``--config``
    file's values hold; the ones given, on the command line or by a variable, win over it.
    """
    o = ctx.params
    if o["hypercorn_config"]:
        try:
            with open(o["hypercorn_config"], "rb") as file:
                tomllib.load(file)
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise click.BadParameter(f"not a TOML file: {error}", param_hint="'--config'") from None
    if (o["certfile"] is None) != (o["keyfile"] is None):
        raise click.BadParameter("--certfile and --keyfile go together", param_hint="'--keyfile'")

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)

    bind = tuple(o["bind"])
    if bind and (given("host") or given("port")):
        raise click.BadParameter("use --bind or --host/--port, not both", param_hint="'--bind'")
    if not bind and (given("host") or given("port") or not o["hypercorn_config"]):
        host = o["host"]
        bind = (f"[{host}]:{o['port']}" if ":" in host else f"{host}:{o['port']}",)
    return {
        "bind": bind,
        "hypercorn_config": o["hypercorn_config"],
        "certfile": o["certfile"],
        "keyfile": o["keyfile"],
        "backlog": o["backlog"] if given("backlog") else None,
        "graceful_timeout": o["graceful_timeout"] if given("graceful_timeout") else None,
        "proxy_headers": o["proxy_headers"],
        "trusted_hops": o["trusted_hops"],
        "workers": o["workers"],
    }
