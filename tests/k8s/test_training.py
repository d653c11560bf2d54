"""`%%train --backend kubernetes` on a real cluster: pods, DNS, logs, metrics, faults."""

from __future__ import annotations

import json
from typing import Any

import pytest

import cellship
from cellship.errors import UsageError
from cellship.kube.errors import KubernetesForbidden
from tests.integration.jobs import TRAIN_DIGITS
from tests.k8s.support import options, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.tf, pytest.mark.timeout(600)]


def leftovers(cluster: Any, namespace: str, job_id: str) -> list[str]:
    """Every object of the job still in the namespace (pods, services, configmaps)."""
    out = cluster.kubectl("get", "pods,services,configmaps", "-n", namespace, "-l",
                          f"cellship.io/job-id={job_id}", "-o", "json").stdout
    return [f"{o['kind']}/{o['metadata']['name']}" for o in json.loads(out)["items"]]


def test_two_workers_train_on_pods_with_logs_and_relayed_metrics(cluster, namespace) -> None:
    job = cellship.submit(TRAIN_DIGITS.format(epochs=2, sleep=0), workers=2, name="digits",
                          backend="kubernetes", kubernetes=options(cluster, namespace),
                          timeout=400)
    lines: list[tuple[str, str]] = []
    points: list[Any] = []
    job.follow(emit=lambda line: lines.append((line.replica, line.text)),
               on_metric=points.append)
    record = job.record
    assert record.status == "succeeded", (record.error, lines[-20:])
    by_replica = {replica for replica, _ in lines}
    assert {"worker 0", "worker 1"} <= by_replica, by_replica
    assert any("epoch-done 2" in text for replica, text in lines if replica == "worker 0")
    assert any("final-accuracy" in text for _, text in lines)
    # The peers found each other by their stable DNS names behind the headless Service.
    assert any("waiting up to" in text and "peer" in text for _, text in lines)
    # The chief's metric relay carried the TensorBoard scalars through the log stream.
    tags = {p.tag for p in points}
    assert "epoch_loss" in tags, tags
    frame = job.metrics()
    assert set(frame["run"]) >= {"train"} and len(frame[frame.tag == "epoch_loss"]) == 2
    status = [(r.type, r.index, r.state) for r in job.record.replicas]
    assert status == [("worker", 0, "succeeded"), ("worker", 1, "succeeded")]
    # Each replica knows its pod and the node it ran on (the test cluster's one node).
    for r in job.record.replicas:
        assert r.pod and r.pod.endswith(f"-worker-{r.index}") and r.node == "127.0.0.1", r
        assert r.reason is None and r.diagnosis is None, r
    # The chief's files came home, laid out as a local job's: the SavedModel, the event
    # files (TensorBoard), no staging file in sight; the duration is the containers' run.
    assert [m.name for m in job.saved_models()] == ["digits"]
    assert list((job.logdir / "train").glob("events.out.tfevents.*")), list(job.logdir.rglob("*"))
    assert not list(job.output_dir.rglob("part-*"))
    assert record.duration is not None and record.duration > 3, record.duration  # TF's import alone
    # Fetched, the chief pod is released: its keeper ends and so does the pod.
    chief = f"{cluster.kubectl('get', 'pods', '-n', namespace, '-l', f'cellship.io/job-id={job.id}', '-o', 'name').stdout.split()[0]}"
    wait_for(lambda: cluster.kubectl("get", chief, "-n", namespace, "-o",
                                     "jsonpath={.status.phase}").stdout == "Succeeded",
             60, "the chief pod to end once its files were fetched")
    # Finished pods stay for their logs until the job is deleted; then nothing remains.
    assert leftovers(cluster, namespace, job.id)
    job.delete()
    wait_for(lambda: not leftovers(cluster, namespace, job.id), 60, "the job's objects to go")


CRASH_ONCE = '''
import os, sys
marker = os.path.join(os.environ["CELLSHIP_JOB_DIR"], "crashed-once")
if not os.path.exists(marker):
    open(marker, "w").close()
    print("crashing on purpose", flush=True)
    sys.exit(7)
print("second attempt ran", flush=True)
'''


def test_a_crashing_replica_is_restarted_in_place_within_max_restarts(cluster, namespace) -> None:
    job = cellship.submit(CRASH_ONCE, workers=1, name="crash", backend="kubernetes",
                          max_restarts=1, kubernetes=options(cluster, namespace))
    record = job.wait(timeout=180)
    assert record.status == "succeeded", record.error
    assert record.replicas[0].restarts == 1
    text = "\n".join(line.text for line in job.logs())
    assert "second attempt ran" in text
    job.delete()


def test_beyond_max_restarts_the_job_fails_with_the_exit_code(cluster, namespace) -> None:
    job = cellship.submit("import sys\nprint('bad', flush=True)\nsys.exit(5)\n", workers=1,
                          name="always-crash", backend="kubernetes", max_restarts=0,
                          kubernetes=options(cluster, namespace))
    record = job.wait(timeout=180)
    assert record.status == "failed"
    assert "5" in (record.error or ""), record.error


