"""Batch runs as Kubernetes Jobs against the in-memory API (tests/unit/kube_fake.py):
manifests, the log wire format (podrun), the executor's outcomes, cancel and cleanup.
No kernel starts here: the fake's "kubelet" plays papermill's part."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from cellship.cli import main as cli_main
from cellship.errors import UsageError
from cellship.inside import podrun
from cellship.kube.errors import KubernetesForbidden
from cellship.runs.api import create, get_batch
from cellship.runs.executors import EXECUTORS, get_executor
from cellship.runs.kubernetes import executor as k8s_exec
from cellship.runs.kubernetes import manifests as kb
from cellship.runs.scraps import SCRAP_MIME
from tests.unit.kube_fake import FakeKubeWithJobs, serve

NS = "ml"
IMAGE = "nb:test"


# -- helpers ------------------------------------------------------------------------------
def make_notebook(path: Path, body: str = "print(lr)", parameters: str = "lr = 0.1") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def input_of(config_map: dict) -> nbformat.NotebookNode:
    data = gzip.decompress(base64.b64decode(config_map["binaryData"][kb.INPUT_KEY]))
    return nbformat.reads(data.decode(), as_version=4)


def injected(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The parameters papermill injected, read back from the injected cell."""
    cell = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    values: dict[str, Any] = {}
    exec(cell.source, {}, values)
    return values


def executed(nb: nbformat.NotebookNode, error: str | None = None) -> list[str]:
    """What a pod prints: the notebook 'executed' (a scrap of lr * 10, or papermill's error
    banner) as podrun encodes it, then the result line."""
    values = injected(nb)
    last = nb.cells[-1]
    last.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{values['lr']}\n")]
    if error is None:
        last.outputs.append(nbformat.v4.new_output(
            "display_data", data={SCRAP_MIME: {"name": "score", "data": values["lr"] * 10,
                                               "encoder": "json", "version": 1}}))
    else:
        last.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue=error,
                                                   traceback=[]))
        banner = nbformat.v4.new_markdown_cell("An Exception was encountered")
        banner.metadata["tags"] = ["papermill-error-cell-tag"]
        nb.cells.insert(0, banner)
    status = "succeeded" if error is None else "failed"
    reason = None if error is None else f"cell [2] raised ValueError: {error}"
    return ["running the notebook", *podrun.encode(nbformat.writes(nb).encode()),
            podrun.result_line(status, reason)]


def done(code: int = 0, reason: str | None = None) -> dict:
    return {"phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "tensorflow", "restartCount": 0, "state": {
                "terminated": {"exitCode": code,
                               "reason": reason or ("Completed" if code == 0 else "Error")}}}]}


def running() -> dict:
    return {"phase": "Running", "containerStatuses": [{"name": "tensorflow", "restartCount": 0,
                                                       "state": {"running": {}}}]}


def papermill_pod(fail_when: Any = None):
    """A pod script: runs 'succeed', except where ``fail_when(lr)`` says fail."""
    def script(job: dict, config_map: dict) -> tuple[dict, list[str]]:
        nb = input_of(config_map)
        lr = injected(nb)["lr"]
        if fail_when is not None and fail_when(lr):
            return done(1), executed(nb, error="boom")
        return done(0), executed(nb)
    return script


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setattr(k8s_exec, "POLL_SECONDS", 0.01)


@pytest.fixture
def kube(monkeypatch) -> FakeKubeWithJobs:
    return serve(monkeypatch, FakeKubeWithJobs(papermill_pod()))


def k8s_batch(tmp_path: Path, store, grid: Any = None, **options) -> Any:
    notebook = make_notebook(tmp_path / "sweep.ipynb")
    kubernetes = {"image": IMAGE, "namespace": NS, "image_pull_policy": "Never"} | options
    return create(notebook, grid=grid or {"lr": [0.1, 0.5]}, backend="kubernetes", name="Sweep_One",
                  kubernetes=kubernetes, output_dir=tmp_path / "out", store=store)


def leftovers(kube: FakeKubeWithJobs) -> list[str]:
    return kube.names("Job") + kube.names("Pod") + kube.names("ConfigMap")


# -- manifests ----------------------------------------------------------------------------
def settings(**extra) -> kb.BatchSettings:
    return kb.BatchSettings.from_dict({"image": IMAGE, "image_pull_policy": "Never",
                                       "cpu": "500m", "memory": "1Gi"} | extra)


