"""`%%train --backend kubernetes` in a real kernel: the cell's output shows every pod's
log lines with replica prefixes, the summary, and the final curves picture."""

from __future__ import annotations

import re

import pytest

from tests.integration.jobs import TRAIN_DIGITS
from tests.integration.test_magics_kernel import Kernel

pytestmark = [pytest.mark.k8s, pytest.mark.kernel, pytest.mark.tf, pytest.mark.timeout(600)]


def test_train_cell_runs_on_pods_and_streams_into_the_cell(cluster, namespace, tmp_path) -> None:
    kernel = Kernel(tmp_path)  # inherits KUBECONFIG from the session
    try:
        out, error = kernel.run("%load_ext cellship")
        assert error is None, out
        magic = (f"%%train --workers 2 --name magic-digits --backend kubernetes "
                 f"--image {cluster.image} --namespace {namespace} --image-pull-policy Never "
                 f"--context {cluster.context}")
        msg_id = kernel.send(magic + "\n" + TRAIN_DIGITS.format(epochs=2, sleep=0))
        out, error = kernel.collect(msg_id, timeout=400)
        assert error is None, out
        assert re.search(r"\[worker 0\] .*epoch-done 2", out), out
        assert re.search(r"\[worker 1\] .*epoch-done 2", out), out
        assert "succeeded" in out and "backend kubernetes" in out, out[-2000:]
        out, error = kernel.run("%jobs")
        assert "magic-digits" in out and "succeeded" in out, out
        # The pods are listed with their states by the status command as well.
        out, error = kernel.run("import cellship\nj = cellship.last_job()\n"
                                "print([(r.type, r.index, r.state) for r in j.record.replicas])\n"
                                "print(sorted(set(j.metrics().tag)))")
        assert "('worker', 1, 'succeeded')" in out and "epoch_loss" in out, out
    finally:
        kernel.close()
