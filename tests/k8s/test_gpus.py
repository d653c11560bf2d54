"""GPU scheduling on a node that advertises GPUs the way GPU node pools do.

The node gets ``nvidia.com/gpu: 2`` (an extended resource patched onto its status), the
label and the taint GPU pools carry, for this module only: every other test's pods carry
no GPU toleration, so a permanent taint would leave them unschedulable, and
test_training's "GPUs the cluster lacks" needs a node without GPUs. No GPU code runs (no
device exists): TensorFlow falls back to the CPU and the pod says so.
"""

from __future__ import annotations

from typing import Iterator

import pytest

import cellship
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.timeout(600)]
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def gpu_node(cluster) -> Iterator[None]:
    cluster.local.advertise_gpus(2)
    try:
        yield
    finally:
        cluster.local.withdraw_gpus()


@pytest.fixture
def gpus(cluster, gpu_node) -> None:
    """Each test starts with the node's GPUs advertised (a kubelet restart resets them)."""
    if cluster.local.node_gpus() != 2:
        cluster.local.advertise_gpus(2)


def test_two_workers_with_a_gpu_each_schedule_and_train(cluster, namespace, gpus) -> None:
    job = cellship.submit(TRAIN_DIGITS.format(epochs=1, sleep=0), workers=2, gpus=1,
                          name="gpu-digits", backend="kubernetes", timeout=400,
                          kubernetes=options(cluster, namespace))
    lines: list[str] = []
    record = job.follow(emit=lambda line: lines.append(f"[{line.replica}] {line.text}"))
    assert record.status == "succeeded", (record.error, lines[-20:])
    pods = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"cellship.io/job-id={job.id}",
                           "-o", "jsonpath={range .items[*]}{.spec.nodeName} "
                                 "{.spec.tolerations}{'\\n'}{end}").stdout.splitlines()
    assert len(pods) == 2 and all("nvidia.com/gpu" in p and p.startswith("127.0.0.1") for p in pods)
    # No device behind the resource: said once per pod, and TensorFlow trained on the CPU.
    said = [t for t in lines if "no GPU device is visible" in t and "CPU" in t]
    assert {t.split("]")[0] for t in said} == {"[worker 0", "[worker 1"}, said
    assert any("final-accuracy" in t for t in lines)
    job.delete()


def test_three_workers_are_told_how_many_gpus_are_free(cluster, namespace, gpus) -> None:
    job = cellship.submit("print('never')\n", workers=3, gpus=1, name="three-gpus",
                          backend="kubernetes", startup_timeout=120,
                          kubernetes=options(cluster, namespace))
    error = wait_for(lambda: (job.record.error or "") if "needs 3 nvidia.com/gpu, 2 free"
                     in (job.record.error or "") else None, 10, "the GPU shortfall message")
    assert "the cluster has 2 in all" in error and "Insufficient nvidia.com/gpu" in error, error
    assert job.record.status == "pending"
    job.cancel()
