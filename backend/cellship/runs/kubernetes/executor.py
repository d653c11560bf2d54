"""Batch runs as Kubernetes Jobs: ``cellship batch NB --backend kubernetes --image IMG``.

Each run is one batch/v1 Job (manifests in :mod:`cellship.runs.kubernetes.manifests`) whose pod runs
papermill in the image on the notebook parameterised here, with papermill's own functions.
No volume is shared with the cluster: the pod prints the executed notebook into its log
(:mod:`.podrun`), and a watcher thread per run (woken by a watch on the run's pod, and
at least every second) reads the log once the pod has ended, writes
the notebook to the run's ``output_path``, takes the recorded values from it exactly as a
local run does (:func:`cellship.runs.scraps.scraps_of`) and puts the outcome in the store. Then
it deletes the Job (foreground: pod and ConfigMap go with it), so a finished batch leaves
nothing in the cluster; cancel deletes the Jobs of the running runs the same way.

A pod that cannot start is diagnosed in plain words (:mod:`cellship.kube.diagnose`): a fatal
problem (image that may not be pulled, bad config) fails the run at once, a waiting one
(unschedulable, pull back-off) after ``startup_timeout``.
"""

from __future__ import annotations

import gzip
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cellship.errors import BackendError, CellshipError
from cellship.inside import podrun
from cellship.kube import client as kube_client
from cellship.kube.api import KubeAPI
from cellship.kube.diagnose import diagnose
from cellship.kube.errors import (
    KubernetesError,
    KubernetesForbidden,
    KubernetesNotFound,
    KubernetesUnauthorized,
)
from cellship.kube.options import KubernetesOptions
from cellship.kube.waiting import observe, wait_gone
from cellship.runs.executor_base import RunExecutor
from cellship.runs.kubernetes import manifests as kb
from cellship.store import BatchRecord, RunRecord, Store

POLL_SECONDS = 1.0  # the longest time between two looks at a run (its pod's changes wake it)
DELETE_WAIT_SECONDS = 60.0
API_GRACE_SECONDS = 60.0  # API errors tolerated in a row before a run is given up
DEADLINE_GRACE_SECONDS = 45.0  # a timed-out pod's SIGTERM grace (30 s) plus slack
LOG_TAIL_LINES = 5

ClientFactory = Callable[[str | None], KubeAPI]  # kubeconfig context -> client
Clock = Callable[[], float]


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str | None
    recorded: Mapping[str, Any] = field(default_factory=dict)


def parameterised_input(notebook: str, parameters: Mapping[str, Any], kernel: str) -> bytes:
    """The run's input notebook, parameters injected as papermill injects them (after the
    ``parameters`` cell, tagged ``injected-parameters``), gzip-compressed."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(notebook)
    if parameters:
        nb = parameterize_notebook(nb, dict(parameters), kernel_name=kernel)
    return gzip.compress(nbformat.writes(nb).encode(), mtime=0)


def _newest(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def _condition(job: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in job.get("status", {}).get("conditions") or []
                 if c.get("type") == kind and c.get("status") == "True"), None)


def _ever_ran(pod: Mapping[str, Any]) -> bool:
    """Whether the pod's container ever started (one stuck pulling its image did not)."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    status = statuses[0] if statuses else {}
    state, last = status.get("state") or {}, status.get("lastState") or {}
    return "running" in state or "terminated" in state or "terminated" in last


def _terminated(pod: Mapping[str, Any]) -> dict[str, Any] | None:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return ((statuses[0] if statuses else {}).get("state") or {}).get("terminated")


