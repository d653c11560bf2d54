"""The Kubernetes backend: a job's replicas are pods (or one Kubeflow TFJob) in a cluster.

``_launch`` creates the job object (a ConfigMap with the program) first, then the headless
Service and one Pod per replica, each with an ownerReference to the ConfigMap's uid, so
``cancel`` is one delete and the garbage collector removes the rest. ``refresh`` reconciles
the store with the pods' phases, records each replica's pod, node and (when it cannot
start or keeps failing) its own plain-words diagnosis (unschedulable, image pull, crash
loop, OOM), and puts those diagnoses together into the job's error. A replica whose pod
was lost (deleted, evicted, stranded on a dead node) is made again by :mod:`.recovery`.
Every API call goes through the one client (:func:`cellship.kube.client.connect`); tests
hand in a fake with the same interface.

Options (namespace, image, ...) are :class:`~cellship.kube.options.KubernetesOptions`: given
to the constructor and/or found in the job's spec dict under ``"kubernetes"``; the
effective ones are written to ``<job_dir>/kubernetes.json`` at launch so later processes
(``cellship cancel`` in a shell) find the job's objects.

``discover`` lists jobs by their labels rather than the store, so jobs submitted from
another kernel or machine show up too (``cellship jobs --backend kubernetes``).

What the pods say (phases, run times, replica keys) is read by :mod:`.pods`; when the
chief's files come home and the live TensorBoard mirror are :mod:`.files`' (``wait``,
``fetch``, ``mirror`` and ``cancel`` delegate there).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TextIO

from cellship.errors import BackendError, CellshipError
from cellship.fetch import mirror
from cellship.fetch.pull import Outcome
from cellship.kube import client as kube_client
from cellship.kube.api import KubeAPI
from cellship.kube.diagnose import Diagnosis, diagnose
from cellship.kube.errors import KubernetesError, KubernetesForbidden, KubernetesNotFound
from cellship.kube.meta import MANAGED_SELECTOR, USER_LABEL, current_user
from cellship.kube.options import KubernetesOptions
from cellship.kube.podspec import CONTAINER
from cellship.kube.waiting import wait_gone
from cellship.store import JobRecord, Store
from cellship.train.backend import PROGRAM_FILE, Backend
from cellship.train.kubernetes import artifacts, files, manifests, podlogs, recovery, storage
from cellship.train.kubernetes.default_image import choose_image
from cellship.train.kubernetes.manifests import JobIdentity
from cellship.train.kubernetes.pods import (
    container_status,
    pods_status,
    program_phase,
    replica_key,
    run_times,
    tfjob_pods,
    with_gpu_shortfall,
    with_phase,
)
from cellship.train.spec import JobSpec, Replica
from cellship.watch.logstream import LogLine

STATE_FILE = "kubernetes.json"
CANCEL_WAIT_SECONDS = 90.0  # the pods' 30 s grace, plus a loaded node's teardown
SPEC_KEY = "kubernetes"
_PHASE_STATE = {"Pending": "pending", "Running": "running", "Succeeded": "succeeded",
                "Failed": "failed", "Unknown": "pending"}

ClientFactory = Callable[[str | None], KubeAPI]  # kubeconfig context -> client


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, store: Store | None = None, options: KubernetesOptions | None = None,
                 client_factory: ClientFactory | None = None) -> None:
        super().__init__(store)
        self.options = options or KubernetesOptions()
        self._connect = client_factory or kube_client.connect
        self._looking = threading.RLock()

    # -- plumbing --------------------------------------------------------------------------
    def _client(self, options: KubernetesOptions) -> KubeAPI:
        return self._connect(options.context)

    def _options(self, spec: dict[str, Any]) -> KubernetesOptions:
        return self.options.merged(spec.get(SPEC_KEY))

    def _state(self, job: JobRecord) -> dict[str, Any] | None:
        path = Path(job.job_dir) / STATE_FILE
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def user(self, job: JobRecord) -> str | None:
        """The submitter written into the job's launch state at launch (the value of its
        objects' ``cellship.io/user`` label); None before the launch, or for a job launched
        before cellship recorded it."""
        try:
            state = self._state(job)
        except (OSError, ValueError):
            return None
        user = state.get("user") if isinstance(state, dict) else None
        return user if isinstance(user, str) and user else None

    def _identity(self, state: dict[str, Any]) -> JobIdentity:
        return JobIdentity(state["job_id"], state["job_name"], state["namespace"])

    # -- submit / launch -------------------------------------------------------------------
    def submit(self, spec: JobSpec, program: Any, *, detached: bool = False,
               source: str | None = None, extra: Mapping[str, Any] | None = None) -> JobRecord:
        """Check the options before anything is recorded: a missing or unfit --image
        (:mod:`.default_image`, which also makes the default one) or a bad name is the
        user's to fix, not a failed job left in the list; an ``s3://`` output
        dir or logdir must be writable with its Secret's keys (one sentence naming the
        bucket, endpoint and Secret otherwise), before any pod exists."""
        options = self._options(dict(extra or {}))
        image = choose_image(options, spec.gpus, spec.env)
        if image != options.image:  # the default image: stored with the job, as if given
            extra = dict(extra or {})
            extra[SPEC_KEY] = {**(extra.get(SPEC_KEY) or {}), "image": image}
            options = self._options(extra)
        if storage.uses_storage(options):
            client = self._client(options)
            storage.check_access(client, client.namespace(options.namespace), options)
        return super().submit(spec, program, detached=detached, source=source, extra=extra)

    def _launch(self, job: JobRecord) -> None:
        options = self._options(dict(job.spec))
        options.require_image()
        spec = JobSpec.from_dict(job.spec)
        client = self._client(options)
        namespace = client.namespace(options.namespace)
        identity = JobIdentity(job.id, job.name, namespace)
        program = (Path(job.job_dir) / PROGRAM_FILE).read_text()
        shipped_path = Path(job.job_dir) / "shipped.pkl"
        shipped = shipped_path.read_bytes() if shipped_path.exists() else None
        state = {"job_id": job.id, "job_name": job.name, "namespace": namespace,
                 "prefix": identity.prefix, "launcher": options.launcher,
                 "keeper": options.launcher == "pods", "options": options.to_dict(),
                 "user": current_user()}
        (Path(job.job_dir) / STATE_FILE).write_text(json.dumps(state, indent=2))
        created: list[tuple[str, str]] = []
        try:
            if options.launcher == "tfjob":
                if not client.has_crd("TFJob"):
                    raise KubernetesNotFound(
                        "--launcher tfjob needs the Kubeflow TFJob CRD (kubeflow.org/v1), which "
                        "this cluster does not have: install the Kubeflow training operator, "
                        "or drop --launcher to use plain pods.", 404)
                owner = client.create(manifests.tfjob(identity, spec, options,
                                                      with_shipped=shipped is not None))
                created.append(("TFJob", identity.prefix))
                client.create(manifests.config_map(identity, program, shipped, owner=owner))
            else:
                owner = client.create(manifests.config_map(identity, program, shipped))
                created.append(("ConfigMap", identity.prefix))
                client.create(manifests.headless_service(identity, owner))
                for pod in manifests.pods(identity, spec, options, owner,
                                          with_shipped=shipped is not None):
                    client.create(pod)
        except CellshipError:
            for kind, name in created:  # the owner takes its dependents with it
                try:
                    client.delete(kind, namespace, name, propagation="Background")
                except KubernetesError:
                    pass
            raise
        for replica in spec.replicas():
            # Our own pods' names are known now (the view shows them before the first
            # refresh); the TFJob operator names its pods itself, so refresh fills those in.
            named = {"pod": identity.pod(replica)} if options.launcher != "tfjob" else {}
            self.store.update_replica(job.id, replica.type, replica.index,
                                      address=identity.address(replica), **named)
        self.store.add_event(job.id, "kubernetes",
                             f"created {options.launcher} job {manifests.describe(identity)}")

    # -- refresh ---------------------------------------------------------------------------
    def refresh(self, job: JobRecord) -> JobRecord:
        # One look at a time: the log pumps, the mirror and the follower all look, and a
        # lost replica must be made again once, its restart noted once.
        with self._looking:
            return self._refresh(job)

    def _refresh(self, job: JobRecord) -> JobRecord:
        record = self.store.get_job(job.id)
        state = self._state(record)
        if record.done or state is None:
            return record
        options = KubernetesOptions.from_dict(state["options"])
        client = self._client(options)
        identity = self._identity(state)
        spec = JobSpec.from_dict(record.spec)
        pods = {(p["metadata"].get("labels", {}).get(manifests.LABEL_REPLICA_TYPE),
                 p["metadata"].get("labels", {}).get(manifests.LABEL_REPLICA_INDEX)): p
                for p in client.list("Pod", identity.namespace, manifests.selector(identity))}
        if state["launcher"] == "tfjob":
            pods = tfjob_pods(pods)
        now = time.time()
        problems: list[Diagnosis] = []
        phases: dict[Replica, str] = {}
        recovers = state["launcher"] == "pods"  # the TFJob operator replaces its own pods
        for replica in spec.replicas():
            pod = pods.get((replica.type, str(replica.index)))
            lost = recovery.loss(pod, now) if recovers else None
            if lost is not None or (recovers and recovery.is_going(pod)):
                phases[replica] = "Replacing"
                if lost is not None:
                    failure = recovery.replace(self.store, record, state, client, identity,
                                               spec, replica, pod, lost)
                    if failure is not None:
                        problems.append(Diagnosis("Lost", failure, fatal=True))
                continue
            if pod is None:
                phases[replica] = "Missing"
                continue
            phase = program_phase(pod)
            phases[replica] = phase
            pod = with_phase(pod, phase)
            cs = container_status(pod, CONTAINER)
            terminated = (cs.get("state") or {}).get("terminated") or {}
            earlier = recovery.carried(state, replica)
            found = diagnose(pod, _safe_events(client, identity.namespace, pod),
                             spec.max_restarts - earlier)
            restarts = earlier + int(cs.get("restartCount") or 0)
            recovery.note_restarts(self.store, record, replica, pod, restarts, spec.max_restarts)
            # Each replica keeps its own pod's diagnosis (the job's error joins them all),
            # so the view's row says which pod cannot start and why; None once it is fine.
            self.store.update_replica(record.id, replica.type, replica.index,
                                      state=_PHASE_STATE.get(phase, "pending"),
                                      restarts=restarts,
                                      exit_code=terminated.get("exitCode"),
                                      pod=pod["metadata"].get("name"),
                                      node=(pod.get("spec") or {}).get("nodeName"),
                                      reason=found.reason if found is not None else None,
                                      diagnosis=found.message if found is not None else None)
            if found is not None:
                problems.append(found)
        self.store.update_job(record.id, restarts=max(
            (r.restarts for r in self.store.get_job(record.id).replicas), default=0))
        problems = with_gpu_shortfall(client, spec, list(pods.values()), problems)
        return self._judge(record, spec, identity, client, phases, problems, now)

    def _judge(self, record: JobRecord, spec: JobSpec, identity: JobIdentity, client: KubeAPI,
               phases: dict[Replica, str], problems: list[Diagnosis], now: float) -> JobRecord:
        fatal = [p for p in problems if p.fatal]
        waited = now - record.created
        if fatal:
            self._end(record, "failed", " ".join(p.message for p in fatal), identity, client)
        elif problems and record.status == "pending" and waited > spec.startup_timeout:
            self._end(record, "failed", f"not started after {spec.startup_timeout:g}s: "
                      + " ".join(p.message for p in problems), identity, client)
        elif problems:
            self.store.update_job(record.id, error=" ".join(p.message for p in problems))
        elif _finished(spec, phases):
            if record.status == "pending":
                self.store.transition(record.id, "running", started=now)
            self._end(record, "succeeded", None, identity, client)
        elif "Missing" in phases.values() and (record.status == "running"
                                               or waited > spec.startup_timeout):
            self._end(record, "failed", "some of the job's pods disappeared (deleted outside "
                      "cellship, or their node was lost).", identity, client)
        elif any(p in ("Running", "Succeeded") for p in phases.values()):
            if record.status == "pending":
                self.store.transition(record.id, "running", started=now, error=None)
            started = self.store.get_job(record.id).started or now
            if spec.timeout and now - started > spec.timeout:
                self._end(record, "failed", f"timed out after {spec.timeout:g}s (--timeout).",
                          identity, client)
        elif record.error:
            self.store.update_job(record.id, error=None)
        return self.store.get_job(record.id)

    def _end(self, record: JobRecord, status: str, error: str | None, identity: JobIdentity,
             client: KubeAPI) -> None:
        """End the job; stop pods still running their program (parameter servers never
        exit, a failed job's peers would wait forever) but keep finished ones for their
        logs, and the chief's for its files: its keeper holds it until they are fetched
        (a failed job's chief, still running, is stopped once they are, see
        :meth:`fetch`). The job's times are its containers' own, so the duration is the
        real run time, not the time between two looks."""
        pods = client.list("Pod", identity.namespace, manifests.selector(identity))
        began, finished = run_times(pods)
        if record.status == "pending":
            self.store.transition(record.id, "running", started=began or time.time())
        if began is not None:
            self.store.update_job(record.id, started=began)
        ended = finished if status == "succeeded" and finished else time.time()
        self.store.transition(record.id, status, ended=ended, error=error)
        spec = JobSpec.from_dict(record.spec)
        state = self._state(record) or {}
        chief_pod = artifacts.chief_pod_name(identity, spec) if artifacts.fetchable(state) else None
        for pod in pods:
            name = pod["metadata"]["name"]
            if program_phase(pod) not in ("Pending", "Running", "Unknown"):
                continue
            if name == chief_pod and pod.get("status", {}).get("phase") == "Running":
                files.bound_chief(client, pod, state)
                continue
            try:
                client.delete("Pod", identity.namespace, name, propagation="Background")
            except KubernetesNotFound:
                pass

    # -- the job's files -------------------------------------------------------------------
    def wait(self, job: JobRecord, timeout: float | None = None, poll: float = 0.2) -> JobRecord:
        """As every backend's, then (once per job) the chief's files come home."""
        record = super().wait(job, timeout=timeout, poll=poll)
        if record.done:
            files.fetch_once(self.store, record, lambda: self._files(record))
        return record

    def _files(self, record: JobRecord) -> artifacts.JobFiles | None:
        return files.job_files(self._client, self._state(record), record)

    def fetch(self, job: JobRecord, stream: TextIO | None = None,
              release: bool | None = None) -> Outcome:
        """Copy the chief's output dir, logdir and backup dir into the local job dir
        (again: only what is new or changed), with a progress line on ``stream``
        (stderr by default). A finished job's pod is then released; a failed job's
        chief, if its program still runs, is stopped (it would wait for its peers
        forever). ``release`` False keeps the pod (cancel deletes it itself)."""
        record = self.store.get_job(job.id)
        # A running job's bucket is read as it is (its upload completes at its end).
        return files.fetch(record, self._files(record), stream, release, wait=record.done)

    def mirror(self, job: JobRecord, interval: float = mirror.INTERVAL_SECONDS) -> mirror.Mirror | None:
        """Keep the job's local logdir fresh while it runs (new event-file bytes every
        ``interval`` seconds), for TensorBoard; None for jobs without a keeper."""
        record = self.store.get_job(job.id)
        return files.mirror(record, self._files(record), lambda: self.refresh(record).done, interval)

    # -- logs ------------------------------------------------------------------------------
    def logs(self, job: JobRecord, follow: bool = False, tf_noise: bool = False,
             on_idle: Callable[[], None] | None = None) -> Iterator[LogLine]:
        state = self._state(job)
        if state is None:
            return iter(())
        options = KubernetesOptions.from_dict(state["options"])
        client = self._client(options)
        identity = self._identity(state)
        replicas = JobSpec.from_dict(job.spec).replicas()
        names = [(r.label, identity.pod(r)) for r in replicas]
        if state["launcher"] == "tfjob":
            names = [(r.label, f"{identity.prefix}-{r.type}-{r.index}") for r in replicas]
        if not follow:
            return podlogs.read_all(client, identity.namespace, names, tf_noise)
        return podlogs.follow(self, job, client, identity.namespace, names, tf_noise, on_idle)

    # -- jobs of other kernels and machines -------------------------------------------------
    def search_namespace(self, namespace: str | None = None, context: str | None = None) -> str:
        """The namespace a listing looks in: the one given, else the backend's option, else
        the kubeconfig context's."""
        options = self._context_options(context)
        return self._client(options).namespace(namespace or options.namespace)

    def _context_options(self, context: str | None) -> KubernetesOptions:
        return self.options.merged({"context": context} if context else None)

    def discover(self, namespace: str | None = None, context: str | None = None,
                 all_namespaces: bool = False) -> list[dict[str, Any]]:
        """Every cellship job in the cluster, wherever it was submitted from: found by the
        labels its objects carry (``app.kubernetes.io/managed-by=cellship``), not by this
        machine's store. Each is a dict: id, name (as labelled), namespace, created (the
        API's RFC 3339 time), launcher, object (its job object's name), pods
        (``{"worker-0": "Running"}``), nodes (``{"worker-0": "node-1"}``: each pod's
        ``spec.nodeName``, None until scheduled) and status (summed up from the pods, or the TFJob's
        condition) and user (who submitted it, by its ``cellship.io/user`` label; None
        for jobs older than that label). Newest first."""
        options = self._context_options(context)
        client = self._client(options)
        scope = None if all_namespaces else self.search_namespace(namespace, context)
        selector = MANAGED_SELECTOR
        found: dict[tuple[str, str], dict[str, Any]] = {}
        # List items of core kinds carry no "kind" field: tag them here.
        objects = ([("ConfigMap", o) for o in client.list("ConfigMap", scope, selector)]
                   + [("TFJob", o) for o in _tfjobs(client, scope, selector)])
        for kind, obj in objects:
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            job_id = labels.get(manifests.LABEL_JOB_ID)
            if not job_id:
                continue
            owners = {r.get("kind") for r in meta.get("ownerReferences") or ()}
            entry = found.setdefault((meta["namespace"], job_id), {
                "id": job_id, "name": labels.get(manifests.LABEL_JOB_NAME, job_id),
                "namespace": meta["namespace"], "created": meta.get("creationTimestamp"),
                "launcher": "pods", "object": meta["name"], "pods": {}, "nodes": {},
                "status": None, "user": labels.get(USER_LABEL)})
            if kind == "TFJob" or "TFJob" in owners:
                entry["launcher"] = "tfjob"
            if kind == "TFJob":
                entry["status"] = _tfjob_condition(obj)
                entry["created"] = meta.get("creationTimestamp") or entry["created"]
        for pod in client.list("Pod", scope, selector):
            labels = pod["metadata"].get("labels") or {}
            owner = found.get((pod["metadata"]["namespace"], labels.get(manifests.LABEL_JOB_ID, "")))
            if owner is not None:
                owner["pods"][replica_key(pod)] = program_phase(pod)  # not the keeper's
                owner["nodes"][replica_key(pod)] = (pod.get("spec") or {}).get("nodeName")
        for entry in found.values():
            entry["pods"] = dict(sorted(entry["pods"].items()))
            entry["nodes"] = dict(sorted(entry["nodes"].items()))
            entry["status"] = entry["status"] or pods_status(entry["pods"].values())
        return sorted(found.values(), key=lambda e: e["created"] or "", reverse=True)

    # -- cancel / delete -------------------------------------------------------------------
    def cancel(self, job: JobRecord, now: bool = False) -> JobRecord:
        """Delete every object of the job; first (unless ``now``) copy the chief's
        files as they are, so a cancelled job keeps its outputs so far."""
        record = self.refresh(job)
        state = self._state(record)
        found = self._files(record) if state is not None else None
        # A job that writes to a bucket uploads what it has when its pod is deleted, so its
        # files are read after the delete; the others' are copied out of the pod before.
        later = found is not None and found.all_in_storage
        if not now and not record.done and found is not None and not later:
            try:
                self.fetch(record, release=False)
            except CellshipError as err:
                files.warn(self.store, record, err)
        if state is not None:
            self._delete_objects(state, wait=True)
        if not now and not record.done and found is not None and later:
            try:
                files.fetch(record, found, release=False, wait=False)
            except CellshipError as err:
                files.warn(self.store, record, err)
        if not record.done:
            self.store.transition(job.id, "cancelled", ended=time.time(),
                                  error="cancelled by the user")
        return self.store.get_job(job.id)

    def delete(self, job: JobRecord) -> None:
        """Forget a finished job: its record, its directory and its cluster objects."""
        record = self.refresh(job)
        if not record.done:
            raise BackendError(f"Job {record.name} ({record.id}) is {record.status}; "
                               "cancel it before deleting it.")
        state = self._state(record)
        if state is not None:
            self._delete_objects(state, wait=False)
        self.store.delete_job(record.id)
        shutil.rmtree(record.job_dir, ignore_errors=True)

    def _delete_objects(self, state: dict[str, Any], wait: bool) -> None:
        """Delete the job object; ownerReferences make the garbage collector remove the
        rest. Foreground: the owner is gone only once its dependents are, so waiting for
        the owner waits for everything."""
        options = KubernetesOptions.from_dict(state["options"])
        client = self._client(options)
        kind = "TFJob" if state["launcher"] == "tfjob" else "ConfigMap"
        try:
            client.delete(kind, state["namespace"], state["prefix"], propagation="Foreground")
        except KubernetesNotFound:
            return
        if wait and not wait_gone(client, kind, state["namespace"], state["prefix"],
                                  CANCEL_WAIT_SECONDS):
            raise BackendError(
                f"Deleted {kind} {state['prefix']} in namespace {state['namespace']}, but its "
                f"pods were still terminating after {CANCEL_WAIT_SECONDS:g}s; check with "
                f"`kubectl get pods -n {state['namespace']} -l "
                f"{manifests.LABEL_JOB_ID}={state['job_id']}`.")


