"""cellship.store (the SQLite job store) and cellship.paths (where it lives)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cellship import paths
from cellship.errors import JobNotFound, StoreError
from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.store.db import SCHEMA_VERSION


def replica(job_id: str, type_: str, index: int) -> ReplicaRecord:
    return ReplicaRecord(job_id=job_id, type=type_, index=index, state="pending", exit_code=None,
                         pid=None, restarts=0, log_path=f"/logs/{type_}-{index}.log", address=None)


def record(job_id: str, name: str = "job", created: float = 1000.0, status: str = "pending",
           replicas: tuple[ReplicaRecord, ...] = ()) -> JobRecord:
    return JobRecord(id=job_id, name=name, status=status, backend="local",
                     spec={"workers": 1, "strategy": "single"}, job_dir=f"/jobs/{job_id}",
                     output_dir=f"/jobs/{job_id}/output", logdir=f"/jobs/{job_id}/tb",
                     created=created, replicas=replicas, source="train.py")


# -- create / get / find -----------------------------------------------------------------

def test_create_and_get_round_trip(store):
    reps = (replica("abcd1234", "ps", 0), replica("abcd1234", "worker", 1),
            replica("abcd1234", "worker", 0), replica("abcd1234", "chief", 0))
    store.create_job(record("abcd1234", "exp", replicas=reps))
    job = store.get_job("abcd1234")
    assert (job.id, job.name, job.status, job.backend) == ("abcd1234", "exp", "pending", "local")
    assert job.spec == {"workers": 1, "strategy": "single"}
    assert job.source == "train.py" and not job.done and job.duration is None
    # replicas come back chief, workers, ps whatever the insertion order
    assert [r.label for r in job.replicas] == ["chief", "worker 0", "worker 1", "ps 0"]
    assert job.replicas[1].log_path == "/logs/worker-0.log"


def test_get_unknown_id(store):
    with pytest.raises(JobNotFound, match="'nope'"):
        store.get_job("nope")


def test_find_by_id_prefix_and_name(store):
    store.create_job(record("abcd1234", "first", created=1))
    store.create_job(record("ef567890", "second", created=2))
    assert store.find_job("abcd1234").name == "first"
    assert store.find_job("ab").id == "abcd1234"
    assert store.find_job("second").id == "ef567890"
    assert store.find_job("  second \n").id == "ef567890"


def test_name_wins_over_id_prefix(store):
    store.create_job(record("abcd1234", "first", created=1))
    store.create_job(record("ef567890", "abc", created=2))
    assert store.find_job("abc").id == "ef567890"


def test_ambiguous_name_lists_ids(store):
    store.create_job(record("11111111", "exp", created=1))
    store.create_job(record("22222222", "exp", created=2))
    with pytest.raises(JobNotFound) as info:
        store.find_job("exp")
    message = str(info.value)
    assert "2 jobs are named 'exp'" in message
    assert "11111111" in message and "22222222" in message


def test_ambiguous_prefix_lists_ids(store):
    store.create_job(record("abc11111", "one", created=1))
    store.create_job(record("abc22222", "two", created=2))
    store.create_job(record("fff33333", "three", created=3))
    with pytest.raises(JobNotFound) as info:
        store.find_job("abc")
    message = str(info.value)
    assert "matches several job ids" in message
    assert "abc11111" in message and "abc22222" in message and "fff33333" not in message


@pytest.mark.parametrize("ref", ["zzz", "abcd12345", "", "   "])
def test_unknown_ref(store, ref):
    store.create_job(record("abcd1234", "first"))
    with pytest.raises(JobNotFound) as info:
        store.find_job(ref)
    if ref.strip():
        assert repr(ref) in str(info.value)


@pytest.mark.parametrize("ref", ["%", "_"])
def test_wildcard_characters_are_not_prefixes(store, ref):
    store.create_job(record("abcd1234", "first"))
    with pytest.raises(JobNotFound):
        store.find_job(ref)


# -- status transitions ---------------------------------------------------------------------

def test_transition_happy_path_records_fields_and_events(store):
    store.create_job(record("j1", "exp"))
    assert store.transition("j1", "running", started=10.0)
    assert store.transition("j1", "succeeded", ended=25.0)
    job = store.get_job("j1")
    assert job.status == "succeeded" and job.done
    assert (job.started, job.ended, job.duration) == (10.0, 25.0, 15.0)
    kinds = [(kind, message) for _, kind, message in store.events("j1")]
    assert kinds == [("created", "job exp created"), ("status", "status -> running"),
                     ("status", "status -> succeeded")]


def test_failed_transition_records_the_error_in_the_event(store):
    store.create_job(record("j1"))
    assert store.transition("j1", "failed", error="worker 0 exited with code 1")
    assert store.get_job("j1").error == "worker 0 exited with code 1"
    assert store.events("j1")[-1][2] == "status -> failed: worker 0 exited with code 1"


@pytest.mark.parametrize("path, target", [
    ([], "succeeded"),                      # pending cannot succeed without running
    ([], "pending"),
    (["running"], "running"),
    (["running"], "pending"),
    (["running", "succeeded"], "failed"),
    (["running", "succeeded"], "cancelled"),
    (["running", "succeeded"], "running"),
    (["failed"], "cancelled"),
    (["failed"], "succeeded"),
    (["cancelled"], "failed"),
    (["running", "cancelled"], "succeeded"),
])
def test_transition_not_allowed(store, path, target):
    store.create_job(record("j1"))
    for status in path:
        assert store.transition("j1", status)
    events_before = store.events("j1")
    before = store.get_job("j1").status
    assert store.transition("j1", target, error="late", ended=99.0) is False
    job = store.get_job("j1")
    assert job.status == before
    assert job.error is None and job.ended is None
    assert store.events("j1") == events_before


@pytest.mark.parametrize("path", [["cancelled"], ["failed"], ["running", "cancelled"],
                                  ["running", "failed"]])
def test_allowed_endings(store, path):
    store.create_job(record("j1"))
    for status in path:
        assert store.transition("j1", status)
    assert store.get_job("j1").status == path[-1]


def test_transition_unknown_column(store):
    store.create_job(record("j1"))
    with pytest.raises(ValueError, match="not job columns"):
        store.transition("j1", "running", bogus=1)
    assert store.get_job("j1").status == "pending"


def test_transition_of_unknown_job_is_false(store):
    assert store.transition("nope", "running") is False


def test_add_event(store):
    store.create_job(record("j1"))
    store.add_event("j1", "restart", "attempt 2")
    assert store.events("j1")[-1][1:] == ("restart", "attempt 2")


# -- updates, listing, deletion -------------------------------------------------------------

def test_store_uses_wal_journal(store):
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_update_job_and_replica(store):
    store.create_job(record("j1", replicas=(replica("j1", "worker", 0), replica("j1", "worker", 1))))
    store.update_job("j1", supervisor_pid=4242, restarts=1)
    store.update_replica("j1", "worker", 1, state="failed", exit_code=3, pid=77, address="h:1")
    job = store.get_job("j1")
    assert (job.supervisor_pid, job.restarts) == (4242, 1)
    w0, w1 = job.replicas
    assert (w0.state, w0.exit_code, w0.pid) == ("pending", None, None)
    assert (w1.state, w1.exit_code, w1.pid, w1.address) == ("failed", 3, 77, "h:1")
    assert w1.to_dict()["exit_code"] == 3
    with pytest.raises(ValueError, match="not replica columns"):
        store.update_replica("j1", "worker", 0, type="ps")
    with pytest.raises(ValueError, match="not job columns"):
        store.update_job("j1", id="other")


def test_list_jobs_newest_first_with_status_filter_and_limit(store):
    store.create_job(record("old", created=1))
    store.create_job(record("new", created=3))
    store.create_job(record("mid", created=2))
    store.transition("mid", "running")
    assert [j.id for j in store.list_jobs()] == ["new", "mid", "old"]
    assert [j.id for j in store.list_jobs(status="running")] == ["mid"]
    assert [j.id for j in store.list_jobs(status="pending")] == ["new", "old"]
    assert [j.id for j in store.list_jobs(limit=2)] == ["new", "mid"]
    assert store.list_jobs(status="succeeded") == []
    assert store.count_jobs() == 3


def test_delete_job_cascades(store):
    store.create_job(record("j1", replicas=(replica("j1", "worker", 0),)))
    store.create_job(record("j2", replicas=(replica("j2", "worker", 0),)))
    store.delete_job("j1")
    with pytest.raises(JobNotFound):
        store.get_job("j1")
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT job_id FROM replicas").fetchall() == [("j2",)]
        assert {r[0] for r in db.execute("SELECT job_id FROM events")} == {"j2"}


def test_update_replica_where_it_runs_and_why_it_cannot_start(store):
    store.create_job(record("j1", replicas=(replica("j1", "worker", 0),)))
    (w0,) = store.get_job("j1").replicas
    assert (w0.pod, w0.node, w0.reason, w0.diagnosis) == (None, None, None, None)
    store.update_replica("j1", "worker", 0, pod="p-worker-0", reason="ImagePull",
                         diagnosis="cannot pull its image")
    (w0,) = store.get_job("j1").replicas
    assert (w0.pod, w0.node, w0.reason, w0.diagnosis) == (
        "p-worker-0", None, "ImagePull", "cannot pull its image")
    store.update_replica("j1", "worker", 0, node="node-a", reason=None, diagnosis=None)
    (w0,) = store.list_jobs()[0].replicas  # the batched read path too
    assert (w0.pod, w0.node, w0.reason, w0.diagnosis) == ("p-worker-0", "node-a", None, None)
    assert w0.to_dict()["node"] == "node-a" and w0.to_dict()["pod"] == "p-worker-0"


# The store as cellship wrote it at schema versions 1 (jobs only) and 2 (plus batches and
# runs), before replicas had a pod, node, reason and diagnosis: copied from those versions.
_OLD_JOBS_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    backend TEXT NOT NULL, spec TEXT NOT NULL, job_dir TEXT NOT NULL, output_dir TEXT NOT NULL,
    logdir TEXT NOT NULL, created REAL NOT NULL, started REAL, ended REAL, error TEXT,
    supervisor_pid INTEGER, detached INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0, source TEXT);
CREATE INDEX jobs_name ON jobs(name);
CREATE INDEX jobs_created ON jobs(created);
CREATE TABLE replicas (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    type TEXT NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL, exit_code INTEGER,
    pid INTEGER, restarts INTEGER NOT NULL DEFAULT 0, log_path TEXT NOT NULL, address TEXT,
    PRIMARY KEY (job_id, type, idx));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, ts REAL NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX events_job ON events(job_id, seq);
"""
_OLD_BATCHES_SCHEMA = """
CREATE TABLE batches (id TEXT PRIMARY KEY, name TEXT NOT NULL, notebook TEXT NOT NULL,
    status TEXT NOT NULL, backend TEXT NOT NULL, parallel INTEGER NOT NULL, kernel TEXT,
    output_dir TEXT NOT NULL, cwd TEXT NOT NULL, created REAL NOT NULL, started REAL,
    ended REAL, coordinator_pid INTEGER, error TEXT);
CREATE INDEX batches_name ON batches(name);
CREATE TABLE runs (batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, parameters TEXT NOT NULL, status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, output_path TEXT NOT NULL, log_path TEXT NOT NULL,
    started REAL, ended REAL, error TEXT, pid INTEGER, recorded TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (batch_id, idx));
"""


