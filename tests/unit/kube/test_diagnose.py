"""Pod status + events -> plain-words reasons, from realistic `kubectl get -o json` shapes."""

from __future__ import annotations

import pytest

from cellship.kube.diagnose import diagnose


def pod(phase: str = "Pending", conditions: list | None = None, cs: dict | None = None) -> dict:
    status: dict = {"phase": phase}
    if conditions:
        status["conditions"] = conditions
    if cs is not None:
        status["containerStatuses"] = [{"name": "tensorflow", "ready": False,
                                        "image": "registry.local/tf:2.16", **cs}]
    return {"metadata": {"name": "job-abc-worker-0", "namespace": "ml"},
            "spec": {"containers": [{"name": "tensorflow", "image": "registry.local/tf:2.16"}]},
            "status": status}


def event(reason: str, message: str, ts: str = "2026-11-25T15:00:00Z") -> dict:
    return {"type": "Warning", "reason": reason, "message": message, "lastTimestamp": ts,
            "involvedObject": {"kind": "Pod", "name": "job-abc-worker-0"}}


GPU_EVENT = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
CASES = [
    ("gpu", pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": GPU_EVENT}]),
     [event("FailedScheduling", GPU_EVENT)], "Unschedulable", False,
     ["no node has a free nvidia.com/gpu", GPU_EVENT]),
    ("cpu+memory", pod(), [event("FailedScheduling",
                                 "0/2 nodes are available: 1 Insufficient cpu, 2 Insufficient memory.")],
     "Unschedulable", False, ["a free cpu, a free memory"]),
    ("selector", pod(conditions=[{"type": "PodScheduled", "status": "False",
                                  "message": "0/1 nodes are available: 1 node(s) didn't match node selector."}]),
     [], "Unschedulable", False, ["node selector"]),
    ("taint", pod(), [event("FailedScheduling", "0/1 nodes are available: 1 node(s) had taint "
                            "{gpu: true}, that the pod didn't tolerate.")],
     "Unschedulable", False, ["toleration"]),
    ("pull", pod(cs={"state": {"waiting": {"reason": "ErrImagePull",
                                           "message": "rpc error: code = NotFound desc = failed to pull"}},
                     "restartCount": 0}),
     [event("Failed", 'Failed to pull image "registry.local/tf:2.16": not found')],
     "ImagePull", False, ["cannot pull its image 'registry.local/tf:2.16'", "image_pull_secrets",
                          "Failed to pull image"]),
    ("backoff", pod(cs={"state": {"waiting": {"reason": "ImagePullBackOff",
                                              "message": "Back-off pulling image"}}, "restartCount": 0}),
     [], "ImagePull", False, ["Back-off pulling image"]),
    ("invalid", pod(cs={"state": {"waiting": {"reason": "InvalidImageName",
                                              "message": "couldn't parse image reference"}}}),
     [], "ImagePull", True, ["couldn't parse"]),
    ("crashloop", pod("Running", cs={"state": {"waiting": {"reason": "CrashLoopBackOff",
                                                           "message": "back-off 40s restarting failed container"}},
                                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                                     "restartCount": 3}),
     [], "CrashLoop", True, ["keeps crashing", "restarted 3 time(s)", "last exit code 1"]),
    ("oom", pod("Failed", cs={"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                              "restartCount": 0}),
     [], "OOMKilled", True, ["out of memory", "exit code 137", "memory"]),
    ("oom-restarting", pod("Running", cs={"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                          "lastState": {"terminated": {"exitCode": 137,
                                                                       "reason": "OOMKilled"}},
                                          "restartCount": 2}),
     [], "OOMKilled", True, ["OOMKilled"]),
    ("config", pod(cs={"state": {"waiting": {"reason": "CreateContainerConfigError",
                                             "message": "container has runAsNonRoot and image will run as root"}}}),
     [], "ContainerConfig", True, ["run_as_user", "image will run as root"]),
    ("failed", pod("Failed", cs={"state": {"terminated": {"exitCode": 3, "reason": "Error"}}}),
     [], "Failed", True, ["exit code 3", "cellship logs"]),
]


@pytest.mark.parametrize("case, p, events, reason, fatal, words", CASES, ids=[c[0] for c in CASES])
def test_diagnosis(case, p, events, reason, fatal, words) -> None:
    found = diagnose(p, events)
    assert found is not None
    assert (found.reason, found.fatal) == (reason, fatal)
    for word in words:
        assert word in found.message


@pytest.mark.parametrize("p", [
    pod(),  # just created, not yet looked at by the scheduler
    pod("Pending", cs={"state": {"waiting": {"reason": "ContainerCreating"}}}),
    pod("Running", cs={"state": {"running": {"startedAt": "x"}}, "restartCount": 0}),
    pod("Succeeded", cs={"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}),
    pod("Running", cs={"state": {"running": {}}, "restartCount": 1,
                       "lastState": {"terminated": {"exitCode": 1}}}),  # within --max-restarts 2
])
def test_healthy_pods_have_no_diagnosis(p) -> None:
    assert diagnose(p, [], max_restarts=2) is None


def test_normal_events_are_not_shown() -> None:
    found = diagnose(pod(), [event("FailedScheduling", GPU_EVENT),
                             {"type": "Normal", "reason": "Scheduled", "message": "ok"}])
    assert "ok" not in found.message


def test_an_oom_kill_within_the_restart_budget_is_not_fatal() -> None:
    """The kubelet restarts it in place (cellship's recovery tells the cell); only an OOM
    kill after the last allowed restart fails the job."""
    def oom_pod(restarts: int, waiting: bool) -> dict:
        state = {"waiting": {"reason": "CrashLoopBackOff"}} if waiting else {"running": {}}
        return pod("Running", cs={"state": state, "restartCount": restarts,
                                  "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}})

    assert diagnose(oom_pod(0, waiting=True), [], max_restarts=2).fatal is False
    assert diagnose(oom_pod(1, waiting=False), [], max_restarts=2) is None
    found = diagnose(oom_pod(2, waiting=True), [], max_restarts=2)
    assert found.reason == "OOMKilled" and found.fatal
