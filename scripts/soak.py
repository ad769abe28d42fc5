"""A bounded chaos soak of a real trio-streams server on 127.0.0.1, proving nothing is lost.

Usage::

    python scripts/soak.py                         # 300 sessions, at most 120 s
    python scripts/soak.py --sessions 40 --seconds 10 --seed 1   # the CI version

The server runs in this process (Hypercorn on a free loopback port) so the soak can check
the server's own state at the end. Every conversation is one *chain* of HTTP clients:

- it starts its stream with ``POST /v1/chat/completions`` and ``X-Conversation-Id``;
- it disconnects at random byte positions (mid-event too: the bytes past the cut are
  thrown away, as a dropped connection loses them) and resumes with
  ``GET /v1/stream/C?from=<bytes it has>``, possibly several times;
- some chains read slowly (a pause after each chunk);
- some sessions get a *viewer*, a second client reading the whole stream slowly from 0;
- some chains press Stop (``DELETE``) in the middle, some regenerate (a new ``POST`` with
  the same id replaces the session), and a new stream refused with ``429`` (the producer
  limit is set low on purpose) is retried after a short wait.

What is asserted at the end (any failure exits 1):

1. For every session that ran to its end: every chain and viewer of it holds exactly the
   session's bytes (no byte lost, none duplicated), which end with ``data: [DONE]``.
2. For every session stopped by DELETE or replaced: each of its readers holds a prefix of
   the session's bytes (SPEC §1: its readers end; nothing later was promised).
3. No resume ever got "offset lost" (the session cap is larger than any answer), and every
   ``429`` was JSON with a ``Retry-After`` header.
4. Nothing leaked: after the clients are done no producer runs, after the TTL no session
   is registered and no bytes are held, no ``StreamSession`` object is alive, and the
   number of trio tasks is back to what it was before the first request.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import httpx
import trio
import trio.testing

from trio_streams.core.session import StreamSession
from trio_streams.core.sse import DONE
from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings

SESSION_CAP = 512 * 1024  # larger than any demo answer: no offset is ever lost to the cap


@dataclass
class Options:
    sessions: int
    seconds: float
    concurrency: int
    seed: int
    ttl: float
    tps: float


@dataclass
class Outcome:
    """One session as the soak saw it: the server's object and what each reader got."""

    conversation_id: str
    session: StreamSession
    readers: list[bytes] = field(default_factory=list)
    cut_short: bool = False  # stopped (DELETE) or replaced


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)
    resumes: int = 0
    deletes: int = 0
    replacements: int = 0
    rejections: int = 0
    viewers: int = 0
    slow_chains: int = 0
    failures: list[str] = field(default_factory=list)
    peak_retained: int = 0
    peak_reserved: int = 0


