"""How a lost replica is recognised and how its restarts are told (train/kubernetes/recovery.py)."""

from cellship.train.kubernetes import recovery


def pod(**status) -> dict:
    return {"metadata": {"name": "p"}, "spec": {"nodeName": "node-2"}, "status": status}


def test_a_missing_pod_is_lost() -> None:
    assert recovery.loss(None, 0) == recovery.Loss("its pod was deleted", remove=False)


def test_an_evicted_pod_is_lost_with_the_kubelets_words() -> None:
    found = recovery.loss(pod(phase="Failed", reason="Evicted", message="Low on disk."), 0)
    assert found == recovery.Loss("node node-2 evicted its pod (Low on disk)", remove=True)


def test_a_deletion_past_its_grace_means_the_node_is_gone() -> None:
    stuck = pod(phase="Running")
    stuck["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    at = 1767225600.0  # that very second
    assert recovery.loss(stuck, at + 1) is None  # a live kubelet may still confirm it
    assert recovery.is_going(stuck)
    found = recovery.loss(stuck, at + recovery.OVERDUE_SECONDS + 1)
    assert found is not None and found.remove and "node-2 stopped answering" in found.why


def test_a_running_pod_is_not_lost() -> None:
    assert recovery.loss(pod(phase="Running"), 0) is None
    assert recovery.loss(pod(phase="Failed", reason="Error"), 0) is None  # the program's own


def test_restart_words_say_how_the_container_ended() -> None:
    def ended(**terminated) -> dict:
        found = pod(containerStatuses=[{"name": "tensorflow", "lastState": {"terminated": terminated}}])
        found["spec"]["containers"] = [{"resources": {"limits": {"memory": "1Gi"}}}]
        return found

    assert recovery.restart_words(ended(reason="OOMKilled", exitCode=137)) == \
        "it was killed for going over its memory limit (1Gi)"
    assert recovery.restart_words(ended(reason="Error", exitCode=137)) == \
        "it was killed (SIGKILL, exit code 137)"
    assert recovery.restart_words(ended(reason="Error", exitCode=1)) == "it exited with code 1"
