"""A hypothesis state machine: the manager and its sessions against a reference model.

Random starts (named, anonymous, by two API-key owners), writes, finishes, DELETEs,
reads and clock jumps drive a real :class:`SessionManager` with small limits; after every
step its sessions, bytes, producers and lookups must match a plain-Python model of the
contract (SPEC §1-2 and the limits of limits.py), and the memory bound must hold.

The manager runs under ``trio.run`` with a :class:`trio.testing.MockClock` in a thread of
its own for the whole run; each step is sent to it through ``trio.from_thread``. Time moves
only when a step jumps the clock, so garbage collection is as deterministic as the rest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio
import trio.testing
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_streams.core.limits import CapacityError, ConversationOwnedError, Limits
from trio_streams.core.manager import SessionManager
from trio_streams.core.producer import StreamWriter
from trio_streams.core.session import OffsetLostError, StreamSession

CAP = 40
TTL = 10.0
GC_INTERVAL = 3.0
IDS = ["a", "b", "c", "d", "e", "f", "a::m1", "a::m2"]
OWNERS = ["key:1", "key:2"]

T = TypeVar("T")


class Scripted:
    """A producer that writes what the test sends it and finishes when told."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[bytes](math.inf)

    async def __call__(self, writer: StreamWriter) -> None:
        async with self.receive:
            async for data in self.receive:
                await writer.write(data)