def _finished(spec: JobSpec, phases: dict[Replica, str]) -> bool:
    """MultiWorkerMirrored/single: every worker succeeded. ParameterServer: the chief did
    (workers and ps are servers that never exit by themselves)."""
    if spec.ps:
        return phases.get(Replica("chief", 0)) == "Succeeded"
    return bool(phases) and all(p == "Succeeded" for p in phases.values())


def _safe_events(client: KubeAPI, namespace: str, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Events explain a stuck pod; a user who may not list events still gets a diagnosis
    from the pod status alone."""
    if pod.get("status", {}).get("phase") in ("Running", "Succeeded") and not (
            pod.get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount"):
        return []
    try:
        return client.events("Pod", namespace, pod["metadata"]["name"])
    except KubernetesError:
        return []


def _tfjobs(client: KubeAPI, namespace: str | None, selector: str) -> list[dict[str, Any]]:
    """TFJobs of cellship, where the CRD exists and the user may list them; the
    ConfigMap of a TFJob job is listed anyway, so missing these only loses detail."""
    try:
        if not client.has_crd("TFJob"):
            return []
        return client.list("TFJob", namespace, selector)
    except (KubernetesNotFound, KubernetesForbidden):
        return []


def _tfjob_condition(tfjob: dict[str, Any]) -> str | None:
    """The TFJob operator's latest true condition, as a cellship status."""
    conditions = [c for c in (tfjob.get("status") or {}).get("conditions") or ()
                  if c.get("status") == "True"]
    if not conditions:
        return None
    return {"Created": "pending", "Running": "running", "Restarting": "running",
            "Succeeded": "succeeded", "Failed": "failed"}.get(conditions[-1].get("type"))
