"""The Python face of batch runs: ``cellship.batch(...) -> Batch``, ``cellship.batches()``,
``cellship.get_batch(ref)``. The CLI and the ``%batch`` magic are thin layers over it."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cellship.errors import UsageError
from cellship.paths import home
from cellship.plugins import default_backend
from cellship.processes import pid_alive
from cellship.runs import notebook as nbcheck
from cellship.runs.coordinator import Coordinator, RunEvent
from cellship.runs.params import expand, load_file
from cellship.store import BatchRecord, RunRecord, Store

if TYPE_CHECKING:
    import pandas

MAX_RUNS = 10_000


def _fmt(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def describe_params(parameters: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in parameters.items()) or "no parameters"


def describe_event(kind: str, run: RunRecord, batch: BatchRecord) -> str:
    """One line on a run starting or ending, as the CLI and ``%batch`` print it."""
    where = f"run {run.index + 1}/{len(batch.runs)} ({describe_params(run.parameters)})"
    if kind == "started":
        return f"started {where}"
    took = f" in {run.duration:.1f} s" if run.duration is not None else ""
    return f"{where} {run.status}{took}" + (f": {run.error}" if run.error else "")


class Batch:
    """A handle on one batch: its record in the store."""

    def __init__(self, record: BatchRecord, store: Store) -> None:
        self._record = record
        self._store = store

    @property
    def record(self) -> BatchRecord:
        self._record = self._store.get_batch(self._record.id)
        return self._record

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def runs(self) -> tuple[RunRecord, ...]:
        return self.record.runs

    def wait(self, timeout: float | None = None) -> BatchRecord:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.record.done and (end is None or time.monotonic() < end):
            time.sleep(0.2)
        return self._record

    def run(self, on_event: RunEvent | None = None) -> BatchRecord:
        """Execute the pending runs here, in the foreground (Ctrl-C cancels them)."""
        return Coordinator(self._store, self.id, on_event).run()

    def start_detached(self) -> None:
        """Execute the pending runs in a background coordinator process."""
        log = open(Path(self._record.output_dir) / "coordinator.log", "ab")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "cellship.runs.coordinator",
                                     str(self._store.path), self.id],
                                    stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self._store.update_batch(self.id, coordinator_pid=proc.pid, status="running")

    def cancel(self) -> BatchRecord:
        """Stop a batch running in another process (its coordinator kills the runs)."""
        record = self.record
        if record.done:
            return record
        pid = record.coordinator_pid
        if pid == os.getpid():
            # This process was interrupted while it coordinated the batch itself (Ctrl-C
            # under `cellship batch`): nothing else to signal, settle the record below.
            pid = None
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pid = None
        end = time.monotonic() + 30
        # A coordinator killed before it set up its SIGTERM handler (or one that crashed)
        # never settles the record: stop waiting as soon as it is gone.
        while pid and time.monotonic() < end and not self.record.done and pid_alive(pid):
            time.sleep(0.1)
        if not self.record.done:  # no coordinator left: settle the record ourselves
            from cellship.runs.executors import get_executor

            try:  # and remove what its runs left outside this machine (Kubernetes Jobs)
                get_executor(record.backend, self._store).abandon(self.record)
            finally:
                Coordinator(self._store, self.id)._finish()
        return self.record

    def retry(self, parallel: int | None = None, on_event: RunEvent | None = None,
              detach: bool = False) -> BatchRecord:
        """Run again only the runs that failed or were cancelled; keep their old output
        notebooks next to the new ones (``run-003.failed-1.ipynb``)."""
        record = self.record
        if not record.done:
            raise UsageError(f"Batch {record.name} ({record.id}) is still {record.status}; "
                             "wait for it or cancel it before retrying.")
        again = [r for r in record.runs if r.status in ("failed", "cancelled")]
        if not again:
            raise UsageError(f"Batch {record.name} ({record.id}) has no failed or cancelled "
                             "runs to retry.")
        for run in again:
            out = Path(run.output_path)
            if out.exists():
                out.rename(out.with_name(f"{out.stem}.{run.status}-{run.attempt + 1}{out.suffix}"))
            self._store.update_run(run.batch_id, run.index, status="pending",
                                   attempt=run.attempt + 1, error=None, started=None, ended=None,
                                   recorded={})
        fields: dict[str, Any] = {"status": "pending", "ended": None, "error": None}
        if parallel:
            fields["parallel"] = parallel
        self._store.update_batch(self.id, **fields)
        if detach:
            self.start_detached()
            return self.record
        return self.run(on_event)

    def rows(self, sort_by: str | None = None, ascending: bool = True) -> list[dict[str, Any]]:
        """The results as plain dicts (what :meth:`results` tabulates), one per run."""
        rows = []
        for run in self.record.runs:
            row: dict[str, Any] = {"run": run.index, "status": run.status,
                                   "duration_s": None if run.duration is None else round(run.duration, 2)}
            row.update(run.parameters)
            row.update(run.recorded)
            row["error"] = run.error
            row["output"] = run.output_path
            rows.append(row)
        if sort_by is not None:
            columns = list(dict.fromkeys(k for row in rows for k in row))
            if sort_by not in columns:
                raise UsageError(f"Cannot sort by {sort_by!r}; columns: {', '.join(columns)}.")
            present = [r for r in rows if r.get(sort_by) is not None]
            missing = [r for r in rows if r.get(sort_by) is None]
            try:
                present.sort(key=lambda r: r[sort_by], reverse=not ascending)
            except TypeError:  # mixed types: compare as text
                present.sort(key=lambda r: str(r[sort_by]), reverse=not ascending)
            rows = present + missing  # runs without the value go last, as pandas does
        return rows

    def results(self, sort_by: str | None = None, ascending: bool = True) -> "pandas.DataFrame":
        """One row per run: status, duration, parameters, recorded values (``record()`` /
        scrapbook scraps) and last metrics of jobs the run submitted (``metric:run/tag``)."""
        import pandas

        return pandas.DataFrame(self.rows(sort_by, ascending))

    def summary(self) -> str:
        r = self.record
        counts: dict[str, int] = {}
        for run in r.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        took = "" if r.started is None else f" in {(r.ended or time.time()) - r.started:.1f} s"
        return (f"batch {r.name} ({r.id}) {r.status}{took}: {len(r.runs)} runs ({parts}); "
                f"output notebooks in {r.output_dir}")

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(self.summary())}</p>" + self.results().to_html(index=False, na_rep="")

    def __repr__(self) -> str:
        return f"<cellship.Batch {self._record.name} ({self._record.id}) {self._record.status}>"


def _store(store: Store | None) -> Store:
    return store or Store.default()


def create(notebook: str | Path, *, parameters: Mapping[str, Any] | None = None,
           grid: Mapping[str, Sequence[Any]] | None = None,
           parameters_file: str | Path | None = None, parallel: int = 1,
           name: str | None = None, backend: str | None = None, kernel: str | None = None,
           output_dir: str | Path | None = None, warn: Callable[[str], None] | None = None,
           kubernetes: Mapping[str, Any] | None = None, store: Store | None = None) -> Batch:
    """Validate everything and record the batch with its runs (all pending); run nothing.

    ``kubernetes``: options of ``backend="kubernetes"`` runs (image, namespace, context,
    image_pull_policy, cpu, memory, gpus, timeout, ...; see
    :class:`cellship.runs.kubernetes.manifests.BatchSettings`). ``backend`` defaults to
    ``$CELLSHIP_BACKEND``, else local, as a training job's does."""
    store = _store(store)
    backend = default_backend(backend)
    if not isinstance(parallel, int) or parallel < 1:
        raise UsageError(f"--parallel must be a whole number >= 1, got {parallel!r}.")
    from cellship.runs.executors import get_executor

    executor = get_executor(backend, store)  # an unknown backend fails here, before anything runs
    backend_options = executor.check_options(kubernetes)
    # The kernel of a remote run is the image's, not one installed here.
    info = nbcheck.inspect(notebook, kernel, check_kernel=backend == "local")
    base = (load_file(parameters_file) if parameters_file else {}) | dict(parameters or {})
    combos = expand(base, dict(grid or {}))
    if len(combos) > MAX_RUNS:
        raise UsageError(f"The grid expands to {len(combos)} runs (more than {MAX_RUNS}); "
                         "narrow it.")
    all_names = {k: None for combo in combos for k in combo}
    for note in nbcheck.parameter_warnings(info, all_names):
        (warn or (lambda text: print(f"cellship: warning: {text}", file=sys.stderr)))(note)
    batch_id = secrets.token_hex(4)
    out = Path(output_dir) if output_dir else home() / "batches" / batch_id
    out.mkdir(parents=True, exist_ok=True)
    executor.save_options(out, backend_options)
    width = max(3, len(str(len(combos) - 1)))
    runs = tuple(
        RunRecord(batch_id=batch_id, index=i, parameters=combo, status="pending", attempt=0,
                  output_path=str((out / f"run-{i:0{width}d}.ipynb").resolve()),
                  log_path=str((out / f"run-{i:0{width}d}.log").resolve()), started=None,
                  ended=None, error=None, pid=None, recorded={})
        for i, combo in enumerate(combos))
    record = BatchRecord(id=batch_id, name=name or info.path.stem, notebook=str(info.path),
                         status="pending", backend=backend, parallel=parallel,
                         kernel=info.kernel, output_dir=str(out.resolve()),
                         cwd=str(info.path.parent), created=time.time(), runs=runs)
    store.create_batch(record)
    return Batch(store.get_batch(batch_id), store)


def batch(notebook: str | Path, *, wait: bool = True, on_event: RunEvent | None = None,
          **options: Any) -> Batch:
    """Run ``notebook`` once per parameter set (``parameters`` overlaid with each point of
    ``grid``), ``parallel`` at a time, each with its own kernel. With ``wait=False`` the
    runs go on in a background process."""
    handle = create(notebook, **options)
    if wait:
        handle.run(on_event)
    else:
        handle.start_detached()
    return handle


def batches(limit: int | None = None, store: Store | None = None) -> list[Batch]:
    store = _store(store)
    return [Batch(r, store) for r in store.list_batches(limit)]


def get_batch(ref: str, store: Store | None = None) -> Batch:
    store = _store(store)
    return Batch(store.find_batch(ref), store)