@dataclass(eq=False)
class Expected:
    """The model of one session."""

    owner: str | None
    producer: Scripted
    data: bytearray = field(default_factory=bytearray)
    running: bool = True
    finished_at: float | None = None
    registered: bool = True
    #: Readers that attached and then stopped reading (clients that went quiet).
    holders: int = 0
    released: bool = False

    @property
    def retained(self) -> int:
        return 0 if self.released else min(len(self.data), CAP)


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.sessions: dict[str, Expected] = {}
        # What the budget counts besides running streams, oldest first: registered finished
        # sessions, and unregistered ones that a quiet reader still holds.
        self.finished_order: list[Expected] = []
        self.anonymous: list[Expected] = []
        self.held: list[tuple[Expected, AsyncGenerator[bytes, None]]] = []
        self.next_gc = GC_INTERVAL
        self.evictions = 0

    @initialize(
        budget=st.integers(min_value=CAP, max_value=6 * CAP),
        max_sessions=st.integers(min_value=1, max_value=6),
        max_producers=st.integers(min_value=1, max_value=5),
    )
    def start_the_manager(self, budget: int, max_sessions: int, max_producers: int) -> None:
        self.budget, self.max_sessions, self.max_producers = budget, max_sessions, max_producers
        self.clock = trio.testing.MockClock()
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=trio.run, args=(self._serve,), kwargs={"clock": self.clock}
        )
        self.thread.start()
        self.ready.wait()
        self.started = True

    async def _serve(self) -> None:
        limits = Limits(
            max_total_bytes=self.budget,
            max_sessions=self.max_sessions,
            max_producers=self.max_producers,
        )
        async with SessionManager(
            max_bytes=CAP,
            ttl=TTL,
            gc_interval=GC_INTERVAL,
            ping_interval=None,
            limits=limits,
            event_ids=False,  # the model is of the raw bytes; stamping has its own tests
        ) as manager:
            self.manager = manager
            self.token = trio.lowlevel.current_trio_token()
            self.stop = trio.Event()
            self.ready.set()
            await self.stop.wait()

    def teardown(self) -> None:
        if self.started:
            self.call(self._shutdown)
            self.thread.join()

    async def _shutdown(self) -> None:
        self.manager.shutdown()
        self.stop.set()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def settle(self) -> None:
        self.call(trio.testing.wait_all_tasks_blocked)

    # -- the model of admission (limits.py, in plain words) ------------------------------

    def running(self) -> list[Expected]:
        return [s for s in [*self.sessions.values(), *self.anonymous] if s.running]

    def evict_oldest(self, keep: Expected | None, *, registered_only: bool) -> bool:
        self.prune()
        for expected in self.finished_order:
            if expected is keep or (registered_only and not expected.registered):
                continue
            if not expected.registered:
                event("evicted an unregistered session a quiet reader held")
            expected.released = True  # its bytes are freed, its quiet readers end
            self.finished_order.remove(expected)
            if expected.registered:
                self.forget(next(c for c, e in self.sessions.items() if e is expected))
            self.evictions += 1
            return True
        return False

    def forget(self, cid: str) -> None:
        """The id no longer finds the session; a quiet reader may still hold it."""
        expected = self.sessions.pop(cid)
        expected.registered = False
        self.retire(expected)
        self.prune()

    def retire(self, expected: Expected) -> None:
        if expected in self.finished_order:
            return
        if expected.registered or (expected.retained and expected.holders):
            self.finished_order.append(expected)

    def prune(self) -> None:
        self.finished_order = [
            e for e in self.finished_order if e.registered or (e.holders and not e.released)
        ]

    def reserved(self) -> int:
        self.prune()
        finished = sum(e.retained for e in self.finished_order)
        return len(self.running()) * CAP + finished

    def admit(self, cid: str | None, owner: str) -> str | None:
        """Apply the evictions the contract calls for; the refusal reason, if refused."""
        previous = self.sessions.get(cid) if cid else None
        if previous is not None and previous.owner != owner:
            return "owned"
        if len([s for s in self.running() if s is not previous]) >= self.max_producers:
            return "producers"
        if cid is not None:
            while len(self.sessions) - (previous is not None) >= self.max_sessions:
                if not self.evict_oldest(previous, registered_only=True):
                    return "sessions"
        freed = 0
        if previous is not None:  # its share goes, but not what a quiet reader holds
            counted_now = CAP if previous.running else previous.retained
            freed = counted_now - (previous.retained if previous.holders else 0)
        while self.reserved() - freed + CAP > self.budget:
            if not self.evict_oldest(previous, registered_only=False):
                return "bytes"
        return None

    # -- rules -------------------------------------------------------------------------------

    @rule(cid=st.one_of(st.none(), st.sampled_from(IDS)), owner=st.sampled_from(OWNERS))
    def start(self, cid: str | None, owner: str) -> None:
        evictions_before = self.evictions
        refusal = self.admit(cid, owner)
        event(f"start: {refusal or 'admitted'}")
        if self.evictions > evictions_before:
            event("start: evicted finished sessions for room")
        producer = Scripted()

        async def start() -> StreamSession | str:
            try:
                return self.manager.start(cid, producer, owner=owner)
            except CapacityError as error:
                return "capacity:" + error.reason
            except ConversationOwnedError:
                return "owned"

        outcome = self.call(start)
        if refusal is None:
            assert isinstance(outcome, StreamSession), outcome
            expected = Expected(owner, producer)
            if cid is None:
                expected.registered = False
                self.anonymous.append(expected)
            else:
                previous = self.sessions.get(cid)
                if previous is not None:  # replaced: cancelled and finalized
                    previous.running = False
                    self.forget(cid)
                self.sessions[cid] = expected
        else:
            assert isinstance(outcome, str), (refusal, outcome)
            assert outcome == "owned" if refusal == "owned" else outcome.startswith("capacity")
        self.settle()

    def pick(
        self, index: int, *, running: bool | None = None, with_data: bool = False
    ) -> str | None:
        """One of the registered ids (so rules act on sessions that exist), or None."""
        eligible = [
            cid
            for cid, e in sorted(self.sessions.items())
            if (running is None or e.running == running) and (e.data or not with_data)
        ]
        return eligible[index % len(eligible)] if eligible else None

    @rule(index=st.integers(min_value=0, max_value=7), data=st.binary(min_size=1, max_size=30))
    def write(self, index: int, data: bytes) -> None:
        cid = self.pick(index, running=True)
        if cid is None:
            return
        expected = self.sessions[cid]
        self.call(expected.producer.send.send, data)
        expected.data += data
        self.settle()

    @precondition(lambda self: any(s.running for s in self.anonymous))
    @rule(data=st.binary(min_size=1, max_size=30))
    def write_anonymous(self, data: bytes) -> None:
        expected = next(s for s in self.anonymous if s.running)
        self.call(expected.producer.send.send, data)
        expected.data += data
        self.settle()

    @rule(index=st.integers(min_value=0, max_value=7))
    def finish(self, index: int) -> None:
        cid = self.pick(index, running=True)
        if cid is None:
            return
        expected = self.sessions[cid]
        self.call(expected.producer.send.aclose)
        self.settle()
        expected.running = False
        expected.finished_at = self.clock.current_time()
        self.retire(expected)

    @precondition(lambda self: any(s.running for s in self.anonymous))
    @rule()
    def finish_anonymous(self) -> None:
        expected = next(s for s in self.anonymous if s.running)
        self.call(expected.producer.send.aclose)
        self.settle()
        expected.running = False

    @rule(cid=st.sampled_from(IDS))
    def stop(self, cid: str) -> None:
        async def stop() -> bool:
            return self.manager.stop(cid)

        assert self.call(stop) == (cid in self.sessions)
        if cid in self.sessions:
            self.sessions[cid].running = False
            self.forget(cid)
        self.settle()

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.0, 3.0, 7.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.jump(seconds)
        self.settle()
        now = self.clock.current_time()
        if now >= self.next_gc:  # the collector wakes once, late, and sleeps again
            self.next_gc = now + GC_INTERVAL
            for cid, expected in list(self.sessions.items()):
                finished_at = expected.finished_at
                if finished_at is not None and finished_at <= now - TTL:
                    self.forget(cid)

    @rule(cid=st.sampled_from(IDS), offset=st.integers(min_value=0, max_value=120))
    def read(self, cid: str, offset: int) -> None:
        expected = self.sessions.get(cid)
        session = self.manager.get(cid)
        if expected is None:
            assert session is None
            return
        assert session is not None

        async def read_available() -> bytes | None:
            got: list[bytes] = []

            async def reader() -> None:
                async for chunk in session.read(offset):
                    got.append(chunk)

            lost = False
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(reader)
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()
            except* OffsetLostError:
                lost = True
            return None if lost else b"".join(got)

        got = self.call(read_available)
        dropped = len(expected.data) - expected.retained
        if offset < dropped:
            assert got is None
        else:
            assert got == bytes(expected.data[offset:])

    @precondition(lambda self: len(self.held) < 4)
    @rule(index=st.integers(min_value=0, max_value=7))
    def attach_quiet_reader(self, index: int) -> None:
        """A client reads the first chunk, then goes quiet with its connection open."""
        cid = self.pick(index, with_data=True)
        if cid is None:
            return
        expected, session = self.sessions[cid], self.manager.get(cid)
        assert session is not None

        dropped = len(expected.data) - expected.retained

        async def attach() -> AsyncGenerator[bytes, None]:
            reader = session.read(dropped)
            assert await reader.__anext__() == bytes(expected.data[dropped:])
            return reader

        self.held.append((expected, self.call(attach)))
        event("quiet reader attached")
        expected.holders += 1

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(min_value=0, max_value=3))
    def quiet_reader_leaves(self, index: int) -> None:
        expected, reader = self.held.pop(index % len(self.held))
        self.call(reader.aclose)
        expected.holders -= 1
        self.prune()

    # -- invariants ----------------------------------------------------------------------------

    @precondition(lambda self: self.started)
    @invariant()
    def sessions_match_the_model(self) -> None:
        for cid in IDS:
            session, expected = self.manager.get(cid), self.sessions.get(cid)
            assert (session is None) == (expected is None), cid
            if session is not None and expected is not None:
                assert session.is_done == (not expected.running)
                assert session.total_bytes == len(expected.data)
                assert session.retained_bytes == expected.retained
                assert session.owner == expected.owner
        assert len(self.manager) == len(self.sessions)
        assert self.manager.producer_count == len(self.running())
        assert self.manager.stats.evictions_capacity == self.evictions

    @precondition(lambda self: self.started)
    @invariant()
    def memory_stays_within_the_budget(self) -> None:
        assert self.manager.retained_bytes() <= self.manager.reserved_bytes() <= self.budget
        assert self.manager.reserved_bytes() == self.reserved()

    @precondition(lambda self: self.started)
    @invariant()
    def lookup_finds_ids_and_variants_only(self) -> None:
        found = {info.conversation_id for info in self.manager.lookup(["a", "f"])}
        assert found == {cid for cid in self.sessions if cid in ("a", "f") or cid.startswith("a::")}


ManagerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
test_manager_against_the_model = ManagerMachine.TestCase
