"""A Kubernetes job's files home: from which pod and container, which folders, where to.

The chief pod carries a keeper container (cellship/inside/keeper.py) that keeps the pod
and its job directory up after the program until cellship has copied the output dir, the
logdir and the backup dir home through the API server's exec (the way ``kubectl cp``
reads a live container); then cellship releases it and the pod ends. They land in the
local job directory in the layout a local job has (``output/``, ``tensorboard/``,
``backup/``), so ``cellship export --job``, TensorBoard and deploy find them.

``<job_dir>/fetch.json`` records the last outcome (complete, or why not), so a job is
fetched once on its own and again only with ``cellship fetch``.

A folder that went to object storage (``s3://``, see :mod:`.storage`) is read from the
bucket instead, into the same local folder, once the keeper's upload manifest is there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from cellship.fetch.progress import Progress
from cellship.fetch.pull import FetchError, Outcome, Puller, Root
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesError, KubernetesNotFound
from cellship.kube.options import KubernetesOptions
from cellship.storage import client as store
from cellship.storage.errors import StorageError
from cellship.storage.url import is_s3
from cellship.store import JobRecord
from cellship.train.kubernetes import manifests, storage
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.kubernetes.pods import container_status
from cellship.train.spec import JobSpec

STATE_FILE = "fetch.json"
STAGING_DIR = ".fetch"


def fetchable(state: Mapping[str, Any]) -> bool:
    """Jobs whose chief pod has a keeper (plain pods; not TFJobs, nor jobs launched
    before cellship had one)."""
    return state.get("launcher") == "pods" and bool(state.get("keeper"))


def roots(options: KubernetesOptions, record: JobRecord) -> list[Root]:
    """Pod folder (or its ``s3://`` URL) -> local folder, as a local job lays them out:
    output dir, logdir, backup dir."""
    local = [Path(record.output_dir), Path(record.logdir), Path(record.job_dir) / "backup"]
    return [Root(str(place.url) if place.url is not None else place.pod, folder,
                 append=place.live)
            for place, folder in zip(storage.places(options), local)]


def logdir_root(options: KubernetesOptions, record: JobRecord) -> Root:
    return roots(options, record)[1]


def chief_pod_name(identity: JobIdentity, spec: JobSpec) -> str:
    return identity.pod(manifests.chief(spec))


def unreadable(pod: Mapping[str, Any] | None, name: str) -> str | None:
    """Why the chief pod's files cannot be read (None when they can)."""
    if pod is None:
        return (f"the chief pod {name} is gone (deleted, or its node was lost), and the "
                "files in its job directory with it")
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        return (f"the chief pod {name} was evicted before its files were copied "
                f"({status.get('message') or 'the node ran short of resources'}); its "
                "output dir, logdir and backup dir (an emptyDir) are lost; files on a "
                "volume (the output_dir/logdir options) are not")
    keeper = container_status(pod, manifests.KEEPER)
    state = keeper.get("state") or {}
    if "running" not in state:
        if status.get("phase") in ("Succeeded", "Failed") or "terminated" in state:
            return (f"the chief pod {name} has ended (nobody fetched its files within the "
                    "fetch_linger time, or they were released), and its files with it")
        return f"the chief pod {name} is not running yet"
    return None


class JobFiles:
    """The copy of one job's files; ``client`` is the one Kubernetes client."""

    def __init__(self, client: KubeAPI, state: Mapping[str, Any], record: JobRecord) -> None:
        self.client = client
        self.record = record
        self.options = KubernetesOptions.from_dict(state["options"])
        self.identity = JobIdentity(state["job_id"], state["job_name"], state["namespace"])
        self.spec = JobSpec.from_dict(record.spec)
        self.pod = chief_pod_name(self.identity, self.spec)

    def _run(self, argv: list[str]) -> Iterator[bytes]:
        return self.client.exec(self.identity.namespace, self.pod, argv,
                                container=manifests.KEEPER)

    def puller(self, progress: Progress | None = None, attempts: int = 5) -> Puller:
        return Puller(self._run, [self.options.python, manifests.SENDER_SCRIPT],
                      Path(self.record.job_dir) / STAGING_DIR, progress=progress,
                      attempts=attempts)

    @property
    def all_in_storage(self) -> bool:
        """Every folder went to object storage: nothing to copy out of the pod."""
        return all(is_s3(r.remote) for r in roots(self.options, self.record))

    def storage_puller(self, progress: Progress | None = None) -> storage.StoragePuller:
        """A reader of the job's bucket, with the keys of its Secret (read through the
        kubeconfig) or the user's own AWS credentials."""
        found = storage.credentials(self.client, self.identity.namespace, self.options)
        return storage.StoragePuller(store.connect(found), found,
                                     Path(self.record.job_dir) / STAGING_DIR, progress)

    def keeper_alive(self) -> bool:
        """Whether the chief's keeper (the uploader) still runs."""
        try:
            pod = self.client.get("Pod", self.identity.namespace, self.pod)
        except KubernetesNotFound:
            return False
        except KubernetesError:
            return True  # cannot tell now: keep waiting, bounded by the wait's timeout
        return "running" in (container_status(pod, manifests.KEEPER).get("state") or {})

    def check(self) -> None:
        """Raise FetchError when the files cannot be read now."""
        try:
            pod = self.client.get("Pod", self.identity.namespace, self.pod)
        except KubernetesNotFound:
            pod = None
        why = unreadable(pod, self.pod)
        if why is not None:
            raise FetchError(f"Could not fetch the files of job {self.record.name} "
                             f"({self.record.id}): {why}.")

    def fetch(self, progress: Progress | None = None, wait: bool = True) -> Outcome:
        """Copy every folder home: from the pod, and from the bucket for ``s3://`` ones
        (``wait``: first for the keeper's upload manifest, while the keeper runs)."""
        every = roots(self.options, self.record)
        in_pod = [r for r in every if not is_s3(r.remote)]
        in_bucket = [r for r in every if is_s3(r.remote)]
        if in_pod:
            self.check()
        try:
            outcome = self.puller(progress).pull(in_pod) if in_pod else Outcome()
            if in_bucket:
                reader = self.storage_puller(progress)
                if wait:
                    reader.wait_uploaded(self.options, self.identity.job_id, self.keeper_alive)
                got = reader.pull(in_bucket)
                outcome.files += got.files
                outcome.bytes += got.bytes
                outcome.unchanged += got.unchanged
                outcome.seconds += got.seconds
        except (FetchError, KubernetesError, StorageError) as err:
            self.remember({"complete": False, "error": str(err)})
            raise FetchError(f"Fetching the files of job {self.record.name} failed: {err} "
                             f"Run `cellship fetch {self.record.id}` to try again (it resumes "
                             "where this stopped).") from err
        self.remember({"complete": True, "files": outcome.files, "bytes": outcome.bytes,
                       "seconds": round(outcome.seconds, 3), "missing": outcome.missing})
        return outcome

    def release(self) -> None:
        """Let the keeper end (and with it the pod, once the program's container has)."""
        try:
            for _ in self._run([self.options.python, manifests.KEEPER_SCRIPT, "release"]):
                pass
        except KubernetesError:
            pass  # already gone: nothing to release

    def remember(self, outcome: dict[str, Any]) -> None:
        path = Path(self.record.job_dir) / STATE_FILE
        path.write_text(json.dumps(outcome | {"at": time.time()}, indent=2))


def last_outcome(record: JobRecord) -> dict[str, Any] | None:
    try:
        return json.loads((Path(record.job_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
