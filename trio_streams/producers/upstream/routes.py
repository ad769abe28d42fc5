"""Which upstream model server answers a request: ``--upstream URL`` and ``NAME=URL``.

An upstream is the base URL of an OpenAI-compatible API, the part that stands for ``/v1``:
``http://127.0.0.1:8080/v1`` for llama-server, ``http://127.0.0.1:11434/v1`` for Ollama. A
URL given without a path (``http://127.0.0.1:8080``) means ``…/v1``, the common case.

A plain URL is the default route. ``NAME=URL`` serves the requests whose ``model`` is
``NAME``; the request body is forwarded unchanged, so ``NAME`` should be the model name that
upstream expects (vLLM checks it; llama-server ignores it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: Seconds to connect to an upstream, and between two reads of its answer, by default
#: (``--upstream-connect-timeout``, ``--upstream-read-timeout``); here rather than beside the
#: HTTP client so the command line parses them without importing httpx.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 600.0


class UpstreamConfigError(ValueError):
    """An ``--upstream`` value that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """One model server: its base URL and the model name routed to it (``None`` = default)."""

    base_url: str
    name: str | None = None

    def url(self, path: str, query: bytes = b"") -> str:
        """The upstream URL of API path ``path`` (the part after ``/v1``, e.g. ``/models``)."""
        return _with_query(self.base_url + path, query)

    def root_url(self, path: str, query: bytes = b"") -> str:
        """The URL of a path outside the API (``/props``, ``/``) on the same server.

        The server's root is the base URL without its final ``/v1``
        (``http://host:8080/v1`` -> ``http://host:8080``), keeping any prefix a gateway
        mounts it under; a base that does not end in ``/v1`` has its origin as the root.
        """
        parts = urlsplit(self.base_url)
        prefix = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else ""
        root = urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
        return _with_query(root + path, query)

    def __str__(self) -> str:
        """For logs: credentials in the URL (``http://user:secret@host``) are left out."""
        parts = urlsplit(self.base_url)
        host = parts.netloc.rpartition("@")[2]
        url = urlunsplit((parts.scheme, host, parts.path, "", ""))
        return f"{self.name}={url}" if self.name else url


def _with_query(url: str, query: bytes) -> str:
    return url + "?" + query.decode("latin-1") if query else url


def parse_upstream(spec: str) -> Upstream:
    """``URL`` or ``NAME=URL``; the URL must be ``http(s)://host[:port][/path]``."""
    name: str | None = None
    head, sep, tail = spec.partition("=")
    if sep and "://" not in head:
        name, spec = head.strip(), tail
        if not name:
            raise UpstreamConfigError(f"empty model name in {head + sep + tail!r}")
    parts = urlsplit(spec.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConfigError(
            f"{spec!r} is not an http(s) URL such as http://127.0.0.1:8080/v1"
        )
    if parts.query or parts.fragment:
        raise UpstreamConfigError(f"{spec!r}: an upstream URL takes no query or fragment")
    path = parts.path.rstrip("/") or "/v1"
    return Upstream(urlunsplit((parts.scheme, parts.netloc, path, "", "")), name)


class UpstreamRoutes:
    """The configured upstreams and the rule that picks one for a request."""

    def __init__(self, upstreams: Iterable[Upstream]) -> None:
        self.upstreams = tuple(upstreams)
        if not self.upstreams:
            raise UpstreamConfigError("no upstream given")
        defaults = [upstream for upstream in self.upstreams if upstream.name is None]
        if len(defaults) > 1:
            raise UpstreamConfigError(
                "more than one default upstream; name the others with NAME=URL"
            )
        self.default = defaults[0] if defaults else None
        self.by_name: dict[str, Upstream] = {}
        for upstream in self.upstreams:
            if upstream.name is not None:
                if upstream.name in self.by_name:
                    raise UpstreamConfigError(f"model name {upstream.name!r} given twice")
                self.by_name[upstream.name] = upstream

    @classmethod
    def parse(cls, specs: Iterable[str]) -> UpstreamRoutes:
        return cls(parse_upstream(spec) for spec in specs)

    def for_model(self, model: object) -> Upstream | None:
        """The upstream named ``model``, else the default; ``None`` if neither exists."""
        if isinstance(model, str) and model in self.by_name:
            return self.by_name[model]
        return self.default

    def for_other_routes(self) -> Upstream:
        """Requests that name no model go to the default, or the first upstream given."""
        return self.default or self.upstreams[0]


def split_api_keys(
    values: Iterable[str], names: Collection[str]
) -> tuple[str | None, dict[str, str]]:
    """``--upstream-api-key`` values as (the key for every upstream, keys by upstream name).

    ``NAME=KEY`` gives the upstream named ``NAME`` a key of its own; anything else is the
    key of every other upstream. A value is read as ``NAME=KEY`` only when ``NAME`` is one
    of ``names``, because keys themselves may hold ``=`` (base64 padding). The messages
    never repeat a key.
    """
    default: str | None = None
    named: dict[str, str] = {}
    for value in values:
        name, sep, key = value.partition("=")
        if sep and name in names:
            if not key:
                raise UpstreamConfigError(f"empty key for the upstream {name!r}")
            if name in named:
                raise UpstreamConfigError(f"two keys for the upstream {name!r}")
            named[name] = key
        elif value:
            if default is not None:
                raise UpstreamConfigError(
                    "more than one key for every upstream; give the others as NAME=KEY"
                )
            default = value
    return default, named