def test_job_manifest() -> None:
    run = kb.RunIdentity("ab12cd34", "Sweep_One", 3, 0, NS)
    job = kb.job(run, settings(timeout=90, gpus=1), "python3")
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == run.name == "sweep-one-ab12cd34-3"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 90
    assert "ttlSecondsAfterFinished" not in spec
    labels = spec["template"]["metadata"]["labels"]
    assert labels == job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "cellship"
    assert labels[kb.LABEL_BATCH_ID] == "ab12cd34" and labels[kb.LABEL_RUN_INDEX] == "3"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"]
    (container,) = pod["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["imagePullPolicy"] == "Never" and container["image"] == IMAGE
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HOME"] == "/tmp"
    assert container["command"][:3] == ["python3", "-u", "/cellship/batch/podrun.py"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"nvidia.com/gpu": "1"}}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"/cellship/batch", "/tmp"}
    assert "activeDeadlineSeconds" not in kb.job(run, settings(), "python3")["spec"]


def test_config_map_is_owned_by_the_job_and_carries_input_and_runner() -> None:
    run = kb.RunIdentity("ab12cd34", "nb", 0, 0, NS)
    owner = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": run.name, "uid": "u-1"}}
    cm = kb.config_map(run, gzip.compress(b"{}"), owner)
    assert cm["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": run.name, "uid": "u-1",
         "blockOwnerDeletion": True}]
    assert cm["metadata"]["labels"][kb.LABEL_BATCH_ID] == "ab12cd34"
    assert gzip.decompress(base64.b64decode(cm["binaryData"][kb.INPUT_KEY])) == b"{}"
    assert cm["data"][kb.RUNNER_KEY] == Path(podrun.__file__).read_text()
    with pytest.raises(UsageError, match="at most 1 MiB: clear its outputs"):
        kb.config_map(run, b"x" * (1024 * 1024), owner)


def test_names_fit_and_retries_get_their_own() -> None:
    long = kb.RunIdentity("ab12cd34", "A" * 100 + ".ipynb", 9999, 12, NS)
    assert len(long.name) <= 63 and long.name.endswith("-ab12cd34-9999-r12")
    assert kb.RunIdentity("ab12cd34", "nb", 1, 0, NS).name != kb.RunIdentity("ab12cd34", "nb", 1, 1, NS).name


def test_settings_are_checked() -> None:
    with pytest.raises(UsageError, match="need an image"):
        kb.BatchSettings.from_dict({})
    with pytest.raises(UsageError, match="launcher apply to %%train jobs"):
        kb.BatchSettings.from_dict({"image": IMAGE, "launcher": "tfjob"})
    with pytest.raises(UsageError, match="timeout must be a positive number"):
        kb.BatchSettings.from_dict({"image": IMAGE, "timeout": -1})
    again = kb.BatchSettings.from_dict(settings(timeout=5).to_dict())
    assert again == settings(timeout=5)


# -- the wire format ----------------------------------------------------------------------
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
                       "x": "y" * 5000}).encode()


def test_payload_round_trip_and_other_lines_kept() -> None:
    lines = ["hello", f"{podrun.BEGIN} bytes=1 sha256=0{podrun.TAIL}",  # printed by the notebook
             *podrun.encode(NOTEBOOK), podrun.result_line("succeeded", None)]
    parsed = podrun.parse_log(lines)
    assert parsed.notebook == NOTEBOOK and parsed.problem is None
    assert parsed.result == {"status": "succeeded", "error": None}
    assert parsed.lines[0] == "hello"


def test_lines_of_another_writer_inside_the_payload_are_set_aside() -> None:
    # What a runtime reading stdout and stderr apart logged on a loaded machine: the end of a
    # traceback (stderr) among the payload's lines (stdout).
    payload = podrun.encode(gzip.compress(NOTEBOOK) + b"incompressible" * 400)
    stray = ['  File "/opt/papermill/execute.py", line 131, in execute_notebook',
             "ValueError: asked to fail at lr=0.5", ""]
    lines = [payload[0], payload[1], *stray, *payload[2:], podrun.result_line("failed", "x")]
    parsed = podrun.parse_log(lines)
    assert parsed.notebook == gzip.compress(NOTEBOOK) + b"incompressible" * 400
    assert parsed.lines == stray and parsed.result == {"status": "failed", "error": "x"}
    # A stray line that happens to be base64 cannot be told apart: the digest catches it.
    parsed = podrun.parse_log([payload[0], payload[1], "Done", *payload[2:]])
    assert parsed.notebook is None and "does not match the begin marker" in parsed.problem


