"""When a Kubernetes job's files come home, and what follows: the backend's side of
:mod:`.artifacts` (which says from which pod, what and how to copy).

- once on its own at the job's end (``wait``), as they are before a cancel, and again on
  demand (``cellship fetch``, resuming); then the keeper is released, and a failed job's
  chief whose program still runs is stopped (it would wait for its peers forever);
- a chief still running its program when its job failed stays for the fetch, but only
  ``fetch_linger`` seconds more (:func:`bound_chief`);
- while a job runs its logdir is mirrored for TensorBoard (:func:`mirror`).

A fetch that fails along the way is a warning (an event and a line on stderr), not the
job's error: the job's own outcome stands, and ``cellship fetch`` tries again.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Mapping, TextIO

from cellship.errors import BackendError, CellshipError
from cellship.fetch import mirror as live
from cellship.fetch.progress import Progress
from cellship.fetch.pull import Outcome, Root, describe
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesConflict, KubernetesError, KubernetesNotFound
from cellship.kube.options import KubernetesOptions
from cellship.storage.url import is_s3
from cellship.store import JobRecord, Store
from cellship.train.kubernetes import artifacts
from cellship.train.kubernetes.artifacts import JobFiles
from cellship.train.kubernetes.pods import parse_time, program_phase


def job_files(connect: Callable[[KubernetesOptions], KubeAPI], state: Mapping[str, Any] | None,
              record: JobRecord) -> JobFiles | None:
    """The copy of a job's files, over a client of its launch options; None for a job
    whose chief has no keeper (a TFJob, or launched before cellship kept files)."""
    if state is None or not artifacts.fetchable(state):
        return None
    options = KubernetesOptions.from_dict(state["options"])
    return JobFiles(connect(options), state, record)


def fetch(record: JobRecord, files: JobFiles | None, stream: TextIO | None = None,
          release: bool | None = None, wait: bool = True) -> Outcome:
    """Copy the files with a progress line on ``stream``; release the pod of a finished
    job (``release`` None) or as told, and stop a failed job's chief that still runs.
    ``wait`` False: read a bucket as it is now (not waiting for the upload's manifest)."""
    if files is None:
        raise BackendError(f"Job {record.name} ({record.id}) has no files to fetch from the "
                           "cluster: it ran with --launcher tfjob, or before cellship kept "
                           "them; its files stay where the pods wrote them.")
    progress = Progress(f"fetching the files of job {record.name}", stream)
    outcome = files.fetch(progress, wait=wait)
    gone = f"; not in the pod: {', '.join(outcome.missing)}" if outcome.missing else ""
    progress.finish(f"fetched {describe(outcome)} into {record.job_dir}{gone}")
    if release is None:
        release = record.done
    if release:
        files.release()  # a keeper that ended by itself after its upload: nothing to do
        if record.status != "succeeded":
            stop_chief(files)
    return outcome


def fetch_once(store: Store, record: JobRecord, files: Callable[[], JobFiles | None]) -> None:
    """The automatic fetch at a job's end, for a job never fetched; a failure is one
    sentence, not an error (the job's own outcome stands), and ``cellship fetch`` tries
    again. ``files`` is asked only then (it makes a client)."""
    if artifacts.last_outcome(record) is not None:
        return
    found = files()
    if found is None:
        return
    try:
        fetch(record, found)
    except CellshipError as err:
        warn(store, record, err)


def warn(store: Store, record: JobRecord, err: CellshipError) -> None:
    """A fetch that failed along the way: one sentence in the job's events and on stderr."""
    store.add_event(record.id, "fetch", str(err))
    sys.stderr.write(f"cellship: warning: {err}\n")
    sys.stderr.flush()


def bound_chief(client: KubeAPI, pod: dict[str, Any], state: Mapping[str, Any]) -> None:
    """A chief still running its program when the job failed (its peers are gone)
    stays for the fetch, but only ``fetch_linger`` seconds more: the kubelet stops it
    then (activeDeadlineSeconds may be set on a running pod), fetched or not."""
    linger = KubernetesOptions.from_dict(state["options"]).fetch_linger
    begun = parse_time(pod.get("status", {}).get("startTime")) or time.time()
    deadline = max(1, int(time.time() - begun + linger))
    try:
        current = client.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"])
        spec = current.get("spec") or {}
        if spec.get("activeDeadlineSeconds") is None or spec["activeDeadlineSeconds"] > deadline:
            spec["activeDeadlineSeconds"] = deadline
            client.replace(current)
    except (KubernetesConflict, KubernetesNotFound):
        pass  # another process bounded it meanwhile, or it is gone already
    except KubernetesError:
        try:  # cannot bound it: stop it, as cellship did before it kept files
            client.delete("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"],
                          propagation="Background")
        except KubernetesNotFound:
            pass


def stop_chief(files: JobFiles) -> None:
    """Delete the chief's pod if its program still runs (a failed job's peers are gone)."""
    try:
        pod = files.client.get("Pod", files.identity.namespace, files.pod)
    except KubernetesNotFound:
        return
    if program_phase(pod) in ("Pending", "Running", "Unknown"):
        try:
            files.client.delete("Pod", files.identity.namespace, files.pod,
                                propagation="Background")
        except KubernetesNotFound:
            pass


def mirror(record: JobRecord, files: JobFiles | None, done: Callable[[], bool],
           interval: float = live.INTERVAL_SECONDS) -> live.Mirror | None:
    """The job's live logdir mirror (one per job and process), until ``done``; None for a
    finished job or one without a keeper."""
    if files is None or record.done:
        return None
    root = artifacts.logdir_root(files.options, record)
    made: list[live.Pulls] = []

    def make_puller() -> tuple[live.Pulls, Root] | None:
        if not made:  # an s3:// logdir is read from the bucket (one client, one Secret read)
            made.append(files.storage_puller() if is_s3(root.remote) else files.puller(attempts=1))
        return made[0], root

    return live.start(record.id, lambda: live.Mirror(make_puller, done, interval))
