"""Chaos on the real cluster with two nodes (issue 16 item 2): faults injected into a
2-worker MultiWorkerMirrored job with ``--max-restarts 2`` and ``cellship.job.backup()``.

Each job must complete every epoch, resuming from the last backup after each fault (or fail
with a sentence naming the cause), the cell's log (``job.follow``) must say what happened,
and nothing may be left behind. Faults per job, two at most (each costs every replica one
restart of its budget: a MultiWorkerMirrored cluster stops as a whole when one replica goes):

* kill -9 of a worker's container, then a restart of the API server while it trains;
* a worker's pod deleted (it is made again on the other node), then that node powered off
  (kubelet, containerd and its containers SIGKILLed; made again on the surviving node);
* a worker over its memory limit (OOM kill), then its job dir filled past ``--disk-limit``
  (the kubelet evicts the pod; it is made again).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable

import pytest

import cellship
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.timeout(900)]

EPOCHS = 12  # each epoch ~1.7 s: long enough to inject a second fault after the first
# Worker 1 goes over its memory limit once, at the end of epoch 3 of its first attempt (a
# marker in its job dir, which survives restarts in place, says it did).
OOM_ONCE = '''
        import os
        marker = os.path.join(os.environ["CELLSHIP_JOB_DIR"], "hogged")
        if cellship.job.task_index() == 1 and epoch == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            print("hogging memory", flush=True)
            hog = b"x" * (3 << 30)
'''


def program(extra: str = "", epochs: int = EPOCHS) -> str:
    text = TRAIN_DIGITS.format(epochs=epochs, sleep=1.5)
    return text.replace("        import time\n", "        import time\n" + extra.lstrip("\n"), 1)


class Cell:
    """A job followed as the cell follows it (on a thread, so the test can act meanwhile)."""

    def __init__(self, job: cellship.Job) -> None:
        self.job = job
        self.lines: list[tuple[str, str]] = []
        self.record: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        try:
            self.record = self.job.follow(emit=lambda line: self.lines.append(
                (line.replica, line.text)))
        except BaseException as err:  # reported by end()
            self.error = err

    def said(self, pattern: str, replica: str | None = None, since: int = 0) -> bool:
        return any(re.search(pattern, text) for who, text in self.lines[since:]
                   if replica is None or who == replica)

    def wait_said(self, pattern: str, timeout: float, replica: str | None = None,
                  since: int = 0) -> None:
        try:
            wait_for(lambda: self.said(pattern, replica, since) or self.error is not None,
                     timeout, f"{pattern!r} in the cell's log")
        except AssertionError as err:
            state = [(r.label, r.state, r.restarts, r.pod, r.node, r.diagnosis)
                     for r in self.job.record.replicas]
            raise AssertionError(f"{err}; replicas {state}; the cell's last lines:\n"
                                 + "\n".join(f"[{w}] {t}" for w, t in self.lines[-40:])) from None
        assert self.error is None, self.error

    def end(self, timeout: float = 600) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the job did not end: {self.lines[-20:]}"
        assert self.error is None, self.error
        return self.record

    def cellship_lines(self) -> list[str]:
        return [text for who, text in self.lines if who == "cellship"]


def epochs_done(cell: Cell, replica: str, since: int = 0) -> list[int]:
    return [int(m.group(1)) for who, text in cell.lines[since:] if who == replica
            for m in [re.search(r"epoch-done (\d+)", text)] if m]


def assert_resumed_and_complete(cell: Cell, fault_at: int, epochs: int = EPOCHS) -> None:
    """After the fault, each worker went on from a backup (not from epoch 1) to the end."""
    for replica in ("worker 0", "worker 1"):
        after = epochs_done(cell, replica, fault_at)
        assert after and after[-1] == epochs, (replica, after, cell.lines[-30:])
        assert 1 not in after, (replica, "started over instead of resuming", after)


def container(cluster: Any, namespace: str, pod: str) -> str:
    out = cluster.kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout
    for status in json.loads(out)["status"].get("containerStatuses") or ():
        if status["name"] == "tensorflow" and status.get("containerID"):
            return status["containerID"].split("://", 1)[1]
    raise AssertionError(f"pod {pod} has no running tensorflow container")


def pod_name(job: cellship.Job, label: str) -> str:
    return next(r.pod for r in job.record.replicas if r.label == label)


def nothing_left(cluster: Any, namespace: str, job: cellship.Job) -> None:
    job.delete()
    selector = f"cellship.io/job-id={job.id}"
    wait_for(lambda: not cluster.kubectl("get", "pods,services,configmaps", "-n", namespace,
                                         "-l", selector, "-o", "name").stdout.strip(),
             90, "the job's objects to go")


def submit(cluster: Any, namespace: str, name: str, source: str, **more: Any) -> cellship.Job:
    return cellship.submit(source, workers=2, max_restarts=2, name=name, backend="kubernetes",
                           kubernetes=options(cluster, namespace, **more), timeout=840)


def test_a_killed_container_and_an_apiserver_restart(cluster, two_nodes, namespace) -> None:
    job = submit(cluster, namespace, "chaos-kill", program())
    cell = Cell(job)
    cell.wait_said(r"epoch-done 2", 240, replica="worker 1")
    victim = pod_name(job, "worker 1")
    node = two_nodes.node_of(namespace, victim)
    ctr: Callable[..., Any] = (cluster.local.ctr if node == two_nodes.first
                               else two_nodes.extra.ctr)
    fault_at = len(cell.lines)
    ctr("tasks", "kill", "-s", "SIGKILL", container(cluster, namespace, victim))
    cell.wait_said(r"worker 1 restarted in place \(it was killed \(SIGKILL, exit code 137\)\)",
                   120, replica="cellship")
    resumed_at = len(cell.lines)
    cell.wait_said(r"epoch-done \d", 240, replica="worker 0", since=resumed_at)
    cluster.local.restart_apiserver(downtime=3)
    record = cell.end()
    assert record.status == "succeeded", (record.error, cell.lines[-30:])
    assert_resumed_and_complete(cell, fault_at)
    assert any("worker 0 restarted in place" in line for line in cell.cellship_lines()), \
        cell.cellship_lines()  # its peer's loss stopped it too, and it came back
    assert [r.restarts for r in record.replicas] == [1, 1], record.replicas
    told = "\n".join(cell.cellship_lines())
    assert "the Kubernetes API server does not answer" in told, told
    assert "the Kubernetes API server answers again" in told, told
    assert [m.name for m in job.saved_models()] == ["digits"]
    nothing_left(cluster, namespace, job)


def test_a_deleted_pod_and_a_lost_node(cluster, two_nodes, namespace) -> None:
    """Both workers start on node 1 (node 2 cordoned); worker 1's pod is deleted while
    only node 2 takes pods, so it is made again there; then node 2 loses power and
    worker 1 is made again on node 1, the surviving node."""
    first, second = two_nodes.names
    cluster.kubectl("cordon", second)
    try:
        job = submit(cluster, namespace, "chaos-node", program())
        cell = Cell(job)
        cell.wait_said(r"epoch-done 2", 240, replica="worker 1")
        assert {two_nodes.node_of(namespace, pod_name(job, w))
                for w in ("worker 0", "worker 1")} == {first}
        cluster.kubectl("uncordon", second)
        cluster.kubectl("cordon", first)
        fault_at = len(cell.lines)
        cluster.kubectl("delete", "pod", pod_name(job, "worker 1"), "-n", namespace,
                        "--wait=false")
        cell.wait_said(r"worker 1 was lost \(its pod was deleted\); cellship made its pod "
                       r"again", 120, replica="cellship")
        wait_for(lambda: two_nodes.node_of(namespace, pod_name(job, "worker 1")) == second,
                 60, "worker 1 to be scheduled on node 2")
    finally:
        cluster.kubectl("uncordon", first, check=False)
        cluster.kubectl("uncordon", second, check=False)
    back_at = len(cell.lines)
    cell.wait_said(r"epoch-done \d", 240, replica="worker 1", since=back_at)
    two_nodes.stop_second()
    try:
        cell.wait_said(r"worker 1 was lost \(node 127\.0\.0\.2 stopped answering", 150,
                       replica="cellship")
        record = cell.end()
    finally:
        two_nodes.start_second()
    assert record.status == "succeeded", (record.error, cell.lines[-30:])
    assert_resumed_and_complete(cell, fault_at)
    assert two_nodes.node_of(namespace, pod_name(job, "worker 1")) == first
    assert [r.restarts for r in record.replicas] == [2, 2], record.replicas
    assert any("resuming from worker 0's" in text for who, text in cell.lines[back_at:]
               if who == "worker 1"), "the recreated worker did not take its peer's backup"
    nothing_left(cluster, namespace, job)


def test_over_memory_then_over_disk(cluster, two_nodes, namespace) -> None:
    # The kubelet measures a job dir's use every few seconds and evicts on its next pass:
    # enough epochs that the job is still training then.
    epochs = 24
    job = submit(cluster, namespace, "chaos-limits", program(OOM_ONCE, epochs),
                 memory_limit="1500Mi", disk_limit="64Mi")
    cell = Cell(job)
    cell.wait_said(r"hogging memory", 240, replica="worker 1")
    fault_at = len(cell.lines)
    cell.wait_said(r"worker 1 restarted in place \(it was killed for going over its memory "
                   r"limit \(1500Mi\)\)", 120, replica="cellship")
    resumed_at = len(cell.lines)
    cell.wait_said(r"epoch-done \d", 240, replica="worker 1", since=resumed_at)
    fill = ("f = open('/cellship/job/fill', 'wb')\n"
            "for _ in range(96):\n    f.write(b'0' * (1 << 20))\nf.close()\n")
    cluster.kubectl("exec", pod_name(job, "worker 1"), "-n", namespace, "-c", "tensorflow",
                    "--", "python3", "-c", fill)
    cell.wait_said(r"worker 1 was lost \(node \S+ evicted its pod", 180, replica="cellship")
    record = cell.end()
    assert record.status == "succeeded", (record.error, cell.lines[-30:])
    assert_resumed_and_complete(cell, fault_at, epochs)
    assert [r.restarts for r in record.replicas] == [2, 2], record.replicas
    nothing_left(cluster, namespace, job)