@pytest.mark.parametrize("cut, words", [
    (lambda p: p[:-2], "no end marker"),                      # the pod died mid-print
    (lambda p: p[3:], "no begin marker (only the end one: the log was rotated)"),
    (lambda p: p[:2] + p[3:], "does not match the begin marker"),  # a line lost
    (lambda p: [], "no begin marker"),
])
def test_damaged_payload_is_named_with_the_log_limit(cut, words) -> None:
    payload = podrun.encode(gzip.compress(NOTEBOOK) + b"incompressible" * 400)
    parsed = podrun.parse_log(cut(payload))
    assert parsed.notebook is None
    assert words in parsed.problem and "10 MiB" in parsed.problem


def test_podrun_prints_the_notebook_even_when_papermill_fails(tmp_path, monkeypatch, capsys) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def fake_execute(source, output, **kwargs):
        assert kwargs["parameters"] is None  # injected at home already
        Path(output).write_text(Path(source).read_text().replace("INPUT", "EXECUTED"))
        raise PapermillExecutionError(1, 2, "boom", "ValueError", "bad lr", [])

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    src = tmp_path / "in.ipynb.gz"
    src.write_bytes(gzip.compress(b'{"note": "INPUT"}'))
    code = podrun.run(str(src), str(tmp_path / "o" / "out.ipynb"), "python3", str(tmp_path / "w"))
    assert code == 1
    parsed = podrun.parse_log(capsys.readouterr().out.splitlines())
    assert parsed.notebook == b'{"note": "EXECUTED"}'
    assert parsed.result == {"status": "failed", "error": "cell [2] raised ValueError: bad lr"}


# -- the executor -------------------------------------------------------------------------
def test_registered_and_options_checked_up_front(tmp_path, store, monkeypatch) -> None:
    assert EXECUTORS["kubernetes"] is k8s_exec.KubernetesRunExecutor
    notebook = make_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(UsageError, match="need an image"):
        create(notebook, backend="kubernetes", store=store)
    with pytest.raises(UsageError, match="apply to backend='kubernetes'"):
        create(notebook, kubernetes={"image": IMAGE}, store=store)
    monkeypatch.setenv("CELLSHIP_K8S_IMAGE", "from-env:1")
    batch = create(notebook, backend="kubernetes", kernel="only-in-the-image", store=store)
    saved = json.loads((Path(batch.record.output_dir) / "kubernetes.json").read_text())
    assert saved["image"] == "from-env:1"


def test_sweep_runs_as_jobs_and_comes_home(tmp_path, store, kube) -> None:
    batch = k8s_batch(tmp_path, store)
    record = batch.run()
    assert record.status == "succeeded", [r.error for r in record.runs]
    for run, lr in zip(record.runs, [0.1, 0.5]):
        out = nbformat.read(run.output_path, as_version=4)
        assert injected(out) == {"lr": lr}  # parameters injected with papermill's functions
        assert out.metadata.papermill["output_path"] == run.output_path
        assert run.recorded == {"score": pytest.approx(lr * 10)}
        assert "running the notebook" in Path(run.log_path).read_text()
    assert list(batch.results()["score"]) == pytest.approx([1.0, 5.0])
    assert leftovers(kube) == []  # each Job deleted (with pod and ConfigMap) once home
    created = [c for c in kube.calls if c[0] == "create"]
    assert [c[1] for c in created] == ["Job", "ConfigMap"] * 2  # the owner first


def test_a_failed_run_keeps_its_notebook_and_the_others_go_on(tmp_path, store, kube) -> None:
    kube.pod_script = papermill_pod(fail_when=lambda lr: lr == 0.5)
    record = k8s_batch(tmp_path, store).run()
    assert [r.status for r in record.runs] == ["succeeded", "failed"]
    assert record.runs[1].error == "cell [2] raised ValueError: boom"
    failed = nbformat.read(record.runs[1].output_path, as_version=4)
    assert "papermill-error-cell-tag" in failed.cells[0].metadata["tags"]
    assert leftovers(kube) == []


