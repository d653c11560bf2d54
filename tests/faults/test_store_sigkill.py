"""The job store under load and SIGKILL: 8 processes submitting and updating 1,000 jobs
at once through the real Store API, with writers killed (kill -9) at random moments and
replaced by new ones until 1,000 jobs are in.

What must hold: SQLite's ``PRAGMA integrity_check`` answers ok, and nothing a writer saw
committed is missing: every job, status and event its ledger records is in the store.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from cellship.store import Store
from tests.conftest import REPO

WRITERS = 8
JOBS = 1000
KILLS = 8
RECORD: dict[str, float] = {}  # what the run measured (tests/README.md's table)


def _writer(store: Path, prefix: str, count: int, ledger: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.faults.store_writer", str(store), prefix,
                             str(count), str(ledger)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_1000_jobs_from_8_writers_with_kill_9_lose_nothing_committed(tmp_path: Path) -> None:
    rng = random.Random(16)
    db = tmp_path / "cellship.db"
    Store(db)  # created once, as the first kernel would
    ledger = tmp_path / "ledger"
    ledger.touch()
    per_writer = JOBS // WRITERS
    running: dict[str, subprocess.Popen] = {}
    generation = 0

    def start(slot: int, count: int) -> None:
        nonlocal generation
        generation += 1
        prefix = f"w{slot}g{generation:02d}-"
        running[prefix] = _writer(db, prefix, count, ledger)

    for slot in range(WRITERS):
        start(slot, per_writer)
    kills_left = KILLS
    started = time.monotonic()
    deadline = started + 240
    while running and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.6))
        for prefix, proc in list(running.items()):
            if proc.poll() is not None:
                assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                del running[prefix]
        if kills_left and running:
            prefix, victim = rng.choice(sorted(running.items()))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            kills_left -= 1
            del running[prefix]
            done = sum(1 for line in ledger.read_text().splitlines()
                       if line.startswith(f"status {prefix}") and line.endswith("succeeded"))
            # its replacement writes the jobs it did not finish, under a new prefix
            start(int(prefix[1:prefix.index("g")]), per_writer - done)
    assert not running, "the writers did not finish within 240 s"
    RECORD["seconds"] = time.monotonic() - started

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        jobs = dict(con.execute("SELECT id, status FROM jobs").fetchall())
        events = {(job, message) for job, message in con.execute("SELECT job_id, message FROM events")}

    order = {"pending": 0, "running": 1, "succeeded": 2}
    lost: list[str] = []
    for line in ledger.read_text().splitlines():
        kind, job, *rest = line.split()
        if job not in jobs:
            lost.append(line)
        elif kind == "status" and order[jobs[job]] < order[rest[0]]:
            lost.append(line)
        elif kind == "event" and (job, f"{job} event {rest[0]}") not in events:
            lost.append(line)
    assert not lost, f"committed writes missing after the kills: {lost[:10]}"
    succeeded = sum(1 for status in jobs.values() if status == "succeeded")
    assert succeeded >= JOBS, (succeeded, len(jobs))
    RECORD.update(jobs=len(jobs), succeeded=succeeded, kills=KILLS,
                  ledger=len(ledger.read_text().splitlines()))
    print("store under SIGKILL:", RECORD)
