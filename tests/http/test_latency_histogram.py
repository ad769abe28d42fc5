"""The append-to-read histogram is exported exactly as ``prometheus_client`` exports one.

It is observed once per chunk a live reader sends, so it is a lean histogram of our own
(:class:`trio_streams.http.metrics.LatencyHistogram`); what a scraper reads must not change:
the same ``_bucket`` lines with the same ``le`` bounds, ``_count`` and ``_sum``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from trio_streams.http.metrics import LATENCY_BUCKETS, LatencyHistogram

NAME = "trio_streams_append_to_read_seconds"


def test_exposition_matches_prometheus_clients_histogram() -> None:
    theirs_registry, ours_registry = CollectorRegistry(), CollectorRegistry()
    theirs = Histogram(NAME, "doc", buckets=LATENCY_BUCKETS, registry=theirs_registry)
    ours = LatencyHistogram(NAME, "doc", LATENCY_BUCKETS)
    ours_registry.register(ours)
    # On a bound, between bounds, below the first and above the last.
    for value in (0.0, 0.0001, 0.0005, 0.0007, 0.001, 0.3, 2.5, 7.0, 0.0005):
        theirs.observe(value)
        ours.observe(value)
    expected = [
        line
        for line in generate_latest(theirs_registry).decode().splitlines()
        if "_created" not in line  # a timestamp of creation: ours has none
    ]
    assert generate_latest(ours_registry).decode().splitlines() == expected
    assert f'{NAME}_bucket{{le="0.0005"}} 4.0' in expected  # 0, 0.0001 and 0.0005 twice
