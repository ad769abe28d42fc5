"""Network faults on demand for the in-process transport: cuts and stalls, deterministic.

A fault is a rule the test sets before (or while) a request is answered: *the next
response to* ``/v1/stream`` *is cut at byte 4,000*, *every response stalls after its third
event*. Each response the transport serves is a :class:`Connection` the test can also cut
or stall by hand, at once, wherever it is. Nothing depends on timing or on how the app
chunks its writes: a cut at byte N delivers exactly N bytes of the body, a cut after event
K exactly the bytes of the first K events, on every run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from trio_streams.core.sse_split import EventSplitter


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to a response: it is cut (the peer closes) or it stalls (goes silent).

    Exactly one of ``at_byte`` and ``after_events`` is set. ``after_events`` counts SSE
    events that carry data (``: ping`` comments are not events).
    """

    at_byte: int | None = None
    after_events: int | None = None
    #: ``True``: nothing more arrives, and the connection stays open; the client's read
    #: timeout ends it (on trio's clock) as it would on a dead network.
    stall: bool = False

    def __post_init__(self) -> None:
        if (self.at_byte is None) == (self.after_events is None):
            raise ValueError("a fault needs exactly one of at_byte and after_events")
        if (self.at_byte or 0) < 0 or (self.after_events or 0) < 0:
            raise ValueError("at_byte and after_events count from 0")


@dataclass(slots=True)
class _Rule:
    fault: Fault
    #: Requests to this path or below it (without the query); ``""``: every request.
    path: str
    method: str | None
    #: Responses it still applies to (``None``: every matching one).
    remaining: int | None


@dataclass(eq=False, slots=True)
class Connection:
    """One request and its response, as the transport served them.

    ``cut()`` and ``stall()`` act at once on a response being read; the bytes already
    delivered stay delivered.
    """

    method: str
    path: str
    query: str
    status: int | None = None
    #: Body bytes the client has received.
    delivered: int = 0
    #: Data-carrying SSE events wholly received.
    events: int = 0
    fault: Fault | None = None
    #: Set once the response is over for the client, however it ended.
    closed: trio.Event = field(default_factory=trio.Event)
    #: How it ended: ``"complete"``, ``"cut"``, ``"stalled"`` (then timed out or closed),
    #: ``"closed by client"``; ``None`` while open.
    ending: str | None = None
    _splitter: EventSplitter = field(default_factory=EventSplitter)
    #: The transport's wait for the app's next bytes: cancelled by a cut or stall.
    waiting: trio.CancelScope | None = None

    def cut(self) -> None:
        """Close this connection now, as a peer that goes away mid-response."""
        if self.fault is None or self.fault.stall:
            self.fault = Fault(at_byte=self.delivered)
        self._wake()

    def stall(self) -> None:
        """Deliver nothing more on this connection (it stays open)."""
        self.fault = Fault(at_byte=self.delivered, stall=True)
        self._wake()

    def _wake(self) -> None:
        if self.waiting is not None:
            self.waiting.cancel()

    def limit_for(self, chunk: bytes) -> int | None:
        """How many bytes of ``chunk`` may pass before the fault strikes (``None``: all).

        Counts the events the allowed bytes complete.
        """
        fault = self.fault
        if fault is None:
            self._count(chunk)
            return None
        if fault.at_byte is not None:
            allowed = max(0, fault.at_byte - self.delivered)
            if allowed >= len(chunk) and fault.at_byte > self.delivered + len(chunk):
                self._count(chunk)
                return None
            allowed = min(allowed, len(chunk))
            self._count(chunk[:allowed])
            return allowed
        assert fault.after_events is not None
        if self.events >= fault.after_events:
            return 0
        for event in self._splitter.feed(chunk):
            if event.data is not None:
                self.events += 1
                if self.events >= fault.after_events:
                    # The splitter has seen every delivered byte: its offsets are the stream's.
                    return event.offset - self.delivered
        return None

    def _count(self, data: bytes) -> None:
        self.events += sum(1 for event in self._splitter.feed(data) if event.data is not None)


class Network:
    """The faults the transport applies, and every connection it has served.

    ``cut(...)`` and ``stall(...)`` add a rule for the next matching responses (``times``
    of them; ``None``: all from now on). Rules are matched in the order they were added.
    """

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self.connections: list[Connection] = []

    def cut(
        self,
        *,
        at_byte: int | None = None,
        after_events: int | None = None,
        path: str = "",
        method: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Cut the next ``times`` responses to ``path`` after ``at_byte`` / ``after_events``.

        ``path`` matches itself and the paths below it: ``/v1/stream`` matches
        ``/v1/stream/chat-1`` but not ``/v1/streams/lookup``.
        """
        self._add(Fault(at_byte, after_events), path, method, times)

    def stall(
        self,
        *,
        at_byte: int | None = None,
        after_events: int | None = None,
        path: str = "",
        method: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` responses to ``path`` go silent there (no close)."""
        self._add(Fault(at_byte, after_events, stall=True), path, method, times)

    def clear(self) -> None:
        """Forget the rules not used yet."""
        self._rules.clear()

    def cut_all(self) -> None:
        """Cut every response being read now (a network outage, or a server crash)."""
        for connection in self.open_connections():
            connection.cut()

    def open_connections(self, path: str = "") -> list[Connection]:
        """The responses not over yet, to requests for ``path`` or below it."""
        return [
            connection
            for connection in self.connections
            if not connection.closed.is_set() and under(connection.path, path)
        ]

    @property
    def cuts(self) -> int:
        """Connections that ended in a cut or a stall."""
        return sum(1 for c in self.connections if c.ending in ("cut", "stalled"))

    def _add(self, fault: Fault, path: str, method: str | None, times: int | None) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None: every response)")
        self._rules.append(_Rule(fault, path, method, times))

    def open(self, method: str, path: str, query: str) -> Connection:
        """Record a new connection, with the first rule that matches it."""
        connection = Connection(method, path, query)
        for rule in self._rules:
            if under(path, rule.path) and rule.method in (None, method):
                connection.fault = rule.fault
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                break
        self.connections.append(connection)
        return connection


def under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it (``""`` is above every path)."""
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")
