"""``trio-streams serve`` with Hypercorn's own options, each through a real process.

TLS with HTTP/2 (ALPN), ``--bind`` with a Unix socket, trusted proxy headers in the
access log, Hypercorn's config file and which value wins, the listen backlog.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.cli_refusals import refused_serve
from tests.deploy.conftest import Tls
from tests.deploy.processes import running, serve_command
from tests.helpers import chat_body, ends_with_done
from trio_streams.server import hypercorn_config
from trio_streams.settings import DEFAULT_BACKLOG, Settings

ACCESS = re.compile(rb"trio_streams.access: (\{.*\})")


async def test_tls_serves_http2_and_http11(tls: Tls) -> None:
    command = serve_command(
        "--port", "0", "--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)
    )
    async with running(command) as server:
        [url] = await server.urls()
        assert url.startswith("https://127.0.0.1:")
        verify = tls.client_context()
        async with httpx.AsyncClient(base_url=url, http2=True, verify=verify) as h2:
            response = await h2.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=20),
                headers={"X-Conversation-Id": "tls"},
            )
            assert response.http_version == "HTTP/2"
            assert ends_with_done(response.content)
            resumed = await h2.get("/v1/stream/tls", params={"from": 10})
            assert resumed.http_version == "HTTP/2" and resumed.content == response.content[10:]
        async with httpx.AsyncClient(base_url=url, verify=verify) as h11:
            health = await h11.get("/health")
            assert health.http_version == "HTTP/1.1" and health.json()["status"] == "ok"
        assert await server.stop() == 0


async def test_a_unix_socket_beside_tcp_from_the_environment(tmp_path: Path) -> None:
    sock = tmp_path / "trio-streams.sock"
    env = {"TRIO_STREAMS_BIND": f"unix:{sock} 127.0.0.1:0"}
    async with running(serve_command(), env=env) as server:
        urls = await server.urls(count=2)
        assert urls[0] == f"http://unix:{sock}" and urls[1].startswith("http://127.0.0.1:")
        transport = httpx.AsyncHTTPTransport(uds=str(sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://trio-streams") as uds:
            response = await uds.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=10),
                headers={"X-Conversation-Id": "uds"},
            )
            assert ends_with_done(response.content)
        async with httpx.AsyncClient(base_url=urls[1]) as tcp:
            # One server behind both addresses: the session made over the socket.
            resumed = await tcp.get("/v1/stream/uds", params={"from": 0})
            assert resumed.content == response.content
        assert await server.stop() == 0
    assert "unix:" in server.stderr.decode()


@pytest.mark.parametrize(
    ("options", "headers", "client"),
    [
        ([], {"X-Forwarded-For": "203.0.113.7"}, "127.0.0.1"),  # not trusted by default
        (["--proxy-headers", "legacy"], {"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
        (
            ["--proxy-headers", "legacy", "--trusted-hops", "2"],
            {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"},
            "198.51.100.1",
        ),
        (
            ["--proxy-headers", "modern"],
            {"Forwarded": "for=203.0.113.9;proto=https"},
            "203.0.113.9",
        ),
    ],
)
async def test_the_access_log_records_the_address_the_proxy_forwards(
    options: list[str], headers: dict[str, str], client: str
) -> None:
    async with running(serve_command("--port", "0", *options)) as server:
        [url] = await server.urls()
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/health", headers=headers)).status_code == 200
        record = json.loads((await server.wait_for(ACCESS)).group(1))
        assert record["path"] == "/health" and record["client"] == client
        assert await server.stop() == 0


def listen_backlog(url: str) -> int:
    """The listening socket's queue length, as the kernel reports it (ss: Send-Q)."""
    port = url.rsplit(":", 1)[1]
    lines = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(lines[2])


@pytest.mark.parametrize(
    ("file_backlog", "env", "expected"),
    [
        (None, {}, DEFAULT_BACKLOG),  # ours, when the file says nothing
        (300, {}, 300),  # the file's, when our option is not given
        (300, {"TRIO_STREAMS_BACKLOG": "500"}, 500),  # ours, when given
    ],
)
async def test_the_config_file_sets_what_our_options_leave(
    tmp_path: Path, file_backlog: int | None, env: dict[str, str], expected: int
) -> None:
    config = tmp_path / "hypercorn.toml"
    lines = ['bind = ["127.0.0.1:0"]', "include_server_header = false"]
    if file_backlog is not None:
        lines.append(f"backlog = {file_backlog}")
    config.write_text("\n".join(lines) + "\n")
    async with running(serve_command("--config", str(config)), env=env) as server:
        [url] = await server.urls()  # the file's bind: no --host/--port given
        async with httpx.AsyncClient(base_url=url) as http:
            response = await http.get("/health")
            assert response.status_code == 200 and "server" not in response.headers
        assert listen_backlog(url) == expected
        assert await server.stop() == 0


def test_explicit_options_win_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "hypercorn.toml"
    config.write_text('bind = ["127.0.0.1:1"]\ngraceful_timeout = 9.0\nkeep_alive_timeout = 7\n')
    from_file = hypercorn_config(Settings(hypercorn_config=str(config)))
    assert from_file.bind == ["127.0.0.1:1"] and from_file.graceful_timeout == 9.0
    assert from_file.keep_alive_timeout == 7 and from_file.backlog == DEFAULT_BACKLOG
    ours = hypercorn_config(
        Settings(hypercorn_config=str(config), bind=("unix:/tmp/x.sock",), graceful_timeout=1.0)
    )
    assert ours.bind == ["unix:/tmp/x.sock"] and ours.graceful_timeout == 1.0
    assert ours.keep_alive_timeout == 7
    # Without a file: host and port, Hypercorn's graceful timeout, our backlog, no access log.
    plain = hypercorn_config(Settings(host="::1", port=0))
    assert plain.bind == ["[::1]:0"] and plain.graceful_timeout == 3.0
    assert plain.backlog == DEFAULT_BACKLOG and plain.accesslog is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--certfile", "pyproject.toml"], "--certfile and --keyfile go together"),
        (["--bind", "127.0.0.1:0", "--port", "1"], "use --bind or --host/--port, not both"),
        (["--proxy-headers", "yes"], "'yes' is not one of 'legacy', 'modern'"),
        (["--backlog", "0"], "0 is not in the range x>=1"),
        (["--config", "missing.toml"], "'missing.toml' does not exist"),
        (["--config", "README.md"], "Invalid value for '--config': not a TOML file: "),
    ],
)
def test_bad_listener_options_are_refused(args: list[str], message: str) -> None:
    result = refused_serve(*args)
    assert result.exit_code == 2
    assert message in result.stderr


async def test_an_address_it_cannot_listen_on_is_named_without_a_traceback(
    tmp_path: Path,
) -> None:
    with socket.socket() as first:  # a listening socket holds the address
        first.bind(("127.0.0.1", 0))
        first.listen()
        host, port = first.getsockname()
        missing = f"unix:{tmp_path}/no/such/dir.sock"
        for bind, reason in (
            (f"{host}:{port}", "Address already in use"),
            (missing, "No such file"),
        ):
            with trio.fail_after(20):
                result = await trio.run_process(
                    serve_command("--bind", bind), capture_stderr=True, check=False
                )
            stderr = result.stderr.decode()
            assert result.returncode == 1
            assert f"Error: cannot listen on {bind}: " in stderr
            assert reason in stderr and "Traceback" not in stderr
