"""A reconnect storm: every client of a finished stream reconnects at the same moment.

When an instance restarts or a network blip ends, each client of a resumable stream comes
back at once with ``GET /v1/stream/C?from=0``. Connections past the listen backlog are not
queued: their SYN is dropped (retried after 1 s, 3 s, 7 s...) or the connection is reset.
With ``serve``'s default backlog (2048) none is lost.
"""

from __future__ import annotations

import resource
from collections import Counter

import httpx
import trio

from tests.deploy.processes import running, serve_command
from tests.deploy.test_serve_options import listen_backlog
from tests.helpers import chat_body

#: Clients reconnecting at once: more than a thousand, below the default backlog.
STORM = 1100
#: The whole storm's bound (2 shared cores: 8-15 s measured; SYN retries would add 15-30 s).
SECONDS = 45
REQUEST = b"GET /v1/stream/C?from=0 HTTP/1.1\r\nHost: storm\r\n\r\n"


def enough_file_descriptors(needed: int) -> None:
    """Raise this process's soft limit (the server inherits it) if it is below ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def reconnect(host: str, port: int, outcomes: Counter[str]) -> None:
    """One client: connect, ask for the whole stream, read it to its end (chunked ``0``)."""
    try:
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(REQUEST)
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, trio.BrokenResourceError) as error:
        outcomes[type(error).__name__] += 1
        return
    complete = data.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in data
    outcomes["answered" if complete else "incomplete"] += 1


async def test_a_storm_of_1100_reconnects_loses_none() -> None:
    enough_file_descriptors(2 * STORM + 200)
    # The storm reads a finished answer: at serve's default 20 tokens/s its 50 tokens
    # would take 2.5 s to write before the storm could start.
    async with running(serve_command("--port", "0", "--demo-tps", "1000")) as server:
        [url] = await server.urls()
        assert listen_backlog(url) >= STORM
        async with httpx.AsyncClient(base_url=url) as client:
            finished = await client.post(
                "/v1/chat/completions",
                json=chat_body(max_tokens=50),
                headers={"X-Conversation-Id": "C"},
            )
            assert finished.status_code == 200
        host, port = url.removeprefix("http://").rsplit(":", 1)
        outcomes: Counter[str] = Counter()
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            # One access-log line per request: read them, or the server blocks on its stderr.
            nursery.start_soon(server.drain_stderr)
            with trio.move_on_after(SECONDS):
                async with trio.open_nursery() as clients:
                    for _ in range(STORM):
                        clients.start_soon(reconnect, host, int(port), outcomes)
            nursery.cancel_scope.cancel()
        seconds = trio.current_time() - started
        assert outcomes == Counter(answered=STORM), (outcomes, f"{seconds:.1f} s")
        assert await server.stop() == 0
