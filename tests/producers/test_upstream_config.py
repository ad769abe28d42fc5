"""``--upstream`` values and the routing rule, without a network."""

from __future__ import annotations

import pytest

from trio_streams.producers.upstream.client import UpstreamClient, UpstreamOptions
from trio_streams.producers.upstream.routes import (
    Upstream,
    UpstreamConfigError,
    UpstreamRoutes,
    parse_upstream,
    split_api_keys,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("http://127.0.0.1:8080/v1", Upstream("http://127.0.0.1:8080/v1")),
        ("http://127.0.0.1:8080/v1/", Upstream("http://127.0.0.1:8080/v1")),
        ("http://127.0.0.1:8080", Upstream("http://127.0.0.1:8080/v1")),
        ("https://api.example.com/", Upstream("https://api.example.com/v1")),
        ("http://[::1]:11434/v1", Upstream("http://[::1]:11434/v1")),
        ("http://gw/openai/v1", Upstream("http://gw/openai/v1")),
        ("qwen2.5:7b=http://[::1]:11434/v1", Upstream("http://[::1]:11434/v1", "qwen2.5:7b")),
        ("org/model=http://h:1", Upstream("http://h:1/v1", "org/model")),
    ],
)
def test_parse_upstream(spec: str, expected: Upstream) -> None:
    assert parse_upstream(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("127.0.0.1:8080", "is not an http(s) URL"),
        ("ftp://host/v1", "is not an http(s) URL"),
        ("http:///v1", "is not an http(s) URL"),
        ("=http://h/v1", "empty model name"),
        ("http://h/v1?key=1", "takes no query"),
        ("m=", "is not an http(s) URL"),
    ],
)
def test_bad_upstreams_are_refused_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(UpstreamConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_upstream(spec)


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("http://127.0.0.1:8081/v1", "/props", b"", "http://127.0.0.1:8081/props"),
        ("http://127.0.0.1:8081/v1", "/", b"a=1", "http://127.0.0.1:8081/?a=1"),
        ("http://gw/llama/v1", "/slots/0", b"action=save", "http://gw/llama/slots/0?action=save"),
        ("http://user:pw@h:1/v1", "/tools", b"", "http://user:pw@h:1/tools"),
        ("https://h/api/openai", "/props", b"", "https://h/props"),  # not .../v1: the origin
        ("https://h/v1beta", "/props", b"", "https://h/props"),
    ],
)
def test_routes_outside_the_api_are_at_the_servers_root(
    base: str, path: str, query: bytes, expected: str
) -> None:
    assert Upstream(base).root_url(path, query) == expected


def test_routes_by_model_name_then_default() -> None:
    routes = UpstreamRoutes.parse(["a=http://a", "http://default", "b=http://b"])
    assert routes.for_model("a") == Upstream("http://a/v1", "a")
    assert routes.for_model("b") == Upstream("http://b/v1", "b")
    assert routes.for_model("other") == routes.for_model(None) == Upstream("http://default/v1")
    assert routes.for_model(["a"]) == Upstream("http://default/v1")  # not a string
    assert routes.for_other_routes() == Upstream("http://default/v1")
    assert Upstream("http://a/v1").url("/models", b"x=1") == "http://a/v1/models?x=1"


def test_logged_form_leaves_credentials_out() -> None:
    upstream = parse_upstream("m=https://user:secret@api.example.com/v1")
    assert upstream.base_url == "https://user:secret@api.example.com/v1"
    assert str(upstream) == "m=https://api.example.com/v1"


def test_without_a_default_unknown_models_have_no_route() -> None:
    routes = UpstreamRoutes.parse(["a=http://a", "b=http://b"])
    assert routes.for_model("c") is None
    assert routes.for_other_routes() == Upstream("http://a/v1", "a")


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "no upstream"),
        (["http://a", "http://b"], "more than one default"),
        (["m=http://a", "m=http://b"], "given twice"),
    ],
)
def test_ambiguous_route_sets_are_refused(specs: list[str], message: str) -> None:
    with pytest.raises(UpstreamConfigError, match=message):
        UpstreamRoutes.parse(specs)


