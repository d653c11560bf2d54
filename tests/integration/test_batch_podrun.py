"""A Kubernetes batch run's pod, without a cluster: the run's ConfigMap laid out as the
kubelet mounts it, the Job's container command run with the Job's env (paths moved under a
temporary root), a real papermill and kernel; then the executor's harvest of that stdout.
What the cluster test checks end to end, here in seconds on any machine."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from cellship.inside import podrun
from cellship.runs.api import create
from cellship.runs.kubernetes import manifests as kb
from cellship.runs.kubernetes.executor import KubernetesRunExecutor, RunWatch, parameterised_input
from cellship.store import Store
from tests.integration.test_batch import make_notebook

pytestmark = pytest.mark.kernel

BODY = """
import cellship
score = lr * epochs
cellship.record("score", score)
print("score", score)
if fail:
    raise ValueError(f"asked to fail at lr={lr}")
"""
PARAMETERS = "lr = 0.1\nepochs = 2\nfail = False"


def run_pod(job: dict, config_map: dict, root: Path) -> subprocess.CompletedProcess:
    """Run the Job's container as the kubelet would, every absolute path under ``root``."""
    def move(text: str) -> str:
        for prefix in (kb.MOUNT_DIR, kb.SCRATCH):
            if text.startswith(prefix):
                return str(root / text.lstrip("/"))
        return text

    data = {k: base64.b64decode(v) for k, v in config_map["binaryData"].items()}
    data |= {k: v.encode() for k, v in config_map["data"].items()}
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        base = Path(move(mounts[volume["name"]]))
        base.mkdir(parents=True, exist_ok=True)
        for item in volume.get("configMap", {}).get("items", []):
            (base / item["path"]).write_bytes(data[item["key"]])
    env = {e["name"]: move(e["value"]) for e in container["env"]}
    env["PATH"] = os.environ["PATH"]
    command = [sys.executable] + [move(c) for c in container["command"][1:]]  # python3 -> ours
    return subprocess.run(command, env=env, cwd=move(container["workingDir"]),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fail", [False, True])
def test_pod_command_runs_papermill_and_the_harvest_brings_it_home(tmp_path: Path, fail: bool) -> None:
    notebook = make_notebook(tmp_path / "nb.ipynb", BODY, parameters=PARAMETERS)
    store = Store.default()
    batch = create(notebook, parameters={"lr": 0.5, "fail": fail}, backend="kubernetes",
                   kubernetes={"image": "unused:1", "namespace": "ml"}, store=store)
    (run,) = batch.runs
    identity = kb.RunIdentity(batch.id, batch.name, 0, 0, "ml")
    settings = KubernetesRunExecutor(store).settings(batch.record)
    job = kb.job(identity, settings, "python3")
    owner = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": identity.name, "uid": "u"}}
    config_map = kb.config_map(identity, parameterised_input(str(notebook), run.parameters, "python3"),
                               owner)
    done = run_pod(job, config_map, tmp_path / "pod")
    assert done.returncode == (1 if fail else 0), done.stderr

    class Client:  # the API's view of the ended pod: its log is the container's stdout
        def pod_log(self, namespace, name, follow=False):
            return iter(done.stdout.splitlines())

    pod = {"metadata": {"name": "p"}, "status": {"phase": "Failed" if fail else "Succeeded"}}
    watch = RunWatch(store, Client(), settings, identity, run, str(notebook), time.monotonic)
    outcome = watch.harvest(pod)
    assert outcome.status == ("failed" if fail else "succeeded")
    assert outcome.recorded == {"score": 1.0}
    out = nbformat.read(run.output_path, as_version=4)
    injected = next(c for c in out.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "lr = 0.5" in injected.source
    if fail:
        assert outcome.error == "cell [3] raised ValueError: asked to fail at lr=0.5"
        assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in out.cells)
    # One stream, in the order printed: papermill's log and the traceback (stderr in the pod)
    # come down stdout's pipe before the payload, so the runtime cannot interleave them.
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(podrun.BEGIN))
    assert any(line.startswith("Executing notebook") for line in lines[:begin])
    assert any(line.startswith("Traceback") for line in lines[:begin]) == fail
    assert podrun.parse_log(lines).lines == lines[:begin]
