"""Prometheus metrics of one server: requests, latency, batch sizes, queue depth.

A registry per server (not the process-wide default) so several servers in one process,
as in tests and the benchmark, each count only their own traffic. Served at ``/metrics``
and at TF Serving's ``/monitoring/prometheus/metrics``.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cellship_serving_requests", "Requests answered, by model, verb and HTTP status.",
            ["model", "verb", "code"], registry=self.registry)
        self.latency = Histogram(
            "cellship_serving_request_latency_seconds",
            "Time from a request's arrival to its answer, by model and verb.",
            ["model", "verb"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(
            "cellship_serving_batch_size", "Rows per model call (dynamic batching).",
            ["model", "version"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.queued = Gauge("cellship_serving_queued_rows",
                            "Rows waiting for a model call, over all models.",
                            registry=self.registry)
        self.versions = Gauge("cellship_serving_available_versions",
                              "Versions of each model that answer requests.", ["model"],
                              registry=self.registry)

    def observe_request(self, model: str, verb: str, code: int, seconds: float) -> None:
        self.requests.labels(model, verb, str(code)).inc()
        self.latency.labels(model, verb).observe(seconds)

    def observe_batch(self, model: str, version: int, rows: int) -> None:
        self.batch_size.labels(model, str(version)).observe(rows)

    def render(self, queued: Callable[[], int], versions: dict[str, int]) -> bytes:
        self.queued.set(queued())
        for model, count in versions.items():
            self.versions.labels(model).set(count)
        return generate_latest(self.registry)