class RunWatch:
    """One run's Job, from its creation to the run's outcome in the store and the Job's
    deletion. :meth:`step` looks once; :meth:`loop` is the watcher thread."""

    def __init__(self, store: Store, client: KubeAPI, settings: kb.BatchSettings,
                 identity: kb.RunIdentity, run: RunRecord, notebook: str,
                 clock: Clock = time.monotonic) -> None:
        self.store, self.client, self.settings = store, client, settings
        self.identity, self.run, self.notebook = identity, run, notebook
        self.clock = clock
        self.started = clock()
        self.last_ok = self.started
        self.deadline_seen: float | None = None
        self.waiting_error: str | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    # -- the thread ------------------------------------------------------------------------
    def loop(self) -> None:
        """Look whenever the run's pod changes (a watch) and at least every POLL_SECONDS
        (the startup timeout and the API's grace are clock-driven), until an outcome."""
        try:
            while not self.stop.is_set():
                try:
                    for pods in observe(self.client, "Pod", self.identity.namespace,
                                        label_selector=kb.pod_selector(self.identity),
                                        every=POLL_SECONDS, stop=self.stop):
                        outcome = self.step(list(pods.values()))
                        if outcome is not None:
                            self.finish(outcome)
                            return
                except KubernetesError as err:  # the watch failed: judged like any API error
                    outcome = self._api_failed(err)
                    if outcome is not None:
                        self.finish(outcome)
                        return
                    self.stop.wait(POLL_SECONDS)
        except Exception as err:  # the thread's last word: the run fails, with the traceback
            self.note(traceback.format_exc())
            self.finish(Outcome("failed", f"cellship lost track of the run: "
                                          f"{type(err).__name__}: {err}"))

    def note(self, text: str) -> None:
        """A line for the run's log file (what the pod printed, and cellship's notes)."""
        with open(self.run.log_path, "a", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")

    # -- one look --------------------------------------------------------------------------
    def step(self, pods: list[dict[str, Any]] | None = None) -> Outcome | None:
        """One look: at ``pods`` (the run's pods as a watch saw them), else listed now."""
        ns, name = self.identity.namespace, self.identity.name
        try:
            if pods is None:
                pods = self.client.list("Pod", ns, kb.pod_selector(self.identity))
            pod = _newest(pods)
            if pod is not None and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return self._ended(pod)
            job = self.client.get("Job", ns, name)
            outcome = self._judge(job, pod)
        except KubernetesError as err:
            return self._api_failed(err)
        self.last_ok = self.clock()
        return outcome

    def _api_failed(self, err: KubernetesError) -> Outcome | None:
        """What an API failure means for the run: over when the Job is gone or we may not
        look; else nothing yet, unless the API has failed for API_GRACE_SECONDS."""
        if isinstance(err, KubernetesNotFound):
            return Outcome("failed", f"{kb.describe(self.identity)} was deleted outside "
                                     "cellship before the run ended.")
        if isinstance(err, (KubernetesForbidden, KubernetesUnauthorized)):
            return Outcome("failed", str(err))
        if self.clock() - self.last_ok > API_GRACE_SECONDS:
            return Outcome("failed", f"the Kubernetes API failed for over "
                                     f"{API_GRACE_SECONDS:g}s while following the run: {err}")
        return None

    def _judge(self, job: Mapping[str, Any], pod: Mapping[str, Any] | None) -> Outcome | None:
        failed = _condition(job, "Failed")
        if failed is not None and failed.get("reason") == "DeadlineExceeded":
            return self._deadline(pod)
        if failed is not None and pod is None:
            return Outcome("failed", f"{kb.describe(self.identity)} failed: "
                                     f"{failed.get('message') or failed.get('reason')}.")
        if _condition(job, "Complete") is not None and pod is None:
            return Outcome("failed", f"{kb.describe(self.identity)} completed, but its pod (whose "
                                     "log carries the output notebook) is gone.")
        waited = self.clock() - self.started
        if pod is None:
            if waited > self.settings.startup_timeout:
                events = self._events("Job", self.identity.name)
                return Outcome("failed", f"{kb.describe(self.identity)} made no pod in "
                                         f"{self.settings.startup_timeout:g}s"
                                         + (f" (Kubernetes says: {events})" if events else "")
                                         + ": check quotas and admission policies of the "
                                           "namespace.")
            return None
        if pod.get("status", {}).get("phase") == "Running":
            self._waiting(None)
            return None
        found = diagnose(pod, self._pod_events(pod))
        if found is None:
            self._waiting(None)
            return None
        if found.fatal:
            return Outcome("failed", found.message)
        if waited > self.settings.startup_timeout:
            return Outcome("failed", f"not started after {self.settings.startup_timeout:g}s "
                                     f"(startup_timeout): {found.message}")
        self._waiting(found.message)
        return None

    def _ended(self, pod: Mapping[str, Any]) -> Outcome:
        """The pod ended: bring the run home; a pod stopped by the run's timeout says so."""
        outcome = self.harvest(pod)
        if outcome.status != "succeeded":
            try:
                job = self.client.get("Job", self.identity.namespace, self.identity.name)
            except KubernetesError:
                return outcome
            failed = _condition(job, "Failed")
            if failed is not None and failed.get("reason") == "DeadlineExceeded":
                return Outcome("failed", self._timeout_reason(), outcome.recorded)
        return outcome

    def _timeout_reason(self) -> str:
        return (f"timed out after {self.settings.timeout or 0:g}s (the run's timeout: the "
                "Job's activeDeadlineSeconds, counted from the Job's start, image pull "
                "included).")

    def _deadline(self, pod: Mapping[str, Any] | None) -> Outcome | None:
        """The run's timeout passed: the Job controller stops the pod, whose papermill then
        prints the partial notebook; follow its log to the end to keep it."""
        self.deadline_seen = self.deadline_seen or self.clock()
        late = self.clock() - self.deadline_seen > DEADLINE_GRACE_SECONDS
        if pod is None or late:
            return Outcome("failed", self._timeout_reason())
        outcome = self.harvest(pod, follow=True)
        return Outcome("failed", self._timeout_reason(), outcome.recorded)

    def _waiting(self, message: str | None) -> None:
        """Show why a pod waits in the run's error while it waits (``batch show``)."""
        if message != self.waiting_error and not self.stop.is_set():
            self.waiting_error = message
            self.store.update_run(self.run.batch_id, self.run.index, error=message)
            if message:
                self.note(f"cellship: waiting: {message}")

    def _pod_events(self, pod: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            return self.client.events("Pod", self.identity.namespace, pod["metadata"]["name"])
        except KubernetesError:  # may not list events: diagnose from the status alone
            return []

    def _events(self, kind: str, name: str) -> str:
        try:
            events = self.client.events(kind, self.identity.namespace, name)
        except KubernetesError:
            return ""
        texts = [e.get("message", "").strip() for e in events if e.get("type") == "Warning"]
        return " | ".join(dict.fromkeys(t for t in texts if t))

    # -- bringing the run home -------------------------------------------------------------
    def harvest(self, pod: Mapping[str, Any], follow: bool = False) -> Outcome:
        """Read the ended pod's log: the output notebook to ``output_path``, the rest to
        the run's log file, and the outcome from the pod's result line."""
        name = pod["metadata"]["name"]
        log_error = None
        try:
            lines = list(self.client.pod_log(self.identity.namespace, name, follow=follow))
        except KubernetesError as err:
            lines, log_error = [], str(err)
        parsed = podrun.parse_log(lines)
        if parsed.lines:
            self.note("\n".join(parsed.lines))
        recorded: dict[str, Any] = {}
        if parsed.notebook is not None:
            recorded = self._write_notebook(parsed.notebook)
        result = parsed.result or {}
        terminated = _terminated(pod) or {}
        code = terminated.get("exitCode")
        came_home = parsed.notebook is not None
        if result.get("status") == "succeeded" and came_home and code in (0, None):
            return Outcome("succeeded", None, recorded)
        reasons: list[str] = []
        if result.get("error"):
            reasons.append(str(result["error"]))
        found = diagnose(pod) if pod.get("status", {}).get("phase") == "Failed" else None
        if found is not None and found.reason == "OOMKilled":
            reasons.append(found.message)
        elif not result:
            tail = " | ".join(line for line in parsed.lines[-LOG_TAIL_LINES:] if line.strip())
            # The container's own words, and the pod's (an eviction says "node low on memory").
            why = ", ".join(dict.fromkeys(w for w in (
                terminated.get("message") or terminated.get("reason"),
                pod.get("status", {}).get("message")) if w))
            reasons.append(f"the pod ended (exit code {code}{', ' + why if why else ''}) "
                           "before papermill reported a result"
                           + (f"; its log ends: {tail}" if tail else ""))
        if log_error:
            reasons.append(f"its log could not be read: {log_error}")
        elif not came_home and (parsed.markers_seen or result.get("status") == "succeeded"):
            # Printed but not whole (log rotated or cut). Without any marker, the pod never got
            # that far or papermill wrote no notebook, and the reasons above say why.
            reasons.append(parsed.problem or "no output notebook came back")
        return Outcome("failed", "; ".join(reasons) or f"the pod ended with exit code {code}",
                       recorded)

    def _write_notebook(self, data: bytes) -> dict[str, Any]:
        """Write the executed notebook (paths in its papermill metadata made the local ones)
        and return its recorded values, as a local run's runner does."""
        import nbformat

        from cellship.runs.scraps import scraps_of

        out = Path(self.run.output_path)
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            # Not JSON or not UTF-8 (ValueErrors), or no notebook nbformat can convert.
            out.write_bytes(data)
            self.note(f"cellship: the output notebook does not read as a notebook: {err}")
            return {}
        meta = nb.metadata.setdefault("papermill", {})
        meta["input_path"] = self.notebook
        meta["output_path"] = str(out)
        nbformat.write(nb, str(out))
        return scraps_of(nb)

    def finish(self, outcome: Outcome) -> None:
        """The outcome into the store (a cancel meanwhile wins), then the Job out of the
        cluster."""
        current = self.store.get_run(self.run.batch_id, self.run.index)
        status, error = outcome.status, outcome.error
        if current.status == "cancelled":
            status, error = "cancelled", current.error or "cancelled"
        if error:
            self.note(f"cellship: run {status}: {error}")
        self.store.update_run(self.run.batch_id, self.run.index, status=status,
                              ended=time.time(), error=error, recorded=dict(outcome.recorded))
        began = time.monotonic()
        try:
            self.delete()
        except CellshipError as err:
            self.note(f"cellship: {err}")
        else:
            self.note(f"cellship: deleted {kb.describe(self.identity)} with its pod and "
                      f"ConfigMap ({time.monotonic() - began:.1f} s)")

    def delete(self) -> None:
        delete_job(self.client, self.identity.namespace, self.identity.name,
                   self.identity.batch_id)

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self.loop, daemon=True,
                                       name=f"cellship-k8s-run-{self.run.index}")
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def delete_job(client: KubeAPI, namespace: str, name: str, batch_id: str,
               wait: float = DELETE_WAIT_SECONDS) -> None:
    """Delete a run's Job with foreground propagation and wait until it is gone: the Job
    stays until its pod and ConfigMap are, so gone means nothing is left.

    A pod whose container never ran (stuck pulling its image, unschedulable) is then
    removed at once (grace 0): it has nothing to stop, and the kubelet takes the whole grace
    period and more over such a pod (38 s measured on 1.20), which the Job would wait for.
    Only after the Job's deletion began, or its controller makes a replacement pod."""
    try:
        client.delete("Job", namespace, name, propagation="Foreground")
    except KubernetesNotFound:
        return
    try:
        pods = client.list("Pod", namespace, f"{kb.JOB_NAME_LABEL}={name}")
    except KubernetesError:
        pods = []
    for pod in pods:
        if not _ever_ran(pod):
            try:
                client.delete("Pod", namespace, pod["metadata"]["name"],
                              propagation="Background", grace_seconds=0)
            except KubernetesError:
                pass  # gone already, or not ours to hurry: the Job's deletion goes on
    if not wait_gone(client, "Job", namespace, name, wait):
        raise BackendError(f"Deleted Job {name} in namespace {namespace}, but it was still "
                           f"there after {wait:g}s; check with `kubectl get "
                           f"jobs,pods,configmaps -n {namespace} -l "
                           f"{kb.LABEL_BATCH_ID}={batch_id}`.")


class KubernetesRunExecutor(RunExecutor):
    """Runs each batch run as a Kubernetes Job; one watcher thread per running run."""

    name = "kubernetes"

    def __init__(self, store: Store, client_factory: ClientFactory | None = None,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(store)
        self._connect = client_factory or kube_client.connect
        self._settings: dict[str, kb.BatchSettings] = {}
        self.clock = clock
        self.watches: dict[tuple[str, int], RunWatch] = {}

    # -- options ---------------------------------------------------------------------------
    def check_options(self, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The pod options checked and completed as a %%train job's are (flag syntax,
        ``$CELLSHIP_K8S_IMAGE`` and friends as defaults), then the batch-only ones."""
        from cellship.kube import flags as k8s_flags

        data = dict(options or {})
        batch_only = {k: data.pop(k) for k in kb.BATCH_ONLY if k in data}
        data = k8s_flags.resolve(data, self.name) or {}
        return kb.BatchSettings.from_dict(data | batch_only).to_dict()

    def settings(self, batch: BatchRecord) -> kb.BatchSettings:
        if batch.id not in self._settings:
            self._settings[batch.id] = kb.BatchSettings.from_dict(self.load_options(batch))
        return self._settings[batch.id]

    def client(self, options: KubernetesOptions) -> KubeAPI:
        return self._connect(options.context)

    def namespace(self, settings: kb.BatchSettings) -> str:
        return self.client(settings.options).namespace(settings.options.namespace)

    # -- the interface ---------------------------------------------------------------------
    def start(self, run: RunRecord) -> None:
        """Create the run's Job, then its ConfigMap owned by it, and follow the Job in a
        thread. A run that cannot be created fails at once, with the reason."""
        batch = self.store.get_batch(run.batch_id)
        key = (run.batch_id, run.index)
        try:
            settings = self.settings(batch)
            client = self.client(settings.options)
            identity = kb.RunIdentity(batch.id, batch.name, run.index, run.attempt,
                                      self.namespace(settings))
            watch = RunWatch(self.store, client, settings, identity, run, batch.notebook,
                             self.clock)
            self.watches[key] = watch
            kernel = batch.kernel or "python3"
            notebook = parameterised_input(batch.notebook, run.parameters, kernel)
            kb.check_input_size(notebook)
            owner = client.create(kb.job(identity, settings, kernel))
            try:
                client.create(kb.config_map(identity, notebook, owner))
            except CellshipError:
                client.delete("Job", identity.namespace, identity.name, propagation="Background")
                raise
        except CellshipError as err:
            self.store.update_run(run.batch_id, run.index, status="failed", ended=time.time(),
                                  error=str(err))
            return
        watch.note(f"cellship: created {kb.describe(identity)}")
        watch.start_thread()

    def running(self, run: RunRecord) -> bool:
        watch = self.watches.get((run.batch_id, run.index))
        return watch is not None and watch.alive()

    def kill(self, run: RunRecord) -> None:
        """Stop following the run and delete its Job (foreground: pod and ConfigMap go
        too); return once they are gone."""
        watch = self.watches.get((run.batch_id, run.index))
        if watch is None:
            return
        watch.stop.set()
        if watch.thread is not None:
            watch.thread.join(timeout=DEADLINE_GRACE_SECONDS)
        try:
            watch.delete()
        except CellshipError as err:
            watch.note(f"cellship: {err}")
            self.store.update_run(run.batch_id, run.index, error=f"cancelled; {err}")

    def abandon(self, batch: BatchRecord) -> None:
        """Delete every Job of the batch still in the cluster (its coordinator died)."""
        settings = self.settings(batch)
        client = self.client(settings.options)
        namespace = self.namespace(settings)
        problems = []
        for job in client.list("Job", namespace, kb.batch_selector(batch.id)):
            try:
                delete_job(client, namespace, job["metadata"]["name"], batch.id)
            except CellshipError as err:
                problems.append(str(err))
        if problems:
            raise BackendError(" ".join(problems))

