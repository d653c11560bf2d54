"""One writer of the store-under-SIGKILL test: ``python -m tests.faults.store_writer STORE
PREFIX COUNT LEDGER``. Submits COUNT jobs through the real Store API and moves each
through the lifecycle a supervisor writes (running, a replica update, events, succeeded),
appending a ledger line after every write that returned, i.e. was committed. A SIGKILL
may land anywhere; the ledger then holds only writes that were committed before it."""

from __future__ import annotations

import os
import sys
import time

from cellship.store import JobRecord, ReplicaRecord, Store


def main(store_path: str, prefix: str, count: int, ledger_path: str) -> int:
    store = Store(store_path)
    ledger = os.open(ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def committed(line: str) -> None:
        os.write(ledger, (line + "\n").encode())  # unbuffered: survives our SIGKILL

    for i in range(count):
        job_id = f"{prefix}{i:04d}"
        replica = ReplicaRecord(job_id=job_id, type="worker", index=0, state="pending",
                                exit_code=None, pid=None, restarts=0,
                                log_path=f"/nonexistent/{job_id}.log", address=None)
        store.create_job(JobRecord(id=job_id, name=f"load-{prefix}", status="pending",
                                   backend="local", spec={"workers": 1}, job_dir="/nonexistent",
                                   output_dir="/nonexistent/out", logdir="/nonexistent/tb",
                                   created=time.time(), replicas=(replica,)))
        committed(f"job {job_id}")
        assert store.transition(job_id, "running", started=time.time())
        committed(f"status {job_id} running")
        store.update_replica(job_id, "worker", 0, state="running", pid=os.getpid())
        for n in range(2):
            store.add_event(job_id, "note", f"{job_id} event {n}")
            committed(f"event {job_id} {n}")
        assert store.transition(job_id, "succeeded", ended=time.time())
        committed(f"status {job_id} succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
