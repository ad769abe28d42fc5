"""``GET /metrics``: Prometheus metrics of one app, through ``prometheus-client``.

Each app has its own :class:`~prometheus_client.CollectorRegistry` rather than the global
one, so several servers in one process (tests, embedding) never clash. Gauges about
sessions are computed from the manager at scrape time (no bookkeeping on the hot path);
counters the manager keeps as plain integers (:class:`~trio_streams.core.limits.ManagerStats`)
are exported the same way. Only the HTTP-level events (resumes, lost offsets, the
append-to-read latency) are counted here, as they happen. The latency is observed once per
chunk a live reader sends, so it is a :class:`LatencyHistogram` of its own (a bucket index
and two additions) rather than ``prometheus_client``'s ``Histogram``, whose ``observe``
takes a lock per value and per bucket, several times the cost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from quart import Response, current_app

from trio_streams.core.manager import SessionManager

EXTENSION_KEY = "trio_streams.http.metrics"
#: From sub-millisecond wake-ups to a reader stalled by a slow client.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The registry of one app and the events the HTTP layer reports into it."""

    def __init__(self, manager: SessionManager) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ManagerCollector(manager))
        self.resumes = Counter(
            "trio_streams_resumes",
            "Stream reads that started past offset 0 (a client resuming).",
            registry=self.registry,
        )
        self.lost_offsets = Counter(
            "trio_streams_lost_offsets",
            "Reads refused or ended because their offset was dropped by the session cap.",
            registry=self.registry,
        )
        self.append_to_read = LatencyHistogram(
            "trio_streams_append_to_read_seconds",
            "Time from the append that completed a chunk to a live reader handing it to "
            "the HTTP server.",
            LATENCY_BUCKETS,
        )
        self.registry.register(self.append_to_read)

    def response(self) -> Response:
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST)


def current() -> Metrics | None:
    """The metrics of the app serving the current request, if it has any."""
    metrics: Metrics | None = current_app.extensions.get(EXTENSION_KEY)
    return metrics


class LatencyHistogram(Collector):
    """A Prometheus histogram of seconds, cheap to observe from the one trio thread.

    Exported like ``prometheus_client``'s (``_bucket`` with ``le``, ``_count``, ``_sum``),
    cumulated at scrape time.
    """

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        #: Per bucket (``value <= bound``), the last one for values above every bound.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative = list(accumulate(self.counts))
        # The bounds as prometheus_client writes them (its floatToGoString, for these).
        edges = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(edges, cumulative, strict=True)),
            sum_value=self.sum,
        )


class ManagerCollector(Collector):
    """Session gauges and manager counters, read from the manager at scrape time."""

    def __init__(self, manager: SessionManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        manager = self._manager
        sessions = manager.sessions()
        live = sum(1 for s in sessions if not s.is_done)
        registered_finished = sum(
            1 for s in sessions if s.is_done and manager.get(s.conversation_id) is s
        )
        states = GaugeMetricFamily(
            "trio_streams_sessions", "Sessions in memory, by state.", labels=["state"]
        )
        states.add_metric(["live"], live)
        states.add_metric(["finished"], registered_finished)
        yield states
        yield GaugeMetricFamily(
            "trio_streams_buffered_bytes",
            "Bytes retained by every session's log.",
            value=sum(s.retained_bytes for s in sessions),
        )
        yield GaugeMetricFamily(
            "trio_streams_reserved_bytes",
            "Bytes the global budget counts (a running session's cap, a finished one's bytes).",
            value=manager.reserved_bytes(),
        )
        budget = manager.limits.max_total_bytes
        if budget is not None:
            yield GaugeMetricFamily(
                "trio_streams_budget_bytes", "The global byte budget.", value=budget
            )
        yield GaugeMetricFamily(
            "trio_streams_readers",
            "Readers attached to sessions (HTTP responses following a stream).",
            value=sum(s.reader_count for s in sessions),
        )
        yield GaugeMetricFamily(
            "trio_streams_producers", "Producers running.", value=manager.producer_count
        )
        stats = manager.stats
        yield CounterMetricFamily(
            "trio_streams_cancels",
            "Producers stopped by DELETE or replacement.",
            value=stats.cancels,
        )
        evictions = CounterMetricFamily(
            "trio_streams_evictions", "Sessions evicted, by reason.", labels=["reason"]
        )
        evictions.add_metric(["ttl"], stats.evictions_ttl)
        evictions.add_metric(["capacity"], stats.evictions_capacity)
        yield evictions
        rejections = CounterMetricFamily(
            "trio_streams_rejections",
            "New streams refused with 429, by the limit that was full.",
            labels=["limit"],
        )
        for limit in ("bytes", "sessions", "producers"):
            rejections.add_metric([limit], stats.rejections.get(limit, 0))
        yield rejections
