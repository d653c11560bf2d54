"""One batch run: ``python -m cellship.runs.runner STORE BATCH_ID INDEX``.

A process of its own per run, so that each papermill execution has its own kernel, can
be killed as a whole (with the kernel it started) on cancel, and a kernel that dies takes
only its run down. It writes its outcome to the store itself.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path

import psutil

from cellship.inside.podrun import describe as _describe  # one wording for local and pod runs
from cellship.store import Store


def _kill_descendants() -> None:
    """The kernel runs in a session of its own (jupyter_client starts it so): kill every
    process this run started, whatever group it is in."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(children, timeout=5)


def _linked_metrics(store: Store, batch_id: str, index: int) -> dict[str, float]:
    """Last scalar values of the jobs the notebook submitted (its %%train cells)."""
    from cellship.train.api import Job
    from cellship.train.backends import get_backend

    values: dict[str, float] = {}
    for record in store.jobs_of_run(batch_id, index):
        try:
            last = Job(record, get_backend(record.backend, store)).metrics_buffer().last_values()
        except Exception:
            continue
        for key, point in last.items():
            values[key] = point["value"]
    return values


def run(store: Store, batch_id: str, index: int) -> int:
    import nbformat
    import papermill

    from cellship.runs.scraps import scraps_of

    batch = store.get_batch(batch_id)
    record = store.get_run(batch_id, index)
    store.update_run(batch_id, index, status="running", started=time.time(), pid=os.getpid(),
                     error=None, ended=None)
    os.environ["CELLSHIP_BATCH_RUN"] = f"{batch_id}/{index}"  # links %%train jobs to this run
    status, error = "succeeded", None
    try:
        papermill.execute_notebook(
            batch.notebook, record.output_path, parameters=dict(record.parameters),
            kernel_name=batch.kernel, cwd=batch.cwd, progress_bar=False, log_output=True,
            request_save_on_cell_execute=True)
    except KeyboardInterrupt:
        status, error = "cancelled", "cancelled"
    except Exception as err:
        status, error = "failed", _describe(err)
        traceback.print_exc()
    finally:
        _kill_descendants()
    recorded: dict = {}
    if Path(record.output_path).is_file():
        try:
            recorded = scraps_of(nbformat.read(record.output_path, as_version=4))
        except Exception:
            recorded = {}
    recorded.update({f"metric:{k}": v for k, v in _linked_metrics(store, batch_id, index).items()})
    current = store.get_run(batch_id, index)
    if current.status == "cancelled":  # the coordinator cancelled us meanwhile
        status, error = "cancelled", current.error or "cancelled"
    store.update_run(batch_id, index, status=status, ended=time.time(), error=error,
                     recorded=recorded)
    return 0 if status == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m cellship.runs.runner STORE BATCH_ID INDEX", file=sys.stderr)
        return 2
    # SIGTERM (cancel) behaves like Ctrl-C: papermill stops, the kernel is killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(Store(args[0]), args[1], int(args[2]))


if __name__ == "__main__":
    sys.exit(main())