def test_forwarded_request_headers() -> None:
    incoming = [
        ("Host", "proxy"),
        ("Content-Length", "12"),
        ("Connection", "keep-alive, x-secret"),
        ("Transfer-Encoding", "chunked"),
        ("Accept-Encoding", "gzip"),
        ("X-Conversation-Id", "secret"),
        ("Authorization", "Bearer client"),
        ("Content-Type", "application/json"),
        ("OpenAI-Organization", "org"),
        ("X-Secret", "hop-by-hop, named by Connection"),
    ]
    routes = UpstreamRoutes.parse(["http://a"])
    plain = UpstreamClient(None, UpstreamOptions(routes))  # type: ignore[arg-type]
    assert plain.request_headers(incoming, routes.upstreams[0]) == [
        ("Authorization", "Bearer client"),
        ("Content-Type", "application/json"),
        ("OpenAI-Organization", "org"),
        ("Accept-Encoding", "identity"),
    ]
    keyed = UpstreamClient(None, UpstreamOptions(routes, api_key="sk-1"))  # type: ignore[arg-type]
    assert keyed.request_headers(incoming, routes.upstreams[0]) == [
        ("Content-Type", "application/json"),
        ("OpenAI-Organization", "org"),
        ("Authorization", "Bearer sk-1"),
        ("Accept-Encoding", "identity"),
    ]


def test_client_credentials_that_are_ours_are_never_forwarded() -> None:
    routes = UpstreamRoutes.parse(["http://a"])
    incoming = [("Authorization", "Bearer ours"), ("X-Api-Key", "ours"), ("X-Other", "1")]
    options = UpstreamOptions(routes, forward_client_auth=False)
    closed = UpstreamClient(None, options)  # type: ignore[arg-type]
    assert closed.request_headers(incoming, routes.upstreams[0]) == [
        ("X-Other", "1"),
        ("Accept-Encoding", "identity"),
    ]
    keyed = UpstreamClient(None, UpstreamOptions(routes, api_key="sk", forward_client_auth=False))  # type: ignore[arg-type]
    assert keyed.request_headers(incoming, routes.upstreams[0]) == [
        ("X-Other", "1"),
        ("Authorization", "Bearer sk"),
        ("Accept-Encoding", "identity"),
    ]


def test_a_named_upstream_gets_its_own_key_and_the_others_the_common_one() -> None:
    routes = UpstreamRoutes.parse(["openai=https://api.example/v1", "local=http://a", "http://b"])
    openai, local, default = routes.upstreams
    options = UpstreamOptions(routes, api_key="sk-common", api_keys={"openai": "sk-openai"})
    client = UpstreamClient(None, options)  # type: ignore[arg-type]
    incoming = [("Authorization", "Bearer client")]

    def sent_key(upstream: Upstream) -> list[str]:
        headers = client.request_headers(incoming, upstream)
        return [value for name, value in headers if name.lower() == "authorization"]

    assert sent_key(openai) == ["Bearer sk-openai"]
    assert sent_key(local) == sent_key(default) == ["Bearer sk-common"]
    only_named = UpstreamClient(None, UpstreamOptions(routes, api_keys={"openai": "sk-o"}))  # type: ignore[arg-type]
    assert [v for n, v in only_named.request_headers(incoming, local) if n == "Authorization"] == [
        "Bearer client"  # no key for it: the client's own passes through
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((), (None, {})),
        (("sk-all",), ("sk-all", {})),
        (("openai=sk-o", "sk-all"), ("sk-all", {"openai": "sk-o"})),
        (("c2stYWxs=",), ("c2stYWxs=", {})),  # base64 padding: not a name
        (("other=sk",), ("other=sk", {})),  # "other" is no upstream's name: a whole key
        (("local=a=b",), (None, {"local": "a=b"})),
    ],
)
def test_upstream_api_keys_are_split_by_upstream_name(
    values: tuple[str, ...], expected: tuple[str | None, dict[str, str]]
) -> None:
    assert split_api_keys(values, ["openai", "local"]) == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("sk-1", "sk-2"), "more than one key for every upstream"),
        (("local=a", "local=b"), "two keys for the upstream 'local'"),
        (("local=",), "empty key for the upstream 'local'"),
    ],
)
def test_ambiguous_upstream_api_keys_are_refused_without_echoing_them(
    values: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UpstreamConfigError, match=message) as raised:
        split_api_keys(values, ["openai", "local"])
    assert "sk-" not in str(raised.value) and "=a" not in str(raised.value)
