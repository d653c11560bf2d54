"""KubernetesBackend's flow against an in-memory API (tests/unit/kube_fake.py)."""

from __future__ import annotations

import pytest

from cellship.kube.errors import KubernetesError, KubernetesForbidden
from cellship.kube.names import label_value
from cellship.kube.options import KubernetesOptions
from cellship.train.backends import available, get_backend
from cellship.train.kubernetes.backend import KubernetesBackend
from cellship.train.kubernetes.manifests import LABEL_JOB_ID
from cellship.train.kubernetes.podlogs import split_timestamp
from cellship.train.program import build_program
from cellship.train.spec import JobSpec
from cellship.watch.metrics import ScalarPoint, encode_relay
from tests.unit.kube_fake import FakeKube

NS = "ml"


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def backend(store, kube) -> KubernetesBackend:
    return KubernetesBackend(store, KubernetesOptions(image="tf:test", namespace=NS),
                             client_factory=lambda options: kube)


def submit(backend, **spec):
    return backend.submit(JobSpec(backend="kubernetes", name="Digits_CNN", **spec),
                          build_program("print('hello')\n"))


def pod_names(job, types):
    prefix = f"digits-cnn-{job.id}"
    return [f"{prefix}-{t}" for t in types]


def running(restarts: int = 0) -> dict:
    return {"phase": "Running", "containerStatuses": [{"name": "tensorflow", "restartCount": restarts,
                                                       "state": {"running": {}}}]}


def done(code: int = 0) -> dict:
    return {"phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": "tensorflow", "restartCount": 0,
                                   "state": {"terminated": {"exitCode": code,
                                                            "reason": "Completed" if code == 0 else "Error"}}}]}


def test_registered() -> None:
    assert available()["kubernetes"] == "cellship.train.kubernetes.backend:KubernetesBackend"


def test_submit_creates_owner_first_then_dependents(backend, kube) -> None:
    job = submit(backend, workers=2)
    prefix = f"digits-cnn-{job.id}"
    assert kube.calls == [("create", "ConfigMap", prefix), ("create", "Service", prefix),
                          ("create", "Pod", f"{prefix}-worker-0"),
                          ("create", "Pod", f"{prefix}-worker-1")]
    owner_uid = kube.objects[("ConfigMap", NS, prefix)]["metadata"]["uid"]
    for (kind, _, _), obj in kube.objects.items():
        if kind != "ConfigMap":
            assert obj["metadata"]["ownerReferences"][0]["uid"] == owner_uid
    assert job.status == "pending"
    assert job.replicas[1].address == f"{prefix}-worker-1.{prefix}.{NS}.svc:2222"


def test_refresh_maps_phases_to_states(backend, kube) -> None:
    job = submit(backend, workers=2)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    assert backend.refresh(job).status == "pending"
    kube.set_pod(NS, w0, running())
    record = backend.refresh(job)
    assert record.status == "running" and record.started is not None
    assert [r.state for r in record.replicas] == ["running", "pending"]
    kube.set_pod(NS, w0, done())
    kube.set_pod(NS, w1, running())
    assert backend.refresh(job).status == "running"
    kube.set_pod(NS, w1, done())
    record = backend.refresh(job)
    assert record.status == "succeeded"
    assert [(r.state, r.exit_code) for r in record.replicas] == [("succeeded", 0)] * 2


def test_parameter_server_job_ends_with_the_chief_and_stops_servers(backend, kube) -> None:
    job = submit(backend, workers=1, ps=1)
    chief, worker, ps = pod_names(job, ["chief-0", "worker-0", "ps-0"])
    kube.set_pod(NS, worker, running())
    kube.set_pod(NS, ps, running())
    kube.set_pod(NS, chief, done())
    assert backend.refresh(job).status == "succeeded"
    assert ("Pod", NS, worker) not in kube.objects and ("Pod", NS, ps) not in kube.objects
    assert ("Pod", NS, chief) in kube.objects  # kept for its log


