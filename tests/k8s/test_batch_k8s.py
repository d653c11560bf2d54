"""`cellship batch --backend kubernetes` on a real cluster: each run a batch/v1 Job whose pod
runs papermill in the image; output notebooks and recorded values come home through the
pod's log; failures keep their notebook; cancel and completion leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

import cellship
from tests.integration.test_batch import make_notebook
from tests.interrupt import sigint_default
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.kernel, pytest.mark.timeout(600)]

BODY = """
import time, cellship
time.sleep(sleep)
score = lr * epochs
cellship.record("score", score)
print("score", score)
if fail:
    raise ValueError(f"asked to fail at lr={lr}")
"""
PARAMETERS = "lr = 0.1\nepochs = 2\nfail = False\nsleep = 0"


def flags(cluster: Any, namespace: str) -> list[str]:
    return ["--backend", "kubernetes", "--image", cluster.image, "--namespace", namespace,
            "--image-pull-policy", "Never", "--context", cluster.context]


def objects(cluster: Any, namespace: str, batch_id: str, kinds: str = "jobs,pods,configmaps") -> list[str]:
    out = cluster.kubectl("get", kinds, "-n", namespace, "-l", f"cellship.io/batch-id={batch_id}",
                          "-o", "json").stdout
    return [f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(out)["items"]]


def details(cluster: Any, namespace: str, batch_id: str) -> str:
    """What is left and why it stays (deletion stamps, finalizers, phases), for messages."""
    out = cluster.kubectl("get", "jobs,pods,configmaps", "-n", namespace, "-l",
                          f"cellship.io/batch-id={batch_id}", "-o", "json").stdout
    return json.dumps([{"kind": o["kind"], "name": o["metadata"]["name"],
                        "deletion": o["metadata"].get("deletionTimestamp"),
                        "finalizers": o["metadata"].get("finalizers"),
                        "status": o.get("status")} for o in json.loads(out)["items"]], indent=1)


def running_pods(cluster: Any, namespace: str) -> int:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l",
                          "app.kubernetes.io/managed-by=cellship", "-o", "json").stdout
    return sum(p["status"].get("phase") == "Running" for p in json.loads(out)["items"])


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellship.cli", *args], capture_output=True,
                          text=True, timeout=kwargs.pop("timeout", 300), **kwargs)


def test_grid_runs_as_jobs_with_a_failing_run_and_results_come_home(cluster, namespace, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "sweep.ipynb", BODY, parameters=PARAMETERS)
    batch = cellship.batch(str(notebook), parameters={"epochs": 3},
                           grid={"lr": [0.1, 0.5], "fail": [False, True]}, parallel=2,
                           name="k8s-sweep", backend="kubernetes",
                           kubernetes=options(cluster, namespace))
    runs = batch.record.runs
    assert [r.status for r in runs] == ["succeeded", "failed", "succeeded", "failed"], \
        [(r.status, r.error) for r in runs]
    # The output notebooks are here, with the injected parameters and the outputs.
    for run in runs:
        out = nbformat.read(run.output_path, as_version=4)
        injected = next(c for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))
        assert f"lr = {run.parameters['lr']}" in injected.source
        printed = json.dumps(out.cells[-1].outputs)
        assert f"score {run.parameters['lr'] * 3}" in printed
        assert out.metadata.papermill["output_path"] == run.output_path
    # The recorded values are in the results, failing runs included (recorded before raising).
    table = batch.results()
    assert list(table["score"]) == pytest.approx([0.3, 0.3, 1.5, 1.5])
    # A failed run keeps its output notebook, with papermill's error banner and the reason.
    assert runs[1].error == "cell [3] raised ValueError: asked to fail at lr=0.1"
    failed = nbformat.read(runs[1].output_path, as_version=4)
    assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in failed.cells)
    assert "ValueError" in json.dumps(failed.cells[-1].outputs)
    # What papermill logged in the pod is in the run's log file.
    assert "Executing notebook with kernel" in Path(runs[0].log_path).read_text()
    # Every Job was deleted once its run was home: nothing left in the namespace.
    assert objects(cluster, namespace, batch.id) == []


def test_image_that_is_not_there_fails_with_the_reason(cluster, namespace, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "nb.ipynb", BODY, parameters=PARAMETERS)
    batch = cellship.batch(str(notebook), backend="kubernetes", kubernetes=options(
        cluster, namespace, image="cellship.test/no-such-image:1"))
    (run,) = batch.record.runs
    assert run.status == "failed"
    assert "cannot pull its image 'cellship.test/no-such-image:1'" in run.error, run.error
    assert objects(cluster, namespace, batch.id) == [], (
        Path(run.log_path).read_text(), details(cluster, namespace, batch.id))


def test_timeout_fails_the_run_and_keeps_the_partial_notebook(cluster, namespace, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "slow.ipynb", BODY, parameters=PARAMETERS)
    batch = cellship.batch(str(notebook), parameters={"sleep": 300}, backend="kubernetes",
                           kubernetes=options(cluster, namespace, timeout=20))
    (run,) = batch.record.runs
    assert run.status == "failed", Path(run.log_path).read_text()[-3000:]
    assert run.error.startswith("timed out after 20s"), run.error
    assert Path(run.output_path).exists(), "the stopped pod's partial notebook should come home"
    assert objects(cluster, namespace, batch.id) == []


def test_ctrl_c_deletes_the_running_jobs(cluster, namespace, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "slow.ipynb", BODY, parameters=PARAMETERS)
    proc = subprocess.Popen([sys.executable, "-m", "cellship.cli", "batch", str(notebook),
                             "--grid", "lr=1,2,3", "-p", "sleep", "300", "--parallel", "2",
                             "--name", "slow", *flags(cluster, namespace)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)  # we send it SIGINT
    try:
        wait_for(lambda: running_pods(cluster, namespace) == 2, 120, "two running pods")
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    batch = cellship.get_batch("slow")
    assert [r.status for r in batch.runs] == ["cancelled"] * 3
    assert objects(cluster, namespace, batch.id) == []


def test_detached_batch_cancelled_from_another_process(cluster, namespace, tmp_path: Path) -> None:
    notebook = make_notebook(tmp_path / "bg.ipynb", BODY, parameters=PARAMETERS)
    started = _cli("batch", str(notebook), "--grid", "lr=1,2", "-p", "sleep", "300", "--detach",
                   "--name", "bg", *flags(cluster, namespace))
    assert started.returncode == 0, started.stderr
    batch_id = started.stdout.strip()
    wait_for(lambda: running_pods(cluster, namespace) == 1, 120, "the first run's pod")
    cancelled = _cli("batch", "cancel", "bg")
    assert cancelled.returncode == 0, cancelled.stderr
    record = cellship.get_batch(batch_id).record
    assert record.status == "cancelled", (record.status, [r.error for r in record.runs])
    assert objects(cluster, namespace, batch_id) == []
    assert os.environ.get("KUBECONFIG"), "the cluster fixture points KUBECONFIG at the cluster"
