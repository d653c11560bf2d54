"""The store's change signal for the panel's push channel: ``data_version`` moves on every
commit of another connection (another process or this one's per-operation connections),
``state`` only when something the panel shows changed."""

from __future__ import annotations

import time
from pathlib import Path

from cellship.store import Store
from tests.server.records import fake_job


def test_version_moves_on_commits_and_state_on_visible_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "cellship.db")
    watch = store.watch_changes()
    try:
        version, state = watch.version(), watch.state()
        assert (watch.version(), watch.state()) == (version, state)  # reading changes nothing
        job = fake_job(store, tmp_path, status="running")
        assert watch.version() != version and watch.state() != state
        version, state = watch.version(), watch.state()
        store.add_event(job.id, "note", "not in any list")
        assert watch.version() != version and watch.state() == state  # invisible: no push
        store.update_replica(job.id, "worker", 0, node="node-7")  # scheduled: the panel shows it
        assert watch.state() != state
        state = watch.state()
        store.transition(job.id, "succeeded", ended=time.time())
        assert watch.state() != state
    finally:
        watch.close()