def test_truncated_log_fails_the_run_and_names_the_limit(tmp_path, store, kube) -> None:
    def cut(job, cm):
        return done(0), executed(input_of(cm))[:-3]
    kube.pod_script = cut
    record = k8s_batch(tmp_path, store).run()
    assert [r.status for r in record.runs] == ["failed", "failed"]
    assert "no end marker" in record.runs[0].error and "containerLogMaxSize" in record.runs[0].error
    assert not Path(record.runs[0].output_path).exists()


def test_oom_killed_pod(tmp_path, store, kube) -> None:
    kube.pod_script = lambda job, cm: (done(137, "OOMKilled"), ["loading data"])
    record = k8s_batch(tmp_path, store).run()
    assert "out of memory (OOMKilled" in record.runs[0].error  # diagnose.py's sentence


def test_papermill_missing_in_the_image(tmp_path, store, kube) -> None:
    kube.pod_script = lambda job, cm: (done(1), [
        "ModuleNotFoundError: No module named 'papermill'",
        podrun.result_line("failed", "ModuleNotFoundError: No module named 'papermill'")])
    record = k8s_batch(tmp_path, store).run()
    assert record.runs[0].error == "ModuleNotFoundError: No module named 'papermill'"


def test_image_that_cannot_be_pulled_fails_at_once(tmp_path, store, kube) -> None:
    never = {"phase": "Pending", "containerStatuses": [{"name": "tensorflow", "restartCount": 0, "state": {
        "waiting": {"reason": "ErrImageNeverPull", "message": "image not present with pull policy of Never"}}}]}
    kube.pod_script = lambda job, cm: (never, [])
    record = k8s_batch(tmp_path, store).run()
    assert [r.status for r in record.runs] == ["failed", "failed"]
    assert "cannot pull its image 'nb:test'" in record.runs[0].error
    assert leftovers(kube) == []


def test_delete_hurries_only_pods_that_never_ran() -> None:
    class Slow(FakeKubeWithJobs):  # the API server's GC takes its time: pods stay a while
        def delete(self, kind, namespace, name, propagation="Foreground", grace_seconds=None):
            with self.lock:
                self.calls.append(("delete", kind, name, propagation, grace_seconds))
                self.objects.pop((kind, namespace, name), None)

    kube = Slow()
    job = kube.create(kb.job(kb.RunIdentity("ab12cd34", "nb", 0, 0, NS), settings(), "python3"))
    stuck = kube.names("Pod")[0]
    ran = kube.add_job_pod(job, running())
    k8s_exec.delete_job(kube, NS, job["metadata"]["name"], "ab12cd34", wait=1)
    deletes = [c for c in kube.calls if c[0] == "delete"]
    # The Job first (so its controller makes no replacement), then the stuck pod at once.
    assert deletes == [("delete", "Job", job["metadata"]["name"], "Foreground", None),
                       ("delete", "Pod", stuck, "Background", 0)]
    assert ("Pod", NS, ran) in kube.objects


def test_unschedulable_pod_waits_then_fails_after_startup_timeout(tmp_path, store, kube) -> None:
    pending = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
               "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]}
    kube.pod_script = lambda job, cm: (pending, [])
    batch = k8s_batch(tmp_path, store, startup_timeout=0.3, gpus=1)
    started = time.monotonic()
    record = batch.run()
    assert time.monotonic() - started >= 0.3
    assert record.runs[0].error.startswith("not started after 0.3s (startup_timeout): Pod cannot "
                                           "be scheduled: no node has a free nvidia.com/gpu")
    assert leftovers(kube) == []


def test_deadline_exceeded(tmp_path, store, kube) -> None:
    def deadline(job, cm):
        kube.set_job_condition(NS, job["metadata"]["name"], "Failed", "DeadlineExceeded",
                               "Job was active longer than specified deadline")
        for pod in kube.names("Pod"):  # the Job controller removed its pod
            kube.objects.pop(("Pod", NS, pod))
        return done(0), []
    kube.pod_script = deadline
    record = k8s_batch(tmp_path, store, timeout=30).run()
    assert record.runs[0].error.startswith("timed out after 30s")


def test_refused_create_fails_the_run_and_leaves_nothing(tmp_path, store, kube) -> None:
    kube.fail_on[("create", "ConfigMap")] = KubernetesForbidden(
        "Kubernetes refused: you may not create configmaps in namespace ml (403 Forbidden).",
        "create", "configmaps", NS)
    record = k8s_batch(tmp_path, store).run()
    assert [r.status for r in record.runs] == ["failed", "failed"]
    assert "you may not create configmaps" in record.runs[0].error
    assert leftovers(kube) == []  # the Job made first was deleted again


