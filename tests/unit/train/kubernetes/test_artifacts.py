"""What a fetch says when the chief pod's files cannot be read."""

from __future__ import annotations

from cellship.train.kubernetes.artifacts import unreadable

NAME = "digits-1234-worker-0"


def keeper(state: dict) -> dict:
    return {"name": "keeper", "state": state}


def test_an_evicted_pod_says_what_was_lost() -> None:
    pod = {"status": {"phase": "Failed", "reason": "Evicted",
                      "message": "The node was low on resource: ephemeral-storage.",
                      "containerStatuses": [keeper({"terminated": {"exitCode": 137}})]}}
    text = unreadable(pod, NAME)
    assert text is not None and "evicted" in text and "ephemeral-storage" in text
    assert "output dir, logdir and backup dir" in text and "lost" in text


def test_gone_ended_pending_and_readable() -> None:
    assert "is gone" in (unreadable(None, NAME) or "")
    ended = {"status": {"phase": "Succeeded",
                        "containerStatuses": [keeper({"terminated": {"exitCode": 0}})]}}
    assert "has ended" in (unreadable(ended, NAME) or "")
    assert "not running yet" in (unreadable({"status": {"phase": "Pending"}}, NAME) or "")
    running = {"status": {"phase": "Running",
                          "containerStatuses": [keeper({"running": {}}),
                                                {"name": "tensorflow",
                                                 "state": {"terminated": {"exitCode": 0}}}]}}
    assert unreadable(running, NAME) is None
