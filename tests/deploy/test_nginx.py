"""trio-streams behind a real nginx, configured with docs/deployment.md's own blocks.

The ``upstream`` and ``location`` blocks are taken from the page (only the socket path is
changed): streams come through as they are generated and end, a resume works through the
proxy, and with ``--proxy-headers legacy`` the access log records the client's address,
never one the client wrote into ``X-Forwarded-For`` itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.deploy.processes import Process, running, serve_command
from tests.deploy.test_deployment_doc import blocks
from tests.helpers import chat_body, ends_with_done

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
if NGINX is None:
    # CI installs Debian's nginx-light (.ci/run): there these tests must run.
    if os.environ.get("CI"):
        raise RuntimeError("nginx is missing: apt-get install -y nginx-light")
    pytest.skip("needs nginx: apt-get install -y nginx-light", allow_module_level=True)

ACCESS = re.compile(rb"trio_streams.access: (\{.*\"path\":\"/v1/chat/completions\".*\})")
DOC_SOCKET = "unix:/run/trio-streams/trio-streams.sock"


def block(text: str, opening: str) -> str:
    """The ``opening { ... }`` block of an nginx config, braces balanced."""
    start = text.index(opening)
    depth = 0
    for index in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start : index + 1]
    raise AssertionError(f"unbalanced {opening!r}")


def nginx_config(folder: Path, sock: Path, port: int) -> Path:
    """A plain-HTTP server on 127.0.0.1:port, with the page's upstream and location."""
    [example] = blocks("nginx")
    upstream = block(example, "upstream trio_streams").replace(DOC_SOCKET, f"unix:{sock}")
    location = block(example, "location / ")
    temp = folder / "temp"
    temp.mkdir()
    config = folder / "nginx.conf"
    config.write_text(
        f"""
user root;
daemon off;
master_process off;  # one process: nothing is left behind when the test ends it
pid {folder}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    {upstream}
    server {{
        listen 127.0.0.1:{port};
        {location}
    }}
}}
"""
    )
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def behind_nginx(tmp_path: Path) -> AsyncIterator[tuple[str, Process]]:
    """trio-streams on a Unix socket with proxy headers trusted, nginx in front of it."""
    sock = tmp_path / "trio-streams.sock"
    serve = serve_command("--bind", f"unix:{sock}", "--proxy-headers", "legacy")
    async with running(serve, env={"TRIO_STREAMS_DEMO_TPS": "40"}) as server:
        await server.urls()
        port = free_port()
        config = nginx_config(tmp_path, sock, port)
        check = await trio.run_process(
            [NGINX, "-t", "-c", str(config)], capture_stderr=True, check=False
        )
        assert check.returncode == 0, check.stderr.decode()
        async with running([NGINX, "-c", str(config)]) as nginx:
            url = f"http://127.0.0.1:{port}"
            with trio.fail_after(10):
                while True:
                    try:
                        await trio.open_tcp_stream("127.0.0.1", port)
                        break
                    except OSError:
                        await trio.sleep(0.05)
            yield url, server
            nginx.process.terminate()  # fast shutdown
            with trio.fail_after(10):
                await nginx.process.wait()
        assert await server.stop() == 0


async def test_streams_pass_unbuffered_end_and_resume(behind_nginx: tuple[str, Process]) -> None:
    url, _ = behind_nginx
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        started = trio.current_time()
        # Pings (every 5 s) would keep a stream that never ends from timing out: bound it.
        with trio.fail_after(15):
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(max_tokens=80),  # 2 s at 40 tokens per second
                headers={"X-Conversation-Id": "through-nginx"},
            ) as response:
                assert response.status_code == 200
                chunks = response.aiter_raw()
                received = [await chunks.__anext__()]
                first = trio.current_time() - started
                received += [chunk async for chunk in chunks]
                last = trio.current_time() - started
        # The first event came as soon as it was made, not with the rest at the end.
        assert first < 0.5 and last > 1.5, (first, last)
        whole = b"".join(received)
        assert ends_with_done(whole)
        resumed = await client.get("/v1/stream/through-nginx", params={"from": 100})
        assert resumed.status_code == 200 and resumed.content == whole[100:]


async def test_the_access_log_records_the_client_not_what_it_claims(
    behind_nginx: tuple[str, Process],
) -> None:
    url, server = behind_nginx
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=5),
            headers={"X-Conversation-Id": "who", "X-Forwarded-For": "203.0.113.66"},
        )
        assert response.status_code == 200
    record = json.loads((await server.wait_for(ACCESS)).group(1))
    # nginx appended the address it saw (127.0.0.1) after the client's claim; one trusted hop.
    assert record["client"] == "127.0.0.1"
