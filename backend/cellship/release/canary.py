"""The canary: the new version answering beside the serving one, before any user sees it.

Why a server of the release's own (and not the ``cellship serve`` users are calling): our
server follows TF Serving's default version policy, the newest AVAILABLE version answers
every request that names no version, and version labels are not configured on it (it
answers 404 for ``/labels/``). A version loaded beside the current one in the serving
server would take all of its unversioned traffic the moment it loads, which is a promotion,
not a canary. So the release serves a canary repository, the current version (a symlink
to it, not a copy) and the staged new one, from a server on a free port of this machine;
it compares the two on the example request, sends the example to the new version for a
window and reads the new version's error rate and p99 latency from that server's
``/metrics``, as an operator would read the serving one's. The server runs on a thread of
this process (:class:`cellship.serve.server.BackgroundServer`): TensorFlow is loaded once
for the export check and the canary, and it stops with the release.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from cellship.errors import ReleaseError


@dataclass(frozen=True)
class CanaryLimits:
    """What the canary must meet to be promoted."""

    window_s: float = 5.0  # how long the example is sent to the new version
    max_error_rate: float = 0.0  # failed / all requests to the new version in the window
    max_p99_ms: float = 1000.0
    max_difference: float | None = None  # largest |new - current| on the example; None: report only


@dataclass(frozen=True)
class CanaryReport:
    version: int
    current: int | None
    difference: float | None = None  # largest absolute difference of the answers (inf: shapes differ)
    requests: int = 0
    errors: int = 0
    p99_ms: float | None = None
    failed_check: str | None = None  # smoke | difference | error-rate | p99
    reason: str = ""
    answers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "current": self.current, "difference": self.difference,
                "requests": self.requests, "errors": self.errors, "error_rate": self.error_rate,
                "p99_ms": self.p99_ms, "failed_check": self.failed_check, "reason": self.reason}

    def summary(self) -> str:
        diff = ("no current version to compare with" if self.current is None or self.difference is None
                else f"largest difference from version {self.current}: {self.difference:.6g}")
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f} ms"
        return (f"canary version {self.version}: {diff}; {self.requests} requests, "
                f"{self.errors} failed ({self.error_rate:.1%}), p99 {p99}")


def _post(url: str, body: Mapping[str, Any], timeout: float = 30.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read())
        except ValueError:
            return err.code, {"error": err.reason}
    except OSError as err:
        return 0, {"error": str(err)}


def _numbers(value: Any) -> list[float] | None:
    """The numbers of an answer, flattened in order (None where it holds anything else)."""
    out: list[float] = []

    def walk(v: Any) -> bool:
        if isinstance(v, Mapping):
            return all(walk(v[k]) for k in sorted(v))
        if isinstance(v, list):
            return all(walk(x) for x in v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
            return True
        return False

    return out if walk(value) else None


def difference(new: Any, current: Any) -> float:
    """Largest absolute difference of two answers; inf when they are not alike in shape."""
    a, b = _numbers(new), _numbers(current)
    if a is None or b is None:
        return 0.0 if new == current else math.inf
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0)


@dataclass(frozen=True)
class Counts:
    """What a server's /metrics says of one model so far: requests, failed requests and
    the latency histogram (upper bound in seconds -> cumulative count)."""

    total: int = 0
    failed: int = 0
    buckets: Mapping[float, float] = field(default_factory=dict)

    def __add__(self, other: "Counts") -> "Counts":
        bounds = set(self.buckets) | set(other.buckets)
        return Counts(self.total + other.total, self.failed + other.failed,
                      {b: self.buckets.get(b, 0.0) + other.buckets.get(b, 0.0) for b in bounds})

    def __sub__(self, earlier: "Counts") -> "Counts":
        """What happened between ``earlier`` and this reading of the same server."""
        return Counts(self.total - earlier.total, self.failed - earlier.failed,
                      {b: v - earlier.buckets.get(b, 0.0) for b, v in self.buckets.items()})

    @property
    def p99_ms(self) -> float | None:
        """The upper bound of the latency bucket holding the 99th percentile, as
        Prometheus' histogram_quantile reads it without interpolation (None: no requests)."""
        count = self.buckets.get(math.inf, 0.0)
        if not count:
            return None
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= 0.99 * count:
                return bound * 1000.0
        return None


