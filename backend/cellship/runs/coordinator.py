"""Schedules the runs of a batch: at most ``parallel`` at a time, a failed run never stops
the others, and a cancel (Ctrl-C, SIGTERM, ``cellship batch cancel``) stops the pending
runs and kills the running ones with their kernels.

Runs in the caller's process (``cellship batch`` in a shell, ``%batch`` in a kernel) or,
with ``--detach``, as ``python -m cellship.runs.coordinator STORE BATCH_ID``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable

from cellship.runs.executors import get_executor
from cellship.store import BatchRecord, RunRecord, Store

POLL_SECONDS = 0.05

RunEvent = Callable[[str, RunRecord, BatchRecord], None]


class Coordinator:
    def __init__(self, store: Store, batch_id: str, on_event: RunEvent | None = None) -> None:
        self.store = store
        self.batch_id = batch_id
        self.on_event = on_event
        self.cancel_requested = False

    def request_cancel(self, *_: object) -> None:
        self.cancel_requested = True

    def run(self) -> BatchRecord:
        store, batch_id = self.store, self.batch_id
        batch = store.get_batch(batch_id)
        executor = get_executor(batch.backend, store)
        store.update_batch(batch_id, status="running", started=batch.started or time.time(),
                           ended=None, error=None, coordinator_pid=os.getpid())
        interrupted = False
        in_flight: set[int] = set()
        try:
            while not self.cancel_requested:
                for index in sorted(in_flight):
                    run = store.get_run(batch_id, index)
                    if executor.running(run):
                        continue
                    in_flight.discard(index)
                    if run.status == "running":  # the runner itself died
                        store.update_run(batch_id, index, status="failed", ended=time.time(),
                                         error="the run's process ended without a result; "
                                               f"see {run.log_path}")
                        run = store.get_run(batch_id, index)
                    self._emit("finished", run)
                batch = store.get_batch(batch_id)
                pending = [r for r in batch.runs if r.status == "pending"]
                if not pending and not in_flight:
                    break
                for run in pending[:max(0, batch.parallel - len(in_flight))]:
                    store.update_run(batch_id, run.index, status="running", started=time.time(),
                                     ended=None, error=None)
                    started = store.get_run(batch_id, run.index)
                    executor.start(started)
                    in_flight.add(run.index)
                    self._emit("started", started)
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            interrupted = True
            self.cancel_requested = True
        finally:
            if self.cancel_requested:
                self._cancel(executor)
            self._finish()
        if interrupted:
            raise KeyboardInterrupt
        return store.get_batch(batch_id)

    def _cancel(self, executor) -> None:
        for run in self.store.get_batch(self.batch_id).runs:
            if run.status == "pending":
                self.store.update_run(self.batch_id, run.index, status="cancelled",
                                      error="cancelled before it started")
            elif run.status == "running":
                self.store.update_run(self.batch_id, run.index, status="cancelled",
                                      error="cancelled while running")
                executor.kill(run)
                self.store.update_run(self.batch_id, run.index, ended=time.time())
                self._emit("finished", self.store.get_run(self.batch_id, run.index))

    def _finish(self) -> None:
        runs = self.store.get_batch(self.batch_id).runs
        statuses = {r.status for r in runs}
        if "cancelled" in statuses:
            status = "cancelled"
        elif "failed" in statuses or "running" in statuses or "pending" in statuses:
            status = "failed"
        else:
            status = "succeeded"
        failed = sum(r.status == "failed" for r in runs)
        error = f"{failed} of {len(runs)} runs failed" if failed else None
        if status == "cancelled":
            error = "cancelled" + (f"; {error}" if error else "")
        self.store.update_batch(self.batch_id, status=status, ended=time.time(), error=error,
                                coordinator_pid=None)

    def _emit(self, kind: str, run: RunRecord) -> None:
        if self.on_event is not None:
            self.on_event(kind, run, self.store.get_batch(self.batch_id))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m cellship.runs.coordinator STORE BATCH_ID", file=sys.stderr)
        return 2
    coordinator = Coordinator(Store(args[0]), args[1])
    signal.signal(signal.SIGTERM, coordinator.request_cancel)
    signal.signal(signal.SIGHUP, coordinator.request_cancel)
    record = coordinator.run()
    return 0 if record.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