def test_job_deleted_behind_our_back(tmp_path, store, kube) -> None:
    kube.pod_script = lambda job, cm: (running(), [])
    batch = k8s_batch(tmp_path, store, grid={"lr": [0.1]})
    threading.Timer(0.2, lambda: [kube.delete("Job", NS, n) for n in kube.names("Job")]).start()
    record = batch.run()
    assert "was deleted outside cellship" in record.runs[0].error


def test_cancel_deletes_the_jobs_with_foreground_propagation(tmp_path, store, kube) -> None:
    kube.pod_script = lambda job, cm: (running(), [])
    batch = k8s_batch(tmp_path, store)
    batch._store.update_batch(batch.id, parallel=2)
    from cellship.runs.coordinator import Coordinator

    coordinator = Coordinator(store, batch.id)
    timer = threading.Timer(0.3, coordinator.request_cancel)
    timer.start()
    record = coordinator.run()
    assert [r.status for r in record.runs] == ["cancelled", "cancelled"]
    deletes = [c for c in kube.calls if c[0] == "delete" and c[1] == "Job"]
    assert len(deletes) == 2 and all(c[3] == "Foreground" for c in deletes)
    assert leftovers(kube) == []


def test_abandon_cleans_up_after_a_dead_coordinator(tmp_path, store, kube) -> None:
    kube.pod_script = lambda job, cm: (running(), [])
    batch = k8s_batch(tmp_path, store)
    executor = get_executor("kubernetes", store)
    for run in batch.runs:
        executor.start(run)
    assert len(kube.names("Job")) == 2
    for run in batch.runs:  # the coordinator "dies": its watchers stop, the Jobs stay
        executor.watches[(run.batch_id, run.index)].stop.set()
    get_executor("kubernetes", store).abandon(batch.record)
    assert leftovers(kube) == []


def test_cli_flags_and_their_checks(tmp_path, capsys, kube) -> None:
    notebook = make_notebook(tmp_path / "nb.ipynb")
    assert cli_main(["batch", str(notebook), "--backend", "kubernetes"]) == 1
    err = capsys.readouterr().err
    assert "need an image (--image IMAGE" in err and "Traceback" not in err
    assert cli_main(["batch", str(notebook), "--namespace", NS]) == 1
    assert "batch runs on the 'local' backend take none" in capsys.readouterr().err
    code = cli_main(["batch", str(notebook), "--backend", "kubernetes", "--image", IMAGE,
                     "--namespace", NS, "--image-pull-policy", "Never", "--timeout", "2m",
                     "-p", "lr", "0.3", "--name", "cli"])
    assert code == 0, capsys.readouterr().err
    (run,) = get_batch("cli").runs
    assert run.recorded == {"score": pytest.approx(3.0)}
    saved = json.loads((Path(run.output_path).parent / "kubernetes.json").read_text())
    assert saved["timeout"] == 120 and saved["namespace"] == NS


def test_container_that_cannot_start_says_why_without_log_limit_noise(tmp_path, store, kube) -> None:
    cannot = {"phase": "Failed", "containerStatuses": [{"name": "tensorflow", "restartCount": 0, "state": {
        "terminated": {"exitCode": 128, "reason": "StartError",
                       "message": 'exec: "python3": executable file not found in $PATH'}}}]}
    kube.pod_script = lambda job, cm: (cannot, [])
    record = k8s_batch(tmp_path, store, grid={"lr": [0.1]}).run()
    error = record.runs[0].error
    assert error == ('the pod ended (exit code 128, exec: "python3": executable file not found '
                     'in $PATH) before papermill reported a result')


def test_retry_reruns_failed_runs_as_new_jobs(tmp_path, store, kube) -> None:
    kube.pod_script = papermill_pod(fail_when=lambda lr: lr == 0.5)
    batch = k8s_batch(tmp_path, store)
    batch.run()
    kube.pod_script = papermill_pod()
    record = batch.retry()
    assert [r.status for r in record.runs] == ["succeeded", "succeeded"]
    assert record.runs[1].attempt == 1
    jobs = [c[2] for c in kube.calls if c[:2] == ("create", "Job")]
    assert jobs[-1] == f"sweep-one-{batch.id}-1-r1"  # the retry's own Job, its own name
    assert Path(record.runs[1].output_path).with_name("run-001.failed-1.ipynb").exists()
    assert leftovers(kube) == []
