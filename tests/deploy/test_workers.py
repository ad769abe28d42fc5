"""``trio-streams serve --workers N``: Hypercorn's worker processes, on a shared store.

Run as a user runs it (a real process, real signals): two workers answer one port, any
of them resumes what another started, and SIGTERM to the parent ends every reader and
every worker. With the memory store several workers are refused at start.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import httpx
import trio

from tests.cli_refusals import refused_serve
from tests.helpers import chat_body
from tests.redis_fixtures import RedisServer
from trio_streams.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def workers_of(pid: int) -> list[int]:
    """The worker processes ``pid`` spawned (not multiprocessing's resource tracker)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [
        int(child)
        for child in text.split()
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def wait_until_answering(url: str, process: trio.Process) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as client:
        with trio.fail_after(30):
            while True:
                assert process.poll() is None, "the server exited early"
                try:
                    if (await client.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


def test_memory_store_with_several_workers_is_refused() -> None:
    result = refused_serve("--workers", "2", "--port", "0")
    message = result.stderr
    assert result.exit_code == 2, message
    assert "'--workers'" in message and "--store redis://" in message


async def test_two_workers_share_sessions_and_stop_gracefully(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    url = f"http://127.0.0.1:{port}"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_streams", "serve", "--workers", "2", "--port", str(port)],
        env={
            **os.environ,
            "TRIO_STREAMS_STORE": redis_server.url,
            "TRIO_STREAMS_DEMO_TPS": "100",
        },
        stderr=log,
    )
    workers: list[int] = []
    try:
        await wait_until_answering(url, process)
        assert len(workers_of(process.pid)) == 2

        # A finished session: every fresh connection, to whichever worker accepts it,
        # resumes it to exactly the same bytes.
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = await client.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=40),
                headers={"X-Conversation-Id": "workers"},
            )
            whole = first.content
        assert b"data: [DONE]" in whole
        for offset in range(0, len(whole), max(1, len(whole) // 12)):
            async with httpx.AsyncClient(base_url=url, timeout=30) as fresh:
                rest = await fresh.get("/v1/stream/workers", params={"from": offset})
            assert rest.status_code == 200
            assert whole[:offset] + rest.content == whole

        # SIGTERM mid-stream: the reader's response ends cleanly, every process exits 0.
        got = b""
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as client,
            client.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(max_tokens=4000),
                headers={"X-Conversation-Id": "long"},
            ) as response,
        ):
            chunks = response.aiter_raw()
            async for chunk in chunks:
                got += chunk
                if len(got) > 2000:
                    break
            workers = workers_of(process.pid)
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                async for chunk in chunks:
                    got += chunk
        with trio.fail_after(15):
            exit_code = await process.wait()
        assert exit_code == 0, (tmp_path / "serve.log").read_text()
        assert "with 2 workers" in (tmp_path / "serve.log").read_text()
        assert b"data: [DONE]" not in got  # cut by the shutdown, not finished
        assert workers and not any(alive(worker) for worker in workers)
    finally:
        log.close()
        if process.poll() is None:
            process.kill()
            await process.wait()


def test_settings_reach_the_workers_unchanged() -> None:
    """What ``serve`` hands its workers (JSON in TRIO_STREAMS_SETTINGS) is what it parsed."""
    settings = Settings(
        store="redis://127.0.0.1:1/0",
        api_keys=("k1", "k2"),
        upstreams=("a=http://127.0.0.1:9/v1",),
        upstream_api_keys={"a": "secret"},
        cors_origins=("http://localhost:3000",),
        bind=("unix:/tmp/x.sock", "127.0.0.1:0"),
        proxy_headers="legacy",
        max_sessions=None,
        workers=3,
    )
    assert Settings.from_json(settings.to_json()) == settings