def test_unschedulable_is_reported_then_fails_after_startup_timeout(backend, kube) -> None:
    job = submit(backend, gpus=1, startup_timeout=30)
    (w0,) = pod_names(job, ["worker-0"])
    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    kube.set_pod(NS, w0, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})
    kube.set_events("Pod", w0, [{"type": "Warning", "reason": "FailedScheduling", "message": message}])
    record = backend.refresh(job)
    assert record.status == "pending"
    assert "no node has a free nvidia.com/gpu" in record.error and message in record.error
    with backend.store._connect() as db:  # age the job instead of sleeping 30 s
        db.execute("UPDATE jobs SET created = created - 60 WHERE id=?", (job.id,))
    record = backend.refresh(job)
    assert record.status == "failed" and "not started after 30s" in record.error


def test_oom_kill_fails_the_job_with_the_reason(backend, kube) -> None:
    job = submit(backend)
    (w0,) = pod_names(job, ["worker-0"])
    kube.set_pod(NS, w0, {"phase": "Failed", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0,
         "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
    record = backend.refresh(job)
    assert record.status == "failed" and "out of memory" in record.error


def test_restarts_beyond_max_restarts_fail_the_job(backend, kube) -> None:
    job = submit(backend, max_restarts=1)
    (w0,) = pod_names(job, ["worker-0"])
    crash = running(restarts=1)
    crash["containerStatuses"][0]["lastState"] = {"terminated": {"exitCode": 2, "reason": "Error"}}
    kube.set_pod(NS, w0, crash)
    assert backend.refresh(job).status == "running"  # within --max-restarts 1
    crash["containerStatuses"][0]["restartCount"] = 2
    kube.set_pod(NS, w0, crash)
    record = backend.refresh(job)
    assert record.status == "failed" and "last exit code 2" in record.error


def test_cancel_deletes_the_owner_and_the_collector_takes_the_rest(backend, kube) -> None:
    job = submit(backend, workers=2)
    record = backend.cancel(job)
    assert record.status == "cancelled"
    prefix = f"digits-cnn-{job.id}"
    assert ("delete", "ConfigMap", prefix, "Foreground") in kube.calls
    assert kube.objects == {}
    assert backend.cancel(record).status == "cancelled"  # twice is fine


def test_failed_launch_cleans_up_and_keeps_the_status(backend, kube) -> None:
    kube.fail_on[("create", "Pod")] = KubernetesForbidden(
        "Kubernetes refused: you may not create pods in namespace ml (403 Forbidden).",
        verb="create", resource="pods", namespace=NS)
    with pytest.raises(KubernetesForbidden) as info:
        submit(backend)
    assert info.value.status == 403
    assert kube.objects == {}
    (record,) = backend.store.list_jobs()
    assert record.status == "failed" and "may not create pods in namespace ml" in record.error


def test_logs_carry_replica_prefixes_and_relay_lines(backend, kube) -> None:
    job = submit(backend, workers=2)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    point = ScalarPoint(run="train", tag="epoch_loss", step=1, wall_time=1.0, value=0.5)
    relay = encode_relay(point)
    kube.logs[w0] = ["epoch 1", relay]
    kube.logs[w1] = ["hello from 1"]
    lines = [str(line) for line in backend.logs(job)]
    assert lines == ["[worker 0] epoch 1", f"[worker 0] {relay}", "[worker 1] hello from 1"]
    assert backend.metrics(job) == [point]  # the relay line comes through unchanged
    kube.set_pod(NS, w0, done())
    kube.set_pod(NS, w1, done())
    followed = sorted(str(line) for line in backend.logs(job, follow=True))
    assert followed == sorted(lines)


def test_follow_reconnects_after_an_api_error_without_repeating_lines(backend, kube,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr("cellship.train.kubernetes.podlogs.LOG_RETRY_FIRST_SECONDS", 0.01)
    job = submit(backend)
    (w0,) = pod_names(job, ["worker-0"])
    kube.logs[w0] = ["one", "two", KubernetesError("stream broke", 500), "three"]
    kube.set_pod(NS, w0, running())
    seen = []
    for line in backend.logs(job, follow=True):
        seen.append(line.text)
        if line.text == "three":
            kube.set_pod(NS, w0, done())
    assert seen == ["one", "two", "three"]
    assert sum(1 for c in kube.calls if c[0] == "log") >= 2  # it reconnected


@pytest.mark.parametrize("raw, stamp, text", [
    ("2026-11-25T15:00:01.5Z hi there", ("2026-11-25T15:00:01", 500000000), "hi there"),
    ("2026-11-25T15:00:01Z x", ("2026-11-25T15:00:01", 0), "x"),
    ("no stamp here", None, "no stamp here"),
])
def test_split_timestamp(raw, stamp, text) -> None:
    assert split_timestamp(raw) == (stamp, text)
    assert split_timestamp("2026-11-25T15:00:01.5Z a")[0] > split_timestamp("2026-11-25T15:00:01.12Z a")[0]


def test_tfjob_launcher(store) -> None:
    kube = FakeKube(tfjob_crd=True)
    backend = KubernetesBackend(store, KubernetesOptions(image="tf:test", namespace=NS,
                                                         launcher="tfjob"),
                                client_factory=lambda options: kube)
    job = submit(backend, workers=2)
    prefix = f"digits-cnn-{job.id}"
    assert [c[:2] for c in kube.calls] == [("create", "TFJob"), ("create", "ConfigMap")]
    cm = kube.objects[("ConfigMap", NS, prefix)]
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "TFJob"
    backend.cancel(job)
    assert kube.objects == {}


def test_tfjob_launcher_without_the_crd(store) -> None:
    backend = KubernetesBackend(store, KubernetesOptions(image="tf:test", launcher="tfjob"),
                                client_factory=lambda options: FakeKube(tfjob_crd=False))
    with pytest.raises(Exception, match="training operator"):
        submit(backend)


def test_spec_options_override_the_backend_defaults(backend, kube) -> None:
    assert backend._options({"kubernetes": {"namespace": "other"}}).namespace == "other"


def test_get_backend_by_name(store) -> None:
    assert isinstance(get_backend("kubernetes", store), KubernetesBackend)


def test_a_deleted_pod_without_a_restart_budget_fails_the_job(backend, kube) -> None:
    job = submit(backend, workers=2)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    kube.set_pod(NS, w0, running())
    kube.set_pod(NS, w1, running())
    assert backend.refresh(job).status == "running"
    del kube.objects[("Pod", NS, w1)]
    record = backend.refresh(job)
    assert record.status == "failed", record
    assert record.error == ("worker 1 was lost: its pod was deleted, and its --max-restarts 0 "
                            "allows no restart."), record.error
    # Its peer would wait forever: the chief stays for the fetch of its files, but the
    # kubelet stops it after fetch_linger (600 s by default).
    chief = kube.objects[("Pod", NS, w0)]
    assert 0 < chief["spec"]["activeDeadlineSeconds"] <= 601


def recovery_events(store, job) -> list[str]:
    return [m for _, kind, m in store.events(job.id) if kind == "recovery"]


def test_a_deleted_pod_is_made_again_within_the_budget(backend, kube, store) -> None:
    job = submit(backend, workers=2, max_restarts=2)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    first = kube.objects[("Pod", NS, w1)]
    kube.set_pod(NS, w0, running())
    kube.set_pod(NS, w1, running())
    backend.refresh(job)
    del kube.objects[("Pod", NS, w1)]
    record = backend.refresh(job)
    assert record.status == "running"
    again = kube.objects[("Pod", NS, w1)]
    assert again["spec"] == first["spec"] and again["metadata"]["labels"] == first["metadata"]["labels"]
    assert [r.restarts for r in record.replicas] == [0, 1] and record.restarts == 1
    assert recovery_events(store, job) == [
        "worker 1 was lost (its pod was deleted); cellship made its pod again, to run on any "
        "ready node: restart 1 of 2"]
    # The new pod's restarts in place add to what its predecessor used.
    kube.set_pod(NS, w1, running(restarts=1))
    record = backend.refresh(job)
    assert [r.restarts for r in record.replicas] == [0, 2]
    assert recovery_events(store, job)[-1].startswith("worker 1 restarted in place")
    del kube.objects[("Pod", NS, w1)]
    record = backend.refresh(job)
    assert record.status == "failed"
    assert "worker 1 was lost: its pod was deleted, and its --max-restarts 2 is used up" in record.error


def test_an_evicted_pod_is_removed_then_made_again(backend, kube, store) -> None:
    job = submit(backend, workers=1, max_restarts=1)
    (w0,) = pod_names(job, ["worker-0"])
    kube.set_pod(NS, w0, {"phase": "Failed", "reason": "Evicted",
                          "message": "Usage of EmptyDir volume \"job\" exceeds the limit \"64Mi\"."})
    kube.objects[("Pod", NS, w0)]["spec"]["nodeName"] = "node-2"
    assert backend.refresh(job).status in ("pending", "running")
    assert ("Pod", NS, w0) not in kube.objects  # removed: its name must be free
    backend.refresh(job)
    assert kube.objects[("Pod", NS, w0)]["status"] == {"phase": "Pending"}  # made again
    assert recovery_events(store, job) == [
        'worker 0 was lost (node node-2 evicted its pod (Usage of EmptyDir volume "job" exceeds '
        'the limit "64Mi")); cellship made its pod again, to run on any ready node: restart 1 of 1']


def two_running(backend, kube, **spec):
    """A 2-worker job whose pods both run, looked at once: (job, worker 0's pod, worker 1's)."""
    job = submit(backend, workers=2, **spec)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    kube.set_pod(NS, w0, running())
    kube.set_pod(NS, w1, running())
    backend.refresh(job)
    return job, w0, w1


def test_a_pod_stranded_on_a_dead_node_is_force_deleted(backend, kube) -> None:
    job, w0, w1 = two_running(backend, kube, max_restarts=1)
    pod = kube.objects[("Pod", NS, w1)]
    pod["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"  # its grace ended long ago
    deleted: list = []
    real_delete = kube.delete
    kube.delete = lambda *a, **k: (deleted.append((a, k)), real_delete(*a, **k))[1]
    assert backend.refresh(job).status == "running"
    assert deleted and deleted[0][1]["grace_seconds"] == 0
    backend.refresh(job)
    assert ("Pod", NS, w1) in kube.objects and "deletionTimestamp" not in kube.objects[("Pod", NS, w1)]["metadata"]


def test_a_pod_being_deleted_is_waited_for_not_judged(backend, kube) -> None:
    job = submit(backend, workers=2, max_restarts=1)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    kube.set_pod(NS, w0, running())
    kube.set_pod(NS, w1, done(code=143))
    kube.objects[("Pod", NS, w1)]["metadata"]["deletionTimestamp"] = "2999-01-01T00:00:00Z"
    record = backend.refresh(job)
    assert record.status == "running" and record.error is None


def test_a_cancelled_job_is_not_recovered(backend, kube) -> None:
    job, w0, w1 = two_running(backend, kube, max_restarts=2)
    kube.objects[("ConfigMap", NS, f"digits-cnn-{job.id}")]["metadata"]["deletionTimestamp"] = "x"
    del kube.objects[("Pod", NS, w1)]
    backend.refresh(job)
    assert ("Pod", NS, w1) not in kube.objects


def gpu_node(name: str, gpus: int) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "2"}}}


def test_a_job_wanting_more_gpus_than_are_free_says_how_many(backend, kube) -> None:
    """Three workers of one GPU each on a node with two, one of them held by another
    job: the message counts the job's need against what is free, not per pod."""
    kube.add(gpu_node("gpu-node", 2))
    other = kube.add({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "someone-else", "namespace": "team"},
                      "spec": {"nodeName": "gpu-node", "containers": [
                          {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}},
                     status={"phase": "Running"})
    assert other
    job = submit(backend, workers=3, gpus=1, startup_timeout=30)
    w0, w1, w2 = pod_names(job, ["worker-0", "worker-1", "worker-2"])
    kube.set_pod(NS, w0, running())
    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    for pod in (w1, w2):
        kube.set_pod(NS, pod, {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": message}]})
    # The scheduler bound worker 0 to the node: it counts as the job's own, not as used.
    kube.objects[("Pod", NS, w0)]["spec"]["nodeName"] = "gpu-node"
    record = backend.refresh(job)
    assert record.status == "pending"
    assert "needs 3 nvidia.com/gpu, 1 free (the cluster has 2 in all)" in record.error, record.error
    assert message in record.error  # the scheduler's own words follow


def test_gpu_pods_tolerate_the_gpu_taint_and_others_do_not(backend, kube) -> None:
    job = submit(backend, workers=1, ps=1, gpus=1)
    chief, ps = pod_names(job, ["chief-0", "ps-0"])
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in kube.objects[("Pod", NS, chief)]["spec"]["tolerations"]
    assert toleration not in kube.objects[("Pod", NS, ps)]["spec"]["tolerations"]
    env = {e["name"]: e["value"] for e in
           kube.objects[("Pod", NS, chief)]["spec"]["containers"][0]["env"]}
    assert env["CELLSHIP_GPUS"] == "1" and env["CELLSHIP_KEEPER"] == "1"


def test_the_chief_keeps_its_pod_for_the_fetch_and_the_duration_is_the_run_time(backend,
                                                                                kube) -> None:
    job = submit(backend, workers=2)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    spec = kube.objects[("Pod", NS, w0)]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["tensorflow", "keeper"]
    assert [c["name"] for c in kube.objects[("Pod", NS, w1)]["spec"]["containers"]] == ["tensorflow"]
    ran = {"startedAt": "2026-11-25T15:00:00Z", "finishedAt": "2026-11-25T15:00:42Z",
           "exitCode": 0, "reason": "Completed"}
    # Sorted by name, as the kubelet sends them: the keeper's status comes first.
    kube.set_pod(NS, w0, {"phase": "Running", "containerStatuses": [
        {"name": "keeper", "restartCount": 0, "state": {"running": {}}},
        {"name": "tensorflow", "restartCount": 0, "state": {"terminated": ran}}]})
    kube.set_pod(NS, w1, {"phase": "Succeeded", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0,
         "state": {"terminated": ran | {"startedAt": "2026-11-25T15:00:01Z"}}}]})
    record = backend.refresh(job)
    assert record.status == "succeeded", record.error
    assert record.duration == pytest.approx(42.0)
    assert ("Pod", NS, w0) in kube.objects  # the keeper holds it for the fetch


def test_each_replica_records_its_pod_node_and_why_it_cannot_start(backend, kube) -> None:
    """Worker 0 is bound to a node and pulls an image that is not there, worker 1 has no
    node for it: each row says its own pod, node and reason, not the job's joined error;
    a pod that recovers clears its reason."""
    job = submit(backend, workers=2, startup_timeout=300)
    w0, w1 = pod_names(job, ["worker-0", "worker-1"])
    record = backend.store.get_job(job.id)  # before any refresh: the pod names are known
    assert [(r.pod, r.node, r.reason) for r in record.replicas] == [(w0, None, None),
                                                                    (w1, None, None)]
    kube.objects[("Pod", NS, w0)]["spec"]["nodeName"] = "127.0.0.1"
    kube.set_pod(NS, w0, {"phase": "Pending", "containerStatuses": [
        {"name": "tensorflow", "restartCount": 0, "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"tf:test\""}}}]})
    unschedulable = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    kube.set_pod(NS, w1, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": unschedulable}]})
    record = backend.refresh(job)
    assert record.status == "pending"
    r0, r1 = record.replicas
    assert (r0.pod, r0.node, r0.reason) == (w0, "127.0.0.1", "ImagePull")
    assert "cannot pull its image 'tf:test'" in r0.diagnosis and "node selector" not in r0.diagnosis
    assert (r1.pod, r1.node, r1.reason) == (w1, None, "Unschedulable")
    assert "node selector" in r1.diagnosis and unschedulable in r1.diagnosis
    assert "pull" not in r1.diagnosis
    assert r0.diagnosis in record.error and r1.diagnosis in record.error
    # worker 0 pulled its image after all and runs: its reason goes, worker 1's stays
    kube.set_pod(NS, w0, running())
    r0, r1 = backend.refresh(job).replicas
    assert (r0.state, r0.node, r0.reason, r0.diagnosis) == ("running", "127.0.0.1", None, None)
    assert r1.reason == "Unschedulable"


def test_tfjob_pods_are_named_on_refresh(store) -> None:
    """The operator names a TFJob's pods itself: the name comes from the pod found."""
    kube = FakeKube(tfjob_crd=True)
    backend = KubernetesBackend(store, KubernetesOptions(image="tf:test", namespace=NS,
                                                         launcher="tfjob"),
                                client_factory=lambda options: kube)
    job = submit(backend)
    assert store.get_job(job.id).replicas[0].pod is None
    kube.add({"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "op-made-worker-0", "namespace": NS, "labels": {
                  LABEL_JOB_ID: label_value(job.id),
                  "training.kubeflow.org/replica-type": "worker",
                  "training.kubeflow.org/replica-index": "0"}},
              "spec": {"nodeName": "node-b", "containers": [{"name": "tensorflow"}]}},
             status=running())
    (r0,) = backend.refresh(job).replicas
    assert (r0.pod, r0.node, r0.state) == ("op-made-worker-0", "node-b", "running")