class Soak:
    def __init__(self, options: Options, server: RunningServer, client: httpx.AsyncClient) -> None:
        self.options = options
        self.server = server
        self.client = client
        self.random = random.Random(options.seed)
        self.tally = Tally()
        self.deadline = trio.current_time() + options.seconds

    def fail(self, message: str) -> None:
        self.tally.failures.append(message)

    # -- one conversation -----------------------------------------------------------------

    async def conversation(self, index: int) -> None:
        rng = random.Random(self.random.getrandbits(64))
        cid = f"soak-{index}-{rng.getrandbits(32):08x}" + (
            "::model-a" if rng.random() < 0.2 else ""
        )
        slow = rng.random() < 0.25
        self.tally.slow_chains += slow
        action = rng.choices(["normal", "delete", "replace"], weights=[70, 15, 15])[0]
        async with trio.open_nursery() as viewers:
            outcome = await self.chain(cid, rng, viewers, slow=slow, action=action)
            if outcome is not None and action == "replace":
                # The regenerated answer replaces the session while its viewer may still
                # be reading it; the new one is read to its end like any other.
                await self.chain(cid, rng, viewers, slow=slow, action="normal")

    async def start(self, cid: str, rng: random.Random) -> httpx.Response | None:
        """POST the stream, retrying 429s; the open streaming response, or None."""
        body = {
            "model": "demo",
            "stream": True,
            "max_tokens": rng.randint(10, 120),
            "messages": [{"role": "user", "content": f"soak {cid} {rng.random()}"}],
        }
        for _ in range(400):
            request = self.client.build_request(
                "POST", "/v1/chat/completions", json=body, headers={"X-Conversation-Id": cid}
            )
            response = await self.client.send(request, stream=True)
            if response.status_code != 429:
                if response.status_code != 200:
                    self.fail(f"start {cid}: {response.status_code} {await response.aread()!r}")
                    await response.aclose()
                    return None
                return response
            await response.aread()
            self.tally.rejections += 1
            if "retry-after" not in response.headers or not response.headers[
                "content-type"
            ].startswith("application/json"):
                self.fail(f"429 without Retry-After or JSON: {response.headers}")
            await response.aclose()
            await trio.sleep(rng.uniform(0.02, 0.2))  # a chaos client waits less than told
        self.fail(f"start {cid}: still refused after 400 attempts")
        return None

    async def chain(
        self,
        cid: str,
        rng: random.Random,
        viewers: trio.Nursery,
        *,
        slow: bool,
        action: str,
    ) -> Outcome | None:
        response = await self.start(cid, rng)
        if response is None:
            return None
        session = self.server.manager.get(cid)
        if session is None:
            self.fail(f"{cid}: no session right after its POST was answered")
            await response.aclose()
            return None
        outcome = Outcome(cid, session)
        self.tally.outcomes.append(outcome)
        viewer = rng.random() < 0.2
        cuts = sorted(rng.randint(1, 12_000) for _ in range(rng.randint(0, 3)))
        stop_at = rng.randint(200, 6_000) if action != "normal" else None
        have = b""
        viewer_attached = trio.Event()
        if viewer:
            self.tally.viewers += 1
            viewers.start_soon(self.view, cid, outcome, rng.getrandbits(32), viewer_attached)
        else:
            viewer_attached.set()
        while True:
            target = cuts.pop(0) if cuts else stop_at
            have, ended = await self.read(response, have, target, slow, rng)
            if ended:
                break
            if stop_at is not None and len(have) >= stop_at:
                # The viewer must be reading *this* session before the id moves on.
                await viewer_attached.wait()
                await self.interrupt(cid, action, outcome)
                break
            # Disconnected at a random byte: come back with exactly what we have.
            self.tally.resumes += 1
            request = self.client.build_request(
                "GET", f"/v1/stream/{cid}", params={"from": len(have)}
            )
            response = await self.client.send(request, stream=True)
            if response.status_code != 200:
                finished = session.completed_at_clock
                ago = (
                    "running" if finished is None else f"{trio.current_time() - finished:.2f}s ago"
                )
                self.fail(f"resume {cid} from {len(have)}: {response.status_code}, done {ago}")
                await response.aclose()
                break
        outcome.readers.append(have)
        return outcome

    async def read(
        self,
        response: httpx.Response,
        have: bytes,
        target: int | None,
        slow: bool,
        rng: random.Random,
    ) -> tuple[bytes, bool]:
        """Read until ``target`` bytes (then drop the connection) or the end of the stream."""
        try:
            async for chunk in response.aiter_raw():
                have += chunk
                if target is not None and len(have) >= target:
                    return have[:target], False  # the rest of this chunk is lost in transit
                if slow:
                    await trio.sleep(rng.uniform(0.001, 0.02))
            return have, True
        finally:
            await response.aclose()

    async def interrupt(self, cid: str, action: str, outcome: Outcome) -> None:
        outcome.cut_short = True
        if action == "delete":
            self.tally.deletes += 1
            response = await self.client.delete(f"/v1/stream/{cid}")
            if response.status_code != 204:
                self.fail(f"DELETE {cid}: {response.status_code}")
            again = await self.client.get(f"/v1/stream/{cid}")
            if again.status_code != 404:
                self.fail(f"{cid} still readable after DELETE: {again.status_code}")
        else:
            self.tally.replacements += 1  # the caller's next chain replaces it

    async def view(self, cid: str, outcome: Outcome, seed: int, attached: trio.Event) -> None:
        """A second client that reads the whole stream slowly, small reads at a time."""
        rng = random.Random(seed)
        got = b""
        async with self.client.stream("GET", f"/v1/stream/{cid}") as response:
            attached.set()
            if response.status_code != 200:
                self.fail(f"viewer of {cid}: {response.status_code}")
                return
            async for chunk in response.aiter_raw(chunk_size=rng.choice([64, 512, 4096])):
                got += chunk
                await trio.sleep(rng.uniform(0.001, 0.01))
        outcome.readers.append(got)

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> None:
        limiter = trio.CapacityLimiter(self.options.concurrency)

        async def one(index: int) -> None:
            async with limiter:
                if trio.current_time() < self.deadline:
                    await self.conversation(index)

        async with trio.open_nursery() as nursery:
            for index in range(self.options.sessions):
                nursery.start_soon(one, index)

    async def sample_memory(self) -> None:
        manager = self.server.manager
        while True:
            self.tally.peak_retained = max(self.tally.peak_retained, manager.retained_bytes())
            self.tally.peak_reserved = max(self.tally.peak_reserved, manager.reserved_bytes())
            await trio.sleep(0.02)


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_root_task())


