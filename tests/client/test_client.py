"""The resuming Python client and ``trio-streams tail``, through a proxy that cuts connections.

The proxy (tests/cutting_proxy.py) sits between the client and a real server and closes
every connection after a random number of response bytes: mid-header, mid-chunk, mid-event.
Whatever the cuts, the bytes the client yields must be the session's bytes exactly.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from contextlib import aclosing

import httpx
import pytest
import trio
from click.testing import CliRunner

from tests.cli_options import Tailed, tail
from tests.conftest import StartServer
from tests.cutting_proxy import CuttingProxy
from tests.helpers import chat_body, chat_text, ends_with_done
from tests.test_readme import readme_example
from trio_streams import cli
from trio_streams.client import (
    Backoff,
    OffsetLostError,
    StreamError,
    StreamNotFoundError,
    StreamsClient,
    StreamStopped,
    chunk_text,
)
from trio_streams.producers.demo import answer_tokens
from trio_streams.server import RunningServer

FAST_RETRY = Backoff(first=0.001, maximum=0.01)


def port_of(server: RunningServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def session_bytes(server: RunningServer, conversation_id: str) -> bytes:
    session = server.manager.get(conversation_id)
    assert session is not None
    with trio.fail_after(10):
        return b"".join([chunk async for chunk in session.read(0)])


@pytest.fixture
async def server(start_server: StartServer) -> RunningServer:
    """A real server whose demo model answers at 1000 tokens/s: these tests read whole
    answers through cuts (25 of them in one test), and the cuts, not the model's pace, are
    what they check; the tests that act mid-stream start their own, slower server."""
    return await start_server(demo_tps=1000)


@pytest.fixture
async def cutting(server: RunningServer, nursery: trio.Nursery) -> CuttingProxy:
    """A proxy cutting each connection after 0-2500 response bytes (seeded: reproducible)."""
    rng = random.Random(6)
    proxy = CuttingProxy(port_of(server), lambda: rng.randint(0, 2500))
    await nursery.start(proxy.serve)
    return proxy


async def test_start_through_random_cuts_yields_exactly_the_sessions_bytes(
    server: RunningServer, cutting: CuttingProxy
) -> None:
    reconnects: list[int] = []
    async with StreamsClient(
        cutting.url, backoff=FAST_RETRY, on_reconnect=lambda at, _d, _e: reconnects.append(at)
    ) as client:
        for run in range(25):
            conversation_id = f"cut-{run}"
            body = chat_body(f"cut me {run}", max_tokens=40)
            async with aclosing(client.start_bytes(conversation_id, body)) as chunks:
                received = b"".join([chunk async for chunk in chunks])
            expected = await session_bytes(server, conversation_id)
            assert received == expected, f"run {run}"
            assert ends_with_done(received)
            assert chat_text(received) == "".join(answer_tokens(f"cut me {run}")[:40])
    # The cuts happened, and the client resumed at many different offsets.
    assert cutting.cuts > 100 and len(set(reconnects)) > 50


async def test_iter_bytes_from_any_offset_through_random_cuts(
    server: RunningServer, client: httpx.AsyncClient, cutting: CuttingProxy
) -> None:
    full = (
        await client.post(
            "/v1/chat/completions",
            json=chat_body("offsets", max_tokens=30),
            headers={"X-Conversation-Id": "c-offsets"},
        )
    ).content
    rng = random.Random(60)
    async with StreamsClient(cutting.url, backoff=FAST_RETRY) as streams:
        for offset in [0, len(full), *rng.sample(range(len(full)), 15)]:
            async with aclosing(streams.iter_bytes("c-offsets", offset)) as chunks:
                assert b"".join([chunk async for chunk in chunks]) == full[offset:]


async def test_events_and_text_while_the_stream_is_still_generating(
    start_server: StartServer, nursery: trio.Nursery
) -> None:
    server = await start_server(demo_tps=300)
    rng = random.Random(7)
    proxy = CuttingProxy(port_of(server), lambda: rng.randint(200, 3000))
    await nursery.start(proxy.serve)
    async with StreamsClient(proxy.url, backoff=FAST_RETRY) as client:
        events = [
            event async for event in client.chat("c-live", chat_body("live events", max_tokens=120))
        ]
    raw = await session_bytes(server, "c-live")
    assert proxy.cuts > 5
    assert b"".join(event.raw for event in events) == raw
    assert events[-1].data == "[DONE]" and events[-1].offset == len(raw)
    # Every event's offset is its stamped id: from= and Last-Event-ID agree.
    generation = server.manager.get("c-live").generation  # type: ignore[union-attr]
    assert all(event.id == f"{generation}-{event.offset}" for event in events)
    text = "".join(chunk_text(event) for event in events)
    assert text == "".join(answer_tokens("live events")[:120])


async def test_the_same_client_works_under_asyncio(
    server: RunningServer, cutting: CuttingProxy
) -> None:
    async def read_under_asyncio() -> bytes:
        assert asyncio.get_running_loop()  # really asyncio, not trio
        async with StreamsClient(cutting.url, backoff=FAST_RETRY) as client:
            chunks = [
                chunk
                async for chunk in client.start_bytes(
                    "c-asyncio", chat_body("asyncio", max_tokens=40)
                )
            ]
        async with StreamsClient(server.url) as direct:  # a lookup the proxy does not cut
            found = await direct.lookup("c-asyncio")
            assert found and found[0].is_done
        return b"".join(chunks)

    received = await trio.to_thread.run_sync(asyncio.run, read_under_asyncio())
    assert received == await session_bytes(server, "c-asyncio")
    assert cutting.cuts > 3


async def test_a_stalled_connection_times_out_and_resumes(
    server: RunningServer, nursery: trio.Nursery
) -> None:
    budgets = iter([3000, 6000])
    proxy = CuttingProxy(port_of(server), lambda: next(budgets, None), stall=True)
    await nursery.start(proxy.serve)
    errors: list[Exception] = []
    async with StreamsClient(
        proxy.url,
        backoff=FAST_RETRY,
        read_timeout=0.5,
        on_reconnect=lambda _at, _delay, error: errors.append(error),
    ) as client:
        chunks = client.start_bytes("c-stall", chat_body("stall", max_tokens=80))
        received = await _drain(chunks)
    assert received == await session_bytes(server, "c-stall")
    assert proxy.cuts == 2 and [type(error) for error in errors] == [httpx.ReadTimeout] * 2


async def test_lookup_stop_and_the_errors(start_server: StartServer) -> None:
    server = await start_server(session_max_bytes=2000, demo_tps=100)
    async with StreamsClient(server.url, backoff=FAST_RETRY) as client:
        chunks = client.start_bytes("c::org/model", chat_body("stop me", max_tokens=10_000))
        first = await chunks.__anext__()
        assert first
        [info] = await client.lookup("c")  # found through its "::" variant
        assert (info.conversation_id, info.is_done) == ("c::org/model", False)
        session = server.manager.get("c::org/model")
        assert session is not None
        await client.stop("c::org/model")
        rest: list[bytes] = []
        with trio.fail_after(5), pytest.raises(StreamStopped) as stopped:
            async for chunk in chunks:  # the stream ends, and says why: it was stopped
                rest.append(chunk)
        assert stopped.value.reason == "stopped"
        assert session.is_cancelled and session.is_done and server.manager.producer_count == 0
        assert not ends_with_done(first + b"".join(rest))
        assert await client.lookup("c") == []
        await client.stop("c::org/model")  # idempotent
        with pytest.raises(StreamNotFoundError) as not_found:
            await anext_of(client.iter_bytes("c::org/model"))
        assert not_found.value.status == 404 and not_found.value.error_type == "not_found_error"
        assert isinstance(not_found.value, StreamStopped)  # from the tombstone

        await _drain(client.start_bytes("c-cap", chat_body("long", max_tokens=20)))  # > 2000 B
        with pytest.raises(OffsetLostError):
            await anext_of(client.iter_bytes("c-cap", 0))
        with pytest.raises(StreamError) as bad:
            await _drain(client.start_bytes("c-bad", {"messages": "nope"}))
        assert bad.value.status == 400


async def test_a_server_that_stays_away_makes_the_client_give_up_after_its_attempts() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    attempts: list[float] = []
    backoff = Backoff(first=0.001, maximum=0.002, attempts=3)
    async with StreamsClient(
        f"http://127.0.0.1:{port}",
        backoff=backoff,
        on_reconnect=lambda _at, delay, _e: attempts.append(delay),
    ) as client:
        with pytest.raises(httpx.ConnectError):
            await anext_of(client.iter_bytes("c-gone"))
    assert len(attempts) == 3


def test_backoff_grows_exponentially_up_to_its_maximum_with_jitter() -> None:
    backoff = Backoff(first=0.1, factor=2, maximum=1.0)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(base / 2 <= delay <= base for delay in delays)
        assert len(delays) > 1  # jittered: clients cut together do not return together


# -- trio-streams tail -------------------------------------------------------------------------


async def run_tail(*args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(30):
        return await trio.run_process(
            [sys.executable, "-m", "trio_streams", "tail", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_tail_prints_the_stream_and_resumes_across_cuts(
    server: RunningServer, client: httpx.AsyncClient, cutting: CuttingProxy
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        full = (
            await http.post(
                "/v1/chat/completions",
                json=chat_body("tail me", max_tokens=20),  # 4.5 kB: about 5 cuts a run
                headers={"X-Conversation-Id": "c/tail"},
            )
        ).content
    done: dict[str, Tailed] = {}

    async def tail_process() -> None:
        """One real ``trio-streams tail`` process: its exit status, stdout and stderr."""
        result = await run_tail("c/tail", "--url", cutting.url, "--raw")
        done["raw"] = Tailed(result.returncode, result.stdout, result.stderr)

    async def tail_in_process(name: str, *args: str) -> None:
        done[name] = await tail(*args)

    # Run together: the process's start-up and the reconnect pauses overlap.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tail_process)
        nursery.start_soon(
            tail_in_process, "later", "c/tail", "--url", cutting.url, "--raw", "--from", "1000"
        )
        nursery.start_soon(tail_in_process, "text", "c/tail", "--url", cutting.url)
        nursery.start_soon(tail_in_process, "missing", "nope", "--url", server.url)
    raw, later, text, missing = (done[name] for name in ("raw", "later", "text", "missing"))
    assert raw.returncode == 0 and raw.stdout == full
    assert b"resuming from byte" in raw.stderr  # it was cut, and said so on stderr
    assert later.stdout == full[1000:]
    assert text.stdout.decode() == "".join(answer_tokens("tail me")[:20]) + "\n"
    assert missing.returncode == 1 and b"Stream not found or expired" in missing.stderr


# -- helpers -----------------------------------------------------------------------------------


async def anext_of(chunks: object) -> bytes:
    async with aclosing(chunks) as stream:  # type: ignore[type-var]
        return await stream.__anext__()  # type: ignore[no-any-return]


async def _drain(chunks: object) -> bytes:
    async with aclosing(chunks) as stream:  # type: ignore[type-var]
        return b"".join([chunk async for chunk in stream])


async def test_the_readme_client_example_runs(server: RunningServer) -> None:
    code = readme_example("client").replace("http://127.0.0.1:8080", server.url)
    with trio.fail_after(30):
        result = await trio.run_process(
            [sys.executable, "-c", code], capture_stdout=True, capture_stderr=True
        )
    text, info = result.stdout.decode().rstrip("\n").rsplit("\n", 1)
    assert text == "".join(answer_tokens("hello")[:256])
    assert "conversation_id='my-chat-3'" in info and "is_done=True" in info


def test_tail_refuses_a_position_that_is_neither_an_offset_nor_an_event_id() -> None:
    result = CliRunner().invoke(cli.main, ["tail", "c", "--from", "soon"], prog_name="trio-streams")
    assert result.exit_code == 2
    assert "Invalid value for --from: expected a byte offset or an event id" in result.stderr
