"""Release records in the store: the running row is the lock, who is recorded, the table."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cellship.errors import ReleaseBusy, UsageError
from cellship.processes import pid_alive
from cellship.release import pipeline, records
from cellship.store import ReleaseRecord


def _record(rid: str, model: str = "digits", pid: int | None = None, started: float = 1.0,
            **fields) -> ReleaseRecord:
    return ReleaseRecord(id=rid, kind="release", model=model, target="local", outcome="running",
                         user="ana", started=started, pid=pid or os.getpid(), **fields)


def test_a_second_release_of_a_model_is_refused_while_the_first_runs(store):
    assert store.begin_release(_record("r1"), pid_alive) is None
    running = store.begin_release(_record("r2", started=2.0), pid_alive)
    assert running is not None and running.id == "r1"
    assert store.begin_release(_record("r3", model="other"), pid_alive) is None  # other model
    with pytest.raises(ReleaseBusy, match=r"Release r1 of digits is running \(pid \d+, started by ana"):
        pipeline._begin(store, _record("r4"))
    assert [r.id for r in store.list_releases("digits")] == ["r1"]


def test_a_running_record_whose_process_died_no_longer_blocks(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.begin_release(_record("old", pid=dead.pid), pid_alive)
    assert store.begin_release(_record("new", started=5.0), pid_alive) is None
    old, new = store.list_releases("digits")
    assert (old.id, old.outcome, old.ended) == ("old", "interrupted", 5.0)
    assert "process ended" in (old.reason or "")
    assert new.outcome == "running"


def test_records_keep_gates_parameters_and_details(store):
    store.begin_release(_record("r1", notebook="/n/train.ipynb", parameters={"lr": 0.1}), pid_alive)
    store.update_release("r1", version=2, previous=1, outcome="promoted", ended=9.0,
                         gates=[{"gate": "record:acc >= 0.9", "value": 0.95, "passed": True}],
                         details={"canary": {"difference": 0.0}})
    (r,) = store.list_releases("digits")
    assert (r.version, r.previous, r.outcome, r.parameters) == (2, 1, "promoted", {"lr": 0.1})
    assert r.gates[0]["value"] == 0.95 and r.details["canary"]["difference"] == 0.0
    assert store.get_release("r1") == r
    with pytest.raises(ValueError):
        store.update_release("r1", model="x")  # not a column callers may change
    table = records.table([r])
    header, row = table.splitlines()
    assert header.split()[:6] == ["ID", "VERSION", "OUTCOME", "STEP", "WHEN", "WHO"]
    assert row.split()[:3] == ["r1", "2", "promoted"] and "train.ipynb" in row
    assert "record:acc >= 0.9 [0.95]" in row and "lr=0.1" in row


def test_who_is_the_hub_user_when_there_is_one(monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "maria")
    assert records.who() == "maria"
    monkeypatch.delenv("JUPYTERHUB_USER")
    assert records.who() and records.who() != "maria"


def test_kubernetes_needs_a_registry_and_a_base():
    from cellship.release.targets import get_target

    with pytest.raises(UsageError, match="needs --registry"):
        get_target("kubernetes")
    with pytest.raises(UsageError, match="needs --base"):
        get_target("kubernetes", registry="127.0.0.1:5000")
    target = get_target("kubernetes", registry="127.0.0.1:5000/team/", base="b/p:1",
                        replicas=4, canary=25, namespace=None)
    assert (target.name, target.registry, target.canary_pods) == ("kubernetes",
                                                                  "127.0.0.1:5000/team", 1)