def read_counts(metrics_text: str, model: str) -> Counts:
    """:class:`Counts` of ``model`` from a server's Prometheus text, read with
    prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    total = failed = 0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            if sample.name == "cellship_serving_requests_total":
                total += int(sample.value)
                if not sample.labels.get("code", "").startswith("2"):
                    failed += int(sample.value)
            elif sample.name == "cellship_serving_request_latency_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Counts(total, failed, buckets)


def p99_ms(metrics_text: str, model: str) -> tuple[int, int, float | None]:
    """(requests, failed requests, p99 latency in ms) of ``model`` from a server's
    Prometheus text (see :class:`Counts`)."""
    counts = read_counts(metrics_text, model)
    return counts.total, counts.failed, counts.p99_ms


def judge(report: CanaryReport, limits: CanaryLimits) -> CanaryReport:
    """``report`` with the first check it fails against ``limits`` named (difference, then
    error rate, then p99), or as it is when it meets them all."""
    diff, total, failed, p99 = report.difference, report.requests, report.errors, report.p99_ms
    if limits.max_difference is not None and diff is not None and diff > limits.max_difference:
        return replace(report, failed_check="difference",
                       reason=f"its answer to the example differs from version {report.current}'s "
                              f"by {diff:.6g} (more than --max-difference "
                              f"{limits.max_difference:g})")
    rate = failed / total if total else 0.0
    if rate > limits.max_error_rate:
        return replace(report, failed_check="error-rate",
                       reason=f"{failed} of {total} requests failed ({rate:.1%}, more than "
                              f"--max-error-rate {limits.max_error_rate:.1%})")
    if p99 is not None and p99 > limits.max_p99_ms:
        return replace(report, failed_check="p99",
                       reason=f"its p99 latency was {p99:.1f} ms (more than --max-p99-ms "
                              f"{limits.max_p99_ms:g})")
    return report


def verb_of(example: Mapping[str, Any]) -> str:
    """The TF Serving verb a request body is for."""
    return "predict" if ("instances" in example or "inputs" in example) else "regress"


def _wait_available(url: str, versions: list[int], timeout: float) -> None:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                last = json.loads(response.read())
            states = {int(s["version"]): s["state"] for s in last.get("model_version_status", [])}
            if all(states.get(v) == "AVAILABLE" for v in versions):
                return
            broken = [s for s in last.get("model_version_status", [])
                      if s["state"] == "END" and s["status"].get("error_message")]
            if broken:
                raise ReleaseError(f"The canary server could not load version "
                                   f"{broken[0]['version']}: {broken[0]['status']['error_message']}",
                                   "canary")
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise ReleaseError(f"The canary server did not load versions {versions} within "
                       f"{timeout:.0f} s (last status: {last}).", "canary")


def run_canary(canary_base: Path, model: str, new: int, current: int | None,
               example: Mapping[str, Any] | None, limits: CanaryLimits) -> CanaryReport:
    """Serve ``canary_base`` (versions ``current`` and ``new`` of ``model``), smoke-test and
    watch the new version; the report names the first check that failed, if any."""
    from cellship.serve.server import BackgroundServer, ServingConfig

    with BackgroundServer({model: canary_base}, ServingConfig(port=0, poll_interval_s=0.2),
                          log=lambda _text: None) as server:
        base = f"{server.url}/v1/models/{model}"
        _wait_available(base, [v for v in (current, new) if v is not None], 120.0)
        if example is None:
            return CanaryReport(new, current, reason="no --example request: smoke test and "
                                "window skipped")
        verb = verb_of(example)
        code, answer = _post(f"{base}/versions/{new}:{verb}", example)
        if code != 200:
            said = answer.get("error", answer) if isinstance(answer, dict) else answer
            return CanaryReport(new, current, requests=1, errors=1, failed_check="smoke",
                                reason=f"the example request to version {new} answered {code}: {said}")
        diff = None
        answers: dict[str, Any] = {"new": answer}
        if current is not None:
            old_code, old_answer = _post(f"{base}/versions/{current}:{verb}", example)
            if old_code == 200:
                diff = difference(answer, old_answer)
                answers["current"] = old_answer
        end = time.monotonic() + limits.window_s
        while time.monotonic() < end:
            _post(f"{base}/versions/{new}:{verb}", example)
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            total, failed, p99 = p99_ms(response.read().decode(), model)
    return judge(CanaryReport(new, current, diff, total, failed, p99, answers=answers), limits)