def _old_store(path: Path, version: int) -> None:
    """A store file as an older cellship left it: one finished job, two replicas, events."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(_OLD_JOBS_SCHEMA + (_OLD_BATCHES_SCHEMA if version >= 2 else ""))
    db.execute("INSERT INTO jobs (id, name, status, backend, spec, job_dir, output_dir, logdir,"
               " created, started, ended, error, restarts) VALUES"
               " ('old1', 'digits', 'failed', 'kubernetes', '{\"workers\": 2}', '/j', '/o',"
               " '/l', 10.0, 11.0, 12.0, 'boom', 1)")
    db.execute("INSERT INTO replicas VALUES ('old1', 'worker', 0, 'failed', 3, NULL, 1,"
               " '/l/worker-0.log', 'w0.svc:2222')")
    db.execute("INSERT INTO replicas VALUES ('old1', 'worker', 1, 'succeeded', 0, 42, 0,"
               " '/l/worker-1.log', NULL)")
    db.execute("INSERT INTO events (job_id, ts, kind, message) VALUES ('old1', 10.0, 'created',"
               " 'job digits created')")
    db.execute(f"PRAGMA user_version={version}")
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_store_opens_upgraded_and_keeps_its_data(tmp_path, version):
    path = tmp_path / "cellship.db"
    _old_store(path, version)
    store = Store(path)
    job = store.get_job("old1")
    assert (job.name, job.status, job.backend, job.error, job.restarts) == (
        "digits", "failed", "kubernetes", "boom", 1)
    assert (job.spec, job.started, job.ended) == ({"workers": 2}, 11.0, 12.0)
    w0, w1 = job.replicas
    assert (w0.state, w0.exit_code, w0.restarts, w0.log_path, w0.address) == (
        "failed", 3, 1, "/l/worker-0.log", "w0.svc:2222")
    assert (w1.state, w1.exit_code, w1.pid, w1.address) == ("succeeded", 0, 42, None)
    assert (w0.pod, w0.node, w0.reason, w0.diagnosis) == (None, None, None, None)
    assert store.events("old1") == [(10.0, "created", "job digits created")]
    # the new columns are there to write, and the version says so for the next opening
    store.update_replica("old1", "worker", 0, pod="p0", node="n1", reason="Unschedulable",
                         diagnosis="Pod cannot be scheduled yet.")
    reopened = Store(path)
    (w0, _) = reopened.get_job("old1").replicas
    assert (w0.pod, w0.node, w0.reason, w0.diagnosis) == (
        "p0", "n1", "Unschedulable", "Pod cannot be scheduled yet.")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    store.create_job(record("new1", replicas=(replica("new1", "worker", 0),)))
    assert [j.id for j in reopened.list_jobs()] == ["new1", "old1"]
    assert reopened.list_batches() == []  # a version-1 store gained the batch tables
    assert reopened.list_releases("digits") == []  # and every store older than 4, releases


def test_store_from_a_newer_cellship_is_refused(tmp_path):
    path = tmp_path / "cellship.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StoreError, match="newer cellship"):
        Store(path)


def test_damaged_store_is_refused(tmp_path):
    path = tmp_path / "cellship.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot be opened"):
        Store(path)


def test_two_store_objects_see_the_same_jobs(store):
    other = Store(store.path)
    store.create_job(record("j1"))
    assert other.get_job("j1").id == "j1"
    assert other.transition("j1", "cancelled")
    assert store.transition("j1", "running") is False


# -- paths ---------------------------------------------------------------------------------

def test_cellship_home_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLSHIP_HOME", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.home() == tmp_path / "explicit"
    assert paths.home().is_dir()
    assert paths.store_path() == tmp_path / "explicit" / "cellship.db"
    assert paths.jobs_dir() == tmp_path / "explicit" / "jobs" and paths.jobs_dir().is_dir()
    assert not (tmp_path / "xdg").exists()


def test_cellship_home_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CELLSHIP_HOME", "~/state")
    assert paths.home() == tmp_path / "state"


def test_xdg_data_home_is_respected(tmp_path, monkeypatch):
    monkeypatch.delenv("CELLSHIP_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.home() == tmp_path / "xdg" / "cellship"
    assert Store.default().path == tmp_path / "xdg" / "cellship" / "cellship.db"
    assert Path(tmp_path / "xdg" / "cellship" / "cellship.db").exists()


def test_update_replica_without_fields_is_a_no_op(store):
    store.create_job(record("j1", replicas=(replica("j1", "worker", 0),)))
    store.update_replica("j1", "worker", 0)
    assert store.get_job("j1").replicas[0].state == "pending"


def test_transition_to_an_unknown_status_is_refused(store):
    store.create_job(record("j1"))
    with pytest.raises(ValueError, match="unknown job status 'bogus'"):
        store.transition("j1", "bogus")



# Each opener is its own interpreter (fork + exec through subprocess), started together and
# released at one wall-clock instant. A bare ``fork`` of the test process is not safe here:
# by the time this test runs, earlier tests have left threads (TensorFlow's pools, servers)
# whose locks a forked child can inherit held, and one such child once hung, so CI's
# multiprocessing ``join`` at exit waited until the job's time ran out.
_OPENER = """
import sys, time
from cellship.store import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    Store(sys.argv[1])
    print("ok")
except Exception as err:
    print(repr(err))
"""


def _open_store_together(path: str, count: int) -> list[str]:
    """What each of ``count`` processes opening ``path`` at the same instant reported."""
    release = time.time() + 1.0  # after every interpreter has imported cellship.store (~0.1 s)
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, path, str(release)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(count)]
    try:
        return [proc.communicate(timeout=90)[0].strip() for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_many_processes_creating_the_same_store_at_once_all_succeed(tmp_path: Path) -> None:
    """CI once saw "database is locked" when a server and a test created one store together."""
    for attempt in range(4):
        path = str(tmp_path / f"race{attempt}" / "cellship.db")
        assert _open_store_together(path, 8) == ["ok"] * 8


def test_many_processes_upgrading_the_same_old_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Kernels, the server and a CLI may all open a store an older cellship left: one of
    them adds the columns, the others find them there (no "duplicate column" error)."""
    for attempt in range(3):
        path = tmp_path / f"old{attempt}" / "cellship.db"
        path.parent.mkdir()
        _old_store(path, 2)
        assert _open_store_together(str(path), 6) == ["ok"] * 6
        assert Store(path).get_job("old1").replicas[0].address == "w0.svc:2222"
