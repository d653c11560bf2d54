"""A release whose process died mid-release: ``releases`` shows it interrupted at its step,
``resume`` / ``rollback`` / the next release finish it (the staged version moved aside,
the canary folder gone, the served version untouched). File moves only: the version
directories need just a saved_model.pb to count, no TensorFlow is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellship.errors import ReleaseBusy
from cellship.processes import pid_alive
from cellship.release import pipeline, records
from cellship.release.targets import REJECTED, LocalTarget
from cellship.store import ReleaseRecord


def _version(path: Path, number: int, release: str | None = None) -> None:
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    (path / "cellship-manifest.json").write_text(json.dumps(
        {"version": number, "source": {"kind": "notebook", "release": release}}))


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _killed_at_canary(store, repo: Path, rid: str = "dead01", version: int = 2,
                      step: str = "canary") -> Path:
    """What a release killed in its canary window leaves: its running record (a dead pid,
    the step it reached) and MODEL/.canary-<id>/ with the link to the current version and
    the staged one."""
    base = repo / "digits"
    canary = base / f".canary-{rid}" / "digits"
    canary.mkdir(parents=True)
    os.symlink(base / "1", canary / "1")
    _version(canary / str(version), version, rid)
    store.begin_release(ReleaseRecord(id=rid, kind="release", model="digits", target="local",
                                      outcome="running", user="ana", started=1.0,
                                      pid=_dead_pid(), details={"repository": str(repo)}),
                        pid_alive)
    store.update_release(rid, version=version, previous=1, failed_step=step)
    return base


def test_releases_shows_a_dead_running_release_as_interrupted_with_its_step(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    _killed_at_canary(store, repo)
    assert store.list_releases("digits")[0].outcome == "running"  # as the dead process left it
    (r,) = pipeline.history("digits", store)
    assert (r.outcome, r.failed_step) == ("interrupted", "canary")
    row = records.table([r]).splitlines()[1].split()
    assert row[:4] == ["dead01", "2", "interrupted", "canary"]
    why = records.reasons([r])
    assert "process ended" in why and "`cellship release --resume digits`" in why


def test_resume_moves_the_staged_version_aside_and_removes_the_canary_folder(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    base = _killed_at_canary(store, repo)
    (r,) = pipeline.resume("digits", store=store)  # the repository comes from the record
    assert (r.outcome, r.failed_step, r.version) == ("rolled-back", "canary", 2)
    assert "interrupted at step canary" in r.reason and "nothing was promoted" in r.reason
    assert r.details["finished"]["how"] == "--resume"
    assert sorted(p.name for p in base.iterdir()) == [REJECTED, "1"]  # no .canary-*
    assert (base / REJECTED / "2-dead01" / "saved_model.pb").is_file()  # kept, not deleted
    assert (base / "1" / "saved_model.pb").is_file()  # the link went, not what it pointed at
    assert LocalTarget(repo).current("digits").version == 1
    assert pipeline.resume("digits", store=store) == []  # nothing left to finish


def test_resume_of_a_release_killed_after_the_rename_of_promote_settles_it_promoted(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    base = _killed_at_canary(store, repo, step="promote")
    os.rename(base / ".canary-dead01" / "digits" / "2", base / "2")  # the rename happened
    (r,) = pipeline.resume("digits", store=store)
    assert (r.outcome, r.failed_step) == ("promoted", None)
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    assert LocalTarget(repo).current("digits").version == 2


def test_a_release_killed_mid_export_leaves_its_incoming_folder_moved_aside(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    base = repo / "digits"
    store.begin_release(ReleaseRecord(id="dead02", kind="release", model="digits", target="local",
                                      outcome="running", user="ana", started=1.0, pid=_dead_pid(),
                                      failed_step="stage", details={"repository": str(repo)}),
                        pid_alive)
    (base / ".canary-dead02" / "digits" / ".incoming-x" / "model").mkdir(parents=True)
    (r,) = pipeline.resume("digits", store=store)
    assert r.outcome == "rolled-back" and "what it left moved aside" in r.reason
    assert (base / REJECTED / ".incoming-x-dead02" / "model").is_dir()
    assert not list(base.glob(".canary-*"))


def test_resume_is_refused_while_a_release_of_the_model_runs(tmp_path, store):
    store.begin_release(ReleaseRecord(id="live01", kind="release", model="digits", target="local",
                                      outcome="running", user="ana", started=1.0,
                                      pid=os.getpid()), pid_alive)
    with pytest.raises(ReleaseBusy, match="Release live01 of digits is running"):
        pipeline.resume("digits", repository=tmp_path, store=store)


def test_rollback_finishes_an_interrupted_release_and_stops_there(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    base = _killed_at_canary(store, repo)
    record = pipeline.rollback("digits", repository=repo, store=store)
    # the interrupted v2 never served: undoing it leaves v1, not "the version before v1"
    assert (record.outcome, record.version, record.details["finished"]) == ("rollback", 1, ["dead01"])
    assert sorted(p.name for p in base.iterdir()) == [REJECTED, "1"]
    dead, _ = store.list_releases("digits")
    assert dead.outcome == "rolled-back" and dead.details["finished"]["how"].startswith("rollback ")


def test_rollback_to_a_version_finishes_the_interrupted_release_first(tmp_path, store):
    repo = tmp_path / "repo"
    _version(repo / "digits" / "1", 1)
    _version(repo / "digits" / "3", 3)
    base = _killed_at_canary(store, repo, version=4)
    os.rename(base / ".canary-dead01" / "digits" / "1", base / ".canary-dead01" / "digits" / "3")
    record = pipeline.rollback("digits", to=1, repository=repo, store=store)
    assert (record.previous, record.version) == (3, 1)
    assert sorted(p.name for p in (base / REJECTED).iterdir()) == [f"3-{record.id}", "4-dead01"]
    assert not list(base.glob(".canary-*"))