def test_gpus_the_cluster_lacks_are_diagnosed_in_plain_words(cluster, namespace) -> None:
    job = cellship.submit("print('never')\n", workers=1, gpus=1, name="wants-gpu",
                          backend="kubernetes", startup_timeout=20,
                          kubernetes=options(cluster, namespace))
    record = job.wait(timeout=120)
    assert record.status == "failed"
    assert "nvidia.com/gpu" in record.error and "schedul" in record.error.lower(), record.error
    wait_for(lambda: not [o for o in leftovers(cluster, namespace, job.id)
                          if o.startswith("Pod/")], 60, "the unschedulable pod to go")


def test_an_image_the_node_lacks_is_diagnosed(cluster, namespace) -> None:
    job = cellship.submit("print('never')\n", workers=1, name="no-image",
                          backend="kubernetes", startup_timeout=60,
                          kubernetes=options(cluster, namespace) | {"image": "cellship.test/nope:1"})
    record = job.wait(timeout=120)
    assert record.status == "failed"
    assert "cellship.test/nope:1" in record.error and "image" in record.error.lower(), record.error
    (replica,) = record.replicas  # the row's own reason, on the node that cannot pull
    assert (replica.reason, replica.node) == ("ImagePull", "127.0.0.1"), replica
    assert "cellship.test/nope:1" in (replica.diagnosis or ""), replica


SLEEPS = '''
import time
print("started", flush=True)
time.sleep(600)
'''


def test_cancel_deletes_everything_the_job_created(cluster, namespace) -> None:
    job = cellship.submit(SLEEPS, workers=2, name="sleeper", backend="kubernetes",
                          kubernetes=options(cluster, namespace))
    wait_for(lambda: job.status == "running", 120, "the job to run")
    wait_for(lambda: any("started" in line.text for line in job.logs()), 60, "a log line")
    assert leftovers(cluster, namespace, job.id)
    record = job.cancel()
    assert record.status == "cancelled"
    assert leftovers(cluster, namespace, job.id) == []


def test_a_job_follows_through_an_apiserver_restart(cluster, namespace) -> None:
    program = ("import time\nfor i in range(30):\n    print('tick', i, flush=True)\n"
               "    time.sleep(0.5)\n")
    job = cellship.submit(program, workers=1, name="ticker", backend="kubernetes",
                          kubernetes=options(cluster, namespace))
    wait_for(lambda: any("tick 2" in line.text for line in job.logs()), 120, "ticks")
    cluster.local.restart_apiserver(downtime=3)
    lines: list[str] = []
    job.follow(emit=lambda line: lines.append(line.text))
    assert job.status == "succeeded"
    ticks = [int(t.split()[1]) for t in lines if t.startswith("tick ")]
    assert ticks == sorted(set(ticks)) and ticks[-1] == 29, ticks  # no gap, no repeat


def test_kubernetes_only_options_with_the_local_backend_are_refused() -> None:
    with pytest.raises(UsageError):
        cellship.submit("print(1)\n", workers=1, backend="local", kubernetes={"image": "x"})


def test_a_user_without_rights_gets_a_sentence_and_nothing_is_left(cluster, namespace,
                                                                    monkeypatch) -> None:
    """RBAC as in a real cluster: jane may create ConfigMaps (the job object) but not
    Services, so the launch fails half-way: the error names what is missing, and what
    was created is rolled back."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.local.limited_kubeconfig()))
    with pytest.raises(KubernetesForbidden) as caught:
        cellship.submit("print(1)\n", workers=1, name="no-rights", backend="kubernetes",
                        kubernetes=options(cluster, namespace))
    assert "403" in str(caught.value) and namespace in str(caught.value)
    assert "configmaps" in str(caught.value).lower(), caught.value
    cluster.kubectl("create", "role", "configmaps", "-n", namespace, "--verb=create,get,delete,list",
                    "--resource=configmaps")
    cluster.kubectl("create", "rolebinding", "jane-configmaps", "-n", namespace,
                    "--role=configmaps", "--user=jane")
    with pytest.raises(KubernetesForbidden) as caught:
        cellship.submit("print(1)\n", workers=1, name="half-rights", backend="kubernetes",
                        kubernetes=options(cluster, namespace))
    assert "services" in str(caught.value).lower(), caught.value
    left = cluster.kubectl("get", "configmaps,services,pods", "-n", namespace, "-l",
                           "app.kubernetes.io/managed-by=cellship", "-o", "name").stdout
    assert left.strip() == "", left


def test_a_replica_killed_for_memory_is_diagnosed_as_an_oom_kill(cluster, namespace) -> None:
    hog = "data = b'x' * (400 << 20)\nprint('allocated', len(data), flush=True)\n"
    job = cellship.submit(hog, workers=1, name="hog", backend="kubernetes", max_restarts=0,
                          kubernetes=options(cluster, namespace, memory="64Mi",
                                             memory_limit="128Mi"))
    record = job.wait(timeout=120)
    assert record.status == "failed"
    assert "memory" in record.error.lower() and "128Mi" in record.error, record.error
