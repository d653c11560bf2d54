"""Helpers the cluster tier's test modules share."""

from __future__ import annotations

import time
from typing import Any, Callable


def options(cluster: Any, namespace: str, **more: Any) -> dict[str, Any]:
    """The kubernetes options of a job on the test cluster (image already in the node)."""
    return {"image": cluster.image, "namespace": namespace, "image_pull_policy": "Never",
            "context": cluster.context} | more


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5):
    """The predicate's first truthy value, or an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
