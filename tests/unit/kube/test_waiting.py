"""Waiting with watch streams (cellship.kube.waiting) against the fake's watches: woken by
changes rather than polls, reopened when a stream ends early, and falling back to lists
where RBAC refuses to watch."""

from __future__ import annotations

import itertools
import threading
import time

from cellship.kube.errors import KubernetesForbidden
from cellship.kube.waiting import observe, wait_changed, wait_gone
from tests.unit.kube_fake import FakeKube

NS = "ml"


def config_map(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NS, "labels": labels}}


def later(seconds: float, action) -> None:
    threading.Timer(seconds, action).start()


def test_wait_gone_wakes_at_the_deletion_not_at_a_poll() -> None:
    kube = FakeKube()
    kube.create(config_map("job"))
    later(0.1, lambda: kube.delete("ConfigMap", NS, "job"))
    started = time.monotonic()
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=10)
    assert time.monotonic() - started < 2
    assert [c for c in kube.calls if c[0] in ("watch", "list")] == [("watch", "ConfigMap", NS)]
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=0)  # gone already: at once


def test_wait_gone_says_no_at_the_timeout() -> None:
    kube = FakeKube()
    kube.create(config_map("job"))
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=0.05) is False


def test_observe_sees_changes_and_looks_again_every_so_often() -> None:
    kube = FakeKube()
    kube.create(config_map("a", team="x"))
    later(0.05, lambda: kube.create(config_map("b", team="x")))
    later(0.1, lambda: kube.create(config_map("c", team="y")))
    seen = [sorted(n for _, n in state) for state in
            observe(kube, "ConfigMap", NS, label_selector="team=x", timeout=0.4, every=0.1)]
    assert seen[0] == ["a"] and ["a", "b"] in seen
    assert all("c" not in names for names in seen)
    assert len(seen) >= 4  # the first look, the change, and the looks every 0.1 s


def test_a_watch_that_ends_early_is_opened_again() -> None:
    class Flaky(FakeKube):
        opened = 0

        def watch(self, kind, namespace, *, name=None, label_selector="", timeout=60.0):
            self.opened += 1
            stream = super().watch(kind, namespace, name=name, label_selector=label_selector,
                                   timeout=timeout)
            if self.opened == 1:
                return itertools.islice(stream, 2)  # the server closed it after the list
            return stream

    kube = Flaky()
    kube.create(config_map("job"))
    kube.calls.clear()
    later(0.1, lambda: kube.delete("ConfigMap", NS, "job"))
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=5)
    assert kube.opened >= 2


def test_who_may_not_watch_is_served_by_lists(monkeypatch) -> None:
    monkeypatch.setattr("cellship.kube.waiting.FALLBACK_POLL_SECONDS", 0.02)
    kube = FakeKube()
    kube.create(config_map("job"))
    kube.fail_on[("watch", "ConfigMap")] = KubernetesForbidden(
        "Kubernetes refused: you may not watch configmaps in namespace ml (403 Forbidden).",
        "watch", "configmaps", NS)
    later(0.05, lambda: kube.delete("ConfigMap", NS, "job"))
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=5)
    kube.create(config_map("job"))
    kube.fail_on[("watch", "ConfigMap")] = KubernetesForbidden(  # the list in front of it
        "Kubernetes refused: you may not list configmaps in namespace ml (403 Forbidden).",
        "list", "configmaps", NS)
    later(0.05, lambda: kube.delete("ConfigMap", NS, "job"))
    assert wait_gone(kube, "ConfigMap", NS, "job", timeout=5)  # by gets, as before watches


def test_wait_changed() -> None:
    kube = FakeKube()
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": NS}})
    assert wait_changed(kube, "Pod", NS, name="p", timeout=0.05) is False
    later(0.05, lambda: kube.set_pod(NS, "p", {"phase": "Running"}))
    assert wait_changed(kube, "Pod", NS, name="p", timeout=5) is True
