"""The embedded job store: one SQLite database (WAL mode) shared by kernels, the CLI and
supervisors.

Why SQLite: several processes (a kernel, a supervisor per job, the CLI, the Jupyter server)
read and write job state concurrently; WAL gives readers that never block the writer, and
conditional UPDATEs make status transitions atomic (a cancel racing a finish has exactly
one winner).

- :mod:`.db`       the file: schema, opening (WAL, version check, locked-open retry)
- :mod:`.jobs`     training jobs: job, replica and event records, status transitions
- :mod:`.batches`  batches of notebook runs: batch and run records
- :mod:`.releases` ``cellship release`` / ``rollback`` records (the running row is the lock)

:class:`Store` is both halves over one file; import it (and the records) from here.

Rules: the store is the bottom layer every feature writes through, so it imports only the
standard library and :mod:`cellship.errors` / :mod:`cellship.paths`: never a feature
package (train, runs, watch, serve, kube, deployment), :mod:`cellship.cli`,
:mod:`cellship.jupyter`, IPython, pandas or TensorFlow.
"""

from __future__ import annotations

from cellship.store.batches import BatchesTable, BatchRecord, RunRecord
from cellship.store.db import SCHEMA_VERSION
from cellship.store.jobs import JOB_STATUSES, TERMINAL_STATUSES, JobRecord, JobsTable, ReplicaRecord
from cellship.store.releases import RELEASE_OUTCOMES, ReleaseRecord, ReleasesTable

__all__ = ["Store", "JobRecord", "ReplicaRecord", "BatchRecord", "RunRecord", "JOB_STATUSES",
           "TERMINAL_STATUSES", "SCHEMA_VERSION", "ReleaseRecord", "RELEASE_OUTCOMES"]


class Store(JobsTable, BatchesTable, ReleasesTable):
    """Access to the job store at ``path`` (created on first use)."""

    @classmethod
    def default(cls) -> "Store":
        """The store of this user (``$CELLSHIP_HOME``, else the platform's data dir)."""
        from cellship.paths import store_path
        return cls(store_path())
