"""The one small interface every backend implements, and the lifecycle it shares.

papermill's engine habit: the base class owns the lifecycle (preparing the job's
directory and record, cleaning up if launching fails); a backend fills in ``_launch`` and
the few operations that depend on where processes run.
"""

from __future__ import annotations

import abc
import json
import os
import secrets
import shutil
import time
from typing import Any, Callable, Iterator, Mapping

from cellship.errors import BackendError, CellshipError
from cellship.kube.meta import current_user
from cellship.paths import jobs_dir
from cellship.store import JobRecord, ReplicaRecord, Store
from cellship.train.program import Program
from cellship.train.spec import JobSpec
from cellship.watch.logstream import LogLine
from cellship.watch.metrics import ScalarPoint, decode_relay

PROGRAM_FILE = "program.py"


def new_job_id() -> str:
    """Short, unique, sortable-enough ids users can type: 8 hex characters."""
    return secrets.token_hex(4)


class Backend(abc.ABC):
    """Runs jobs somewhere. Subclasses implement launching, following and stopping."""

    name: str = ""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store or Store.default()

    # -- the lifecycle the base owns ----------------------------------------------------
    def submit(self, spec: JobSpec, program: Program, *, detached: bool = False,
               source: str | None = None, extra: Mapping[str, Any] | None = None) -> JobRecord:
        """Record the job, write its program, and launch it. Nothing is left behind when
        launching fails: the record is marked failed with the reason.

        ``extra`` are backend-specific sections stored beside the JobSpec's keys in the
        job's spec dict (e.g. ``{"kubernetes": {"image": ...}}``), so every later process
        that reads the record (``cellship cancel`` in a shell) sees them too."""
        clash = set(extra or {}) & (set(spec.to_dict()) | {"cwd", "batch_run"})
        if clash:
            raise ValueError(f"extra spec keys {sorted(clash)} would replace the job's own")
        self.check_ready(spec)
        job_id = new_job_id()
        job_dir = jobs_dir() / job_id
        name = spec.name or f"train-{self.store.count_jobs() + 1}"
        (job_dir / "logs").mkdir(parents=True)
        output_dir = job_dir / "output"
        logdir = job_dir / "tensorboard"
        output_dir.mkdir()
        logdir.mkdir()
        (job_dir / PROGRAM_FILE).write_text(program.source)
        if program.shipped:
            import cloudpickle

            with open(job_dir / "shipped.pkl", "wb") as handle:
                cloudpickle.dump({k: cloudpickle.loads(v) for k, v in program.shipped.items()}, handle)
        spec_data = spec.to_dict() | {"cwd": os.getcwd()} | dict(extra or {})
        if os.environ.get("CELLSHIP_BATCH_RUN"):  # submitted by a notebook a batch runs
            spec_data["batch_run"] = os.environ["CELLSHIP_BATCH_RUN"]
        (job_dir / "spec.json").write_text(json.dumps(spec_data, indent=2))
        replicas = tuple(
            ReplicaRecord(job_id=job_id, type=r.type, index=r.index, state="pending",
                          exit_code=None, pid=None, restarts=0,
                          log_path=str(job_dir / "logs" / f"{r.key}.log"), address=None)
            for r in spec.replicas())
        record = JobRecord(id=job_id, name=name, status="pending", backend=self.name,
                           spec=spec_data, job_dir=str(job_dir), output_dir=str(output_dir),
                           logdir=str(logdir), created=time.time(), detached=detached,
                           source=source, replicas=replicas)
        self.store.create_job(record)
        try:
            self._launch(record)
        except CellshipError as err:
            self.store.transition(job_id, "failed", ended=time.time(), error=str(err))
            raise
        except OSError as err:
            self.store.transition(job_id, "failed", ended=time.time(), error=str(err))
            raise BackendError(f"Could not start job {name}: {err}") from err
        return self.store.get_job(job_id)

    def wait(self, job: JobRecord, timeout: float | None = None, poll: float = 0.2) -> JobRecord:
        """Block until the job ends (or ``timeout`` seconds pass); return its record."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.refresh(job)
            if record.done or (end is not None and time.monotonic() >= end):
                return record
            time.sleep(poll)

    def delete(self, job: JobRecord) -> None:
        """Forget a finished job and remove its directory."""
        record = self.refresh(job)
        if not record.done:
            raise BackendError(f"Job {record.name} ({record.id}) is {record.status}; "
                               "cancel it before deleting it.")
        self.store.delete_job(record.id)
        shutil.rmtree(record.job_dir, ignore_errors=True)

    # -- what a backend provides --------------------------------------------------------
    def user(self, job: JobRecord) -> str | None:
        """Who submitted ``job`` (a label value, as in ``cellship.io/user``), None when
        not recorded. This default is the user this process runs for (``$JUPYTERHUB_USER``,
        else the OS user): right for a backend that runs jobs on this machine, from the
        store of the user who owns it. A backend that records the submitter reads it."""
        return current_user()

    def check_ready(self, spec: JobSpec) -> None:  # noqa: B027 - optional hook
        """Raise a CellshipError if this backend cannot run ``spec`` here and now."""

    @abc.abstractmethod
    def _launch(self, job: JobRecord) -> None:
        """Start the job's processes (or pods); return once they are on their way."""

    @abc.abstractmethod
    def refresh(self, job: JobRecord) -> JobRecord:
        """The job's current record, reconciled with reality (e.g. a vanished supervisor)."""

    @abc.abstractmethod
    def logs(self, job: JobRecord, follow: bool = False, tf_noise: bool = False,
             on_idle: Callable[[], None] | None = None) -> Iterator[LogLine]:
        """Every replica's raw log lines (metric relay lines included); with ``follow``,
        keep going until the job ends, calling ``on_idle`` while nothing new arrives.
        TensorFlow's C++ INFO/WARNING chatter is left out unless ``tf_noise``."""

    def metrics(self, job: JobRecord) -> list[ScalarPoint]:
        """Every scalar the job wrote so far. This default reads the metric relay lines of
        the chief's log stream, which works wherever the job runs; a backend that can read
        the job's event files directly may do better."""
        points = []
        for line in self.logs(job, follow=False, tf_noise=True):
            point = decode_relay(line.text)
            if point is not None:
                points.append(point)
        return points

    @abc.abstractmethod
    def cancel(self, job: JobRecord) -> JobRecord:
        """Stop the job and every process it started; return the final record."""

