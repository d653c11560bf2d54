"""The local target's file moves: rollback moves newer versions aside (never deletes), and
the canary helpers read answers and /metrics text. No SavedModel is loaded here: version
directories only need their saved_model.pb to count (TF Serving's layout)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from cellship.errors import UsageError
from cellship.release import canary, pipeline
from cellship.release.targets import REJECTED, LocalTarget


def _versions(base: Path, *numbers: int) -> None:
    for n in numbers:
        (base / str(n)).mkdir(parents=True)
        (base / str(n) / "saved_model.pb").write_bytes(b"")
        (base / str(n) / "cellship-manifest.json").write_text(json.dumps({"version": n}))


def test_rollback_moves_the_newer_versions_aside_and_records_it(tmp_path, store):
    repo = tmp_path / "repo"
    _versions(repo / "digits", 1, 2, 3)
    record = pipeline.rollback("digits", to=1, repository=repo, store=store)
    assert (record.kind, record.previous, record.version, record.outcome) == ("rollback", 3, 1, "rollback")
    assert sorted(p.name for p in (repo / "digits").iterdir()) == [REJECTED, "1"]
    aside = sorted(p.name for p in (repo / "digits" / REJECTED).iterdir())
    assert aside == [f"2-{record.id}", f"3-{record.id}"]
    assert (repo / "digits" / REJECTED / f"3-{record.id}" / "saved_model.pb").exists()  # kept
    assert LocalTarget(repo).current("digits").version == 1


def test_rollback_defaults_to_the_version_before_and_refuses_what_is_not_there(tmp_path, store):
    repo = tmp_path / "repo"
    _versions(repo / "digits", 1, 4)
    assert pipeline.rollback("digits", repository=repo, store=store).version == 1
    with pytest.raises(UsageError, match="no version 7.*its versions: 1"):
        pipeline.rollback("digits", to=7, repository=repo, store=store)
    failed = store.list_releases("digits")[-1]
    assert (failed.outcome, failed.failed_step) == ("failed", "rollback")


def test_answers_are_compared_number_by_number():
    assert canary.difference({"predictions": [[0.1, 0.9]]}, {"predictions": [[0.3, 0.6]]}) == \
        pytest.approx(0.3)
    assert canary.difference({"predictions": [[1, 2]]}, {"predictions": [[1]]}) == math.inf
    assert canary.difference({"predictions": ["a"]}, {"predictions": ["a"]}) == 0.0


def test_error_rate_and_p99_come_from_the_prometheus_text():
    registry = CollectorRegistry()
    requests = Counter("cellship_serving_requests", "", ["model", "verb", "code"], registry=registry)
    latency = Histogram("cellship_serving_request_latency_seconds", "", ["model", "verb"],
                        buckets=(0.001, 0.01, 0.1, 1.0), registry=registry)
    for _ in range(98):
        requests.labels("digits", "predict", "200").inc()
        latency.labels("digits", "predict").observe(0.005)
    for _ in range(2):
        requests.labels("digits", "predict", "500").inc()
        latency.labels("digits", "predict").observe(0.5)
    requests.labels("other", "predict", "500").inc()
    total, failed, p99 = canary.p99_ms(generate_latest(registry).decode(), "digits")
    assert (total, failed, p99) == (100, 2, 1000.0)
    assert canary.p99_ms("", "digits") == (0, 0, None)