async def wait_for(condition: object, seconds: float) -> bool:
    """Wait (bounded) for a condition on the server's state; a script, not the library."""
    with trio.move_on_after(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - outside state
            await trio.sleep(0.05)
        return True
    return False


def _ends_with_done(data: bytes) -> bool:
    """Whether the last event that is not a comment (a keep-alive) is ``data: [DONE]``.

    Events may carry ``id:`` lines (event ids), so the event is compared line by line.
    """
    events = [block for block in data.split(b"\n\n") if block.strip()]
    events = [e for e in events if not all(line.startswith(b":") for line in e.split(b"\n"))]
    return bool(events) and DONE.strip() in events[-1].split(b"\n")


async def check(tally: Tally) -> int:
    """Assertions 1-2 of the module docstring; returns the number of bytes compared."""
    checked = 0
    for outcome in tally.outcomes:
        session = outcome.session
        if not session.is_done:
            tally.failures.append(f"{outcome.conversation_id}: session never finished")
            continue
        if session.dropped_prefix:
            tally.failures.append(f"{outcome.conversation_id}: the cap dropped bytes")
            continue
        full = b"".join([chunk async for chunk in session.read(0)])  # the server's bytes
        for got in outcome.readers:
            checked += len(got)
            if outcome.cut_short:
                if not full.startswith(got):
                    tally.failures.append(f"{outcome.conversation_id}: reader is no prefix")
            elif got != full:
                tally.failures.append(
                    f"{outcome.conversation_id}: reader has {len(got)} bytes, session {len(full)}"
                )
        # The last event is [DONE]; keep-alive comments may follow it (a producer that is
        # slow to return after its last write is still "idle" for the ping task).
        if not outcome.cut_short and not _ends_with_done(full):
            tally.failures.append(
                f"{outcome.conversation_id}: finished without [DONE]: ...{full[-120:]!r}"
            )
    return checked


async def soak(options: Options) -> int:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        demo_tps=options.tps,
        session_max_bytes=SESSION_CAP,
        session_ttl=options.ttl,
        gc_interval=options.ttl / 4,
        ping_interval=0.05,  # keep-alive pings land mid-stream too, and must count exactly
        max_total_bytes=SESSION_CAP * (options.sessions * 2 + 8),
        max_sessions=options.sessions * 2 + 8,
        max_producers=max(2, options.concurrency // 3),  # low on purpose: 429s happen
    )
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        server: RunningServer = await nursery.start(partial(serve, settings, stop=stop))
        limits = httpx.Limits(max_connections=options.concurrency * 3)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            await client.get("/health")  # connection pools and lazy imports warmed up
            await client.aclose()
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        baseline_tasks = count_tasks()

        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            runner = Soak(options, server, client)
            async with trio.open_nursery() as inner:
                inner.start_soon(runner.sample_memory)
                await runner.run()
                inner.cancel_scope.cancel()
        tally = runner.tally
        manager = server.manager
        if not await wait_for(lambda: manager.producer_count == 0, 10):
            tally.failures.append(f"{manager.producer_count} producers still running")
        checked = await check(tally)
        sessions_seen = len(tally.outcomes)
        tally.outcomes.clear()  # drop our references: the server must let go of the rest
        runner = None  # type: ignore[assignment]
        if not await wait_for(lambda: len(manager) == 0, options.ttl * 2 + 5):
            tally.failures.append(f"{len(manager)} sessions still registered after the TTL")
        if manager.retained_bytes() or manager.reserved_bytes():
            tally.failures.append(f"{manager.retained_bytes()} bytes still held after the TTL")
        if not await wait_for(lambda: count_tasks() <= baseline_tasks, 10):
            tally.failures.append(f"tasks: {count_tasks()} now, {baseline_tasks} before")
        gc.collect()
        alive = sum(isinstance(obj, StreamSession) for obj in gc.get_objects())
        if alive:
            tally.failures.append(f"{alive} StreamSession objects still alive")
        stop.set()

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print("trio-streams soak")
    print(f"  sessions:           {sessions_seen} (chains {options.sessions}, seed {options.seed})")
    print(f"  resumes:            {tally.resumes}")
    print(f"  deletes:            {tally.deletes}")
    print(f"  replacements:       {tally.replacements}")
    print(f"  viewers:            {tally.viewers}")
    print(f"  slow chains:        {tally.slow_chains}")
    print(f"  429 then retried:   {tally.rejections}")
    print(f"  bytes checked:      {checked}")
    print(f"  peak retained:      {tally.peak_retained} bytes in session logs")
    print(f"  peak reserved:      {tally.peak_reserved} bytes of budget")
    print(f"  peak RSS:           {peak_rss / 1024:.1f} MiB (whole process)")
    print(f"  after TTL:          {len(manager)} sessions, {manager.retained_bytes()} bytes")
    print(f"  elapsed:            {time.monotonic() - started:.1f} s")
    for failure in tally.failures[:50]:
        print(f"  FAIL {failure}")
    print("RESULT:", "FAIL" if tally.failures else "OK")
    return 1 if tally.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300, help="conversations to run")
    parser.add_argument("--seconds", type=float, default=120.0, help="no new ones after this")
    parser.add_argument("--concurrency", type=int, default=40, help="conversations at once")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    parser.add_argument(
        "--ttl", type=float, default=30.0, help="session TTL; longer than a client stays away"
    )
    parser.add_argument("--tps", type=float, default=400.0, help="demo tokens per second")
    args = parser.parse_args(argv)
    options = Options(
        sessions=args.sessions,
        seconds=args.seconds,
        concurrency=args.concurrency,
        seed=args.seed,
        ttl=args.ttl,
        tps=args.tps,
    )
    return trio.run(soak, options)


if __name__ == "__main__":
    sys.exit(main())
