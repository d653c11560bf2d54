"""The public Python API: ``cellship.submit(...) -> Job``, ``cellship.jobs()``,
``cellship.get_job(ref)``. The magics and the CLI are thin layers over these."""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    import pandas

from cellship.durations import parse_duration
from cellship.errors import CellshipError, JobFailed, UsageError
from cellship.inside.relay import decode_event
from cellship.plugins import BACKEND_ENV, default_backend
from cellship.store import JobRecord, Store
from cellship.train.backend import Backend
from cellship.train.backends import get_backend
from cellship.train.program import HistoryCell, Program, build_program, program_from_script
from cellship.train.spec import JobSpec
from cellship.watch.logstream import LogLine, traceback_tail
from cellship.watch.metrics import MetricsBuffer, ScalarPoint, decode_relay, is_relay


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def saved_models(output_dir: str | Path) -> list[Path]:
    """SavedModel directories a job wrote under its output directory."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("saved_model.pb"))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Job:
    """A handle on one job: its record in the store plus the backend that runs it."""

    def __init__(self, record: JobRecord, backend: Backend) -> None:
        self._record = record
        self._backend = backend

    # -- state --------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def record(self) -> JobRecord:
        """The freshest record (re-read from the store)."""
        self._record = self._backend.refresh(self._record)
        return self._record

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def user(self) -> str | None:
        """Who submitted the job (``cellship.io/user`` on a cluster's objects): for a
        cluster job the user recorded at its launch, for a local one the user this process
        runs for; None when not recorded (a job launched by an older cellship)."""
        return self._backend.user(self._record)

    @property
    def output_dir(self) -> Path:
        return Path(self._record.output_dir)

    @property
    def logdir(self) -> Path:
        return Path(self._record.logdir)

    @property
    def program_path(self) -> Path:
        return Path(self._record.job_dir) / "program.py"

    def saved_models(self) -> list[Path]:
        return saved_models(self._record.output_dir)

    # -- actions ------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, check: bool = False) -> JobRecord:
        """Block until the job ends; with ``check``, raise JobFailed unless it succeeded."""
        self._record = self._backend.wait(self._record, timeout=timeout)
        if check and self._record.done and self._record.status != "succeeded":
            raise JobFailed(self.failure_report(), self.id, self._record.status)
        return self._record

    def logs(self, follow: bool = False, tf_noise: bool = False) -> Iterator[LogLine]:
        """Every replica's log lines (TensorFlow's C++ chatter only with ``tf_noise``);
        the metric relay's lines are left out (see :meth:`metrics`)."""
        for line in self._backend.logs(self.record, follow=follow, tf_noise=tf_noise):
            if not is_relay(line.text):
                yield line

    def follow(self, emit: Callable[[LogLine], None], tf_noise: bool = False,
               on_metric: Callable[[ScalarPoint], None] | None = None,
               on_idle: Callable[[], None] | None = None,
               on_event: Callable[[str, dict[str, Any]], None] | None = None) -> JobRecord:
        """Stream the job until it ends: log lines to ``emit``, relayed scalars to
        ``on_metric``, progress events to ``on_event(replica, event)``; ``on_idle`` runs
        while nothing new arrives. Returns the final record."""
        for line in self._backend.logs(self.record, follow=True, tf_noise=tf_noise,
                                       on_idle=on_idle):
            if not is_relay(line.text):
                emit(line)
                continue
            point = decode_relay(line.text)
            if point is not None:
                if on_metric is not None:
                    on_metric(point)
            elif on_event is not None:
                event = decode_event(line.text)
                if event is not None:
                    on_event(line.replica, event)
        return self.wait()

    def metrics(self) -> "pandas.DataFrame":
        """Every scalar the job wrote: columns step, wall_time, run, tag, value."""
        return self.metrics_buffer().to_dataframe()

    def metrics_buffer(self) -> MetricsBuffer:
        buffer = MetricsBuffer()
        buffer.add(self._backend.metrics(self.record))
        return buffer

    def cancel(self, now: bool = False) -> JobRecord:
        """Stop the job and every process or pod it started. A cluster job first copies
        its chief's files home as they are; ``now=True`` deletes at once instead (cluster
        jobs only: a local job's files are in its job dir already)."""
        if now:
            from cellship.train.kubernetes.backend import KubernetesBackend

            if not isinstance(self._backend, KubernetesBackend):
                raise UsageError(f"Job {self.name} ({self.id}) ran on the {self.record.backend} "
                                 "backend: its files are already in its job dir, and now=True "
                                 "(--now) is for cluster jobs only.")
            self._record = self._backend.cancel(self._record, now=True)
        else:
            self._record = self._backend.cancel(self._record)
        return self._record

    def delete(self) -> None:
        self._backend.delete(self._record)

    # -- reporting ----------------------------------------------------------------------
    def failure_report(self, traceback: bool = True) -> str:
        """The error, plus (with ``traceback``) the traceback of the replica that failed."""
        record = self.record
        lines = [f"Job {record.name} ({record.id}) {record.status}: {record.error or 'no reason recorded'}"]
        for replica in record.replicas if traceback else ():
            if replica.exit_code not in (None, 0) and replica.state == "failed":
                tb = traceback_tail(replica.log_path)
                if tb:
                    lines.append(f"[{replica.label}] " + tb.replace("\n", f"\n[{replica.label}] "))
                    break
        return "\n".join(lines)

    def summary(self) -> str:
        """A few lines for the end of a cell: status, duration, where things are."""
        r = self.record
        spec = JobSpec.from_dict(r.spec)
        topo = f"{spec.workers} worker{'s' if spec.workers != 1 else ''}"
        if spec.ps:
            topo = f"chief + {topo} + {spec.ps} ps"
        lines = [f"job {r.name} ({r.id}) {r.status} in {format_duration(r.duration)} · "
                 f"{topo} · backend {r.backend}" + (f" · {r.restarts} restart(s)" if r.restarts else "")]
        for model in self.saved_models():
            lines.append(f"  model:       {model}")
        lines.append(f"  output:      {r.output_dir}")
        lines.append(f"  tensorboard: {r.logdir}")
        lines.append(f"  logs:        cellship logs {r.id}")
        return "\n".join(lines)

    def status_text(self) -> str:
        """The summary plus each replica's state and the error: ``cellship status``."""
        lines = [self.summary()]
        for replica in self.record.replicas:
            code = "" if replica.exit_code is None else f" (exit {replica.exit_code})"
            lines.append(f"  {replica.label:<10} {replica.state}{code}")
        if self._record.error:
            lines.append(f"  error: {self._record.error}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """What ``cellship status JOB --json`` prints."""
        r = self.record
        spec = dict(r.spec)
        return {
            "id": r.id, "name": r.name, "status": r.status, "backend": r.backend,
            "user": self.user, "strategy": spec.get("strategy"), "workers": spec.get("workers"),
            "ps": spec.get("ps"), "gpus": spec.get("gpus"),
            "replicas": [rep.to_dict() for rep in r.replicas],
            "job_dir": r.job_dir, "output_dir": r.output_dir, "logdir": r.logdir,
            "saved_models": [str(p) for p in self.saved_models()],
            "created": _iso(r.created), "started": _iso(r.started), "ended": _iso(r.ended),
            "duration": r.duration, "restarts": r.restarts, "max_restarts": spec.get("max_restarts"),
            "detached": r.detached, "error": r.error, "source": r.source,
            "metrics": self._last_metrics(),
        }

    def _last_metrics(self) -> dict[str, dict[str, float]]:
        """The latest value of each scalar ("run/tag"); empty when none could be read."""
        try:
            return self.metrics_buffer().last_values()
        except CellshipError:
            return {}

    def __repr__(self) -> str:
        return f"<cellship.Job {self._record.name} ({self._record.id}) {self._record.status}>"


def jobs_table(jobs: Sequence[Job]) -> str:
    if not jobs:
        return "no jobs yet: run a cell with %%train, or `cellship train FILE.py`"
    rows = [("ID", "NAME", "STATUS", "BACKEND", "USER", "REPLICAS", "CREATED", "DURATION")]
    for job in jobs:
        r = job.record
        rows.append((r.id, r.name, r.status, r.backend, job.user or "-", str(len(r.replicas)),
                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created)),
                     format_duration(r.duration)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _store(store: Store | None) -> Store:
    return store or Store.default()


def get_job(ref: str, store: Store | None = None) -> Job:
    """The job with this id, unique id prefix, or unique name."""
    store = _store(store)
    record = store.find_job(ref)
    return Job(record, get_backend(record.backend, store))


def jobs(status: str | None = None, limit: int | None = None, store: Store | None = None,
         backend: str | None = None) -> list[Job]:
    """Jobs in the store, newest first (only those of ``backend`` when given)."""
    store = _store(store)
    return [Job(r, get_backend(r.backend, store))
            for r in store.list_jobs(status=status, limit=limit, backend=backend)]


CLUSTER_TIMEOUT_SECONDS = 3.0  # %jobs and the panel never wait longer for the cluster


@dataclass(frozen=True)
class ClusterJob:
    """A job found in the cluster by its labels that this machine's store does not have
    (submitted from another kernel, machine or colleague): no local job dir, no logs
    here; ``origin`` is always ``"cluster"``."""

    id: str
    name: str
    namespace: str | None
    status: str | None
    pods: Mapping[str, str]  # replica -> pod phase
    created: float | None
    user: str | None
    origin: str = "cluster"
    nodes: Mapping[str, str | None] = field(default_factory=dict)  # replica -> spec.nodeName

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "namespace": self.namespace,
                "status": self.status, "pods": dict(self.pods), "nodes": dict(self.nodes),
                "created": _iso(self.created), "user": self.user, "origin": self.origin,
                "backend": "kubernetes"}


@dataclass(frozen=True)
class JobListing:
    """What ``%jobs`` shows: this store's jobs, the cluster's jobs it does not have, and
    ``note``, one line saying why the cluster was not (fully) asked (None when it was, or
    when no cluster is configured and none was asked for)."""

    jobs: list[Job]
    cluster: list[ClusterJob]
    note: str | None = None


def cluster_configured() -> bool:
    """Whether this session points at a cluster: ``$CELLSHIP_BACKEND=kubernetes``, a
    kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), or a pod's ServiceAccount."""
    import os

    from cellship.kube.client import in_cluster, kubeconfig_path

    path = kubeconfig_path()
    return (os.environ.get(BACKEND_ENV) == "kubernetes" or os.path.exists(path)
            or in_cluster(None, path))


def cluster_only_jobs(store: Store | None = None, status: str | None = None,
                      timeout: float = CLUSTER_TIMEOUT_SECONDS) -> tuple[list[ClusterJob], str | None]:
    """The cellship jobs of the current context and namespace (or those the ``CELLSHIP_K8S_*``
    defaults name, as for ``cellship jobs --backend kubernetes``) that the store
    does not have, newest first, and None; or no jobs and one line saying why (no
    kubeconfig, the cluster refused or did not answer within ``timeout`` seconds)."""
    import os
    import threading

    from cellship.kube.flags import ENV_DEFAULTS
    from cellship.train.kubernetes.backend import KubernetesBackend
    from cellship.train.kubernetes.listing import cluster_jobs

    store = _store(store)
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["rows"] = cluster_jobs(
                KubernetesBackend(store), store=store,
                namespace=os.environ.get(ENV_DEFAULTS["namespace"]) or None,
                context=os.environ.get(ENV_DEFAULTS["context"]) or None)
        except CellshipError as err:
            outcome["error"] = err

    # A daemon thread: an unreachable API server must cost ``timeout`` at most, and a
    # call still hanging after it must not keep the kernel or the CLI from exiting.
    thread = threading.Thread(target=ask, name="cellship-cluster-jobs", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return [], f"cluster jobs not listed: the cluster did not answer within {timeout:g} s"
    if "error" in outcome:
        first = str(outcome["error"]).splitlines()[0] if str(outcome["error"]) else ""
        return [], f"cluster jobs not listed: {first or type(outcome['error']).__name__}"
    if "rows" not in outcome:  # an unexpected failure: the thread printed its traceback
        return [], "cluster jobs not listed: listing them failed (see the traceback above)"
    found = [ClusterJob(id=r["id"], name=r["name"], namespace=r.get("namespace"),
                        status=r.get("status"), pods=dict(r.get("pods") or {}),
                        created=r.get("created"), user=r.get("user"),
                        nodes=dict(r.get("nodes") or {}))
             for r in outcome["rows"] if not r.get("known")]
    return [j for j in found if status is None or j.status == status], None


def job_listing(status: str | None = None, limit: int | None = None, store: Store | None = None,
                include_cluster: bool | None = None,
                timeout: float = CLUSTER_TIMEOUT_SECONDS) -> JobListing:
    """``%jobs``: the store's jobs and, with ``include_cluster`` (None: when
    :func:`cluster_configured`), the cluster-only ones (see :func:`cluster_only_jobs`)."""
    store = _store(store)
    local = jobs(status=status, limit=limit, store=store)
    if include_cluster is None:
        include_cluster = cluster_configured()
    if not include_cluster:
        return JobListing(local, [])
    cluster, note = cluster_only_jobs(store, status=status, timeout=timeout)
    return JobListing(local, cluster[:limit] if limit is not None else cluster, note)


def cluster_jobs_table(cluster: Sequence[ClusterJob]) -> str:
    """The cluster-only jobs under ``%jobs``'s table."""
    if not cluster:
        return ""
    from cellship.train.kubernetes.listing import pods_summary

    rows = [("ID", "NAME", "NAMESPACE", "USER", "STATUS", "PODS", "CREATED")]
    for job in cluster:
        created = "-" if job.created is None else time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(job.created))
        rows.append((job.id, job.name, job.namespace or "-", job.user or "-", job.status or "-",
                     pods_summary(job.pods), created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return ("in the cluster only (submitted from another kernel or machine; no local job "
            "dir):\n" + "\n".join(lines))


def listing_text(listing: JobListing) -> str:
    """``%jobs``'s text: the store's table, the cluster-only table, the note."""
    parts = [jobs_table(listing.jobs)] if listing.jobs or not listing.cluster else []
    if listing.cluster:
        parts.append(cluster_jobs_table(listing.cluster))
    if listing.note:
        parts.append(f"({listing.note})")
    return "\n".join(parts)


def make_spec(*, workers: int = 1, ps: int = 0, gpus: int = 0, name: str | None = None,
              backend: str | None = None, env: Mapping[str, str] | None = None,
              timeout: float | str | None = None, startup_timeout: float | str = 300.0,
              max_restarts: int = 0, ship: Iterable[str] = ()) -> JobSpec:
    return JobSpec(
        workers=workers, ps=ps, gpus=gpus, name=name,
        backend=default_backend(backend),
        env=dict(env or {}),
        timeout=parse_duration(timeout) if isinstance(timeout, str) else timeout,
        startup_timeout=(parse_duration(startup_timeout) if isinstance(startup_timeout, str)
                         else startup_timeout),
        max_restarts=max_restarts, ship=tuple(ship))


_last_job: Job | None = None


def last_job() -> Job | None:
    """The job most recently submitted from this process (e.g. by the last %%train cell)."""
    return _last_job


def backend_extra(spec: JobSpec, kubernetes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The backend-specific sections stored with a job beside its JobSpec: for the
    kubernetes backend, ``{"kubernetes": options}`` with ``$CELLSHIP_K8S_*`` defaults
    filled in; Kubernetes options for another backend are refused, not ignored."""
    from cellship.kube import flags as k8s_flags

    options = k8s_flags.resolve(_options_dict(kubernetes), spec.backend)
    return {} if options is None else {k8s_flags.BACKEND: options}


def _options_dict(kubernetes: Any) -> dict[str, Any] | None:
    """``kubernetes=`` may be a dict or a KubernetesOptions (whole: every field counts)."""
    if kubernetes is None or isinstance(kubernetes, Mapping):
        return None if kubernetes is None else dict(kubernetes)
    to_dict = getattr(kubernetes, "to_dict", None)
    if to_dict is None:
        raise UsageError(f"kubernetes= must be a dict of Kubernetes options (e.g. "
                         f"{{'image': 'registry.example.com/ml/train:1'}}), got "
                         f"{type(kubernetes).__name__}.")
    return to_dict()


def submit_program(spec: JobSpec, program: Program, *, detached: bool = False,
                   source: str | None = None, store: Store | None = None,
                   kubernetes: Mapping[str, Any] | None = None) -> Job:
    """Submit a built program. ``kubernetes`` are the options of ``--backend kubernetes``
    (namespace, image, ...: see cellship.kube.options), stored as ``spec["kubernetes"]``."""
    global _last_job
    extra = backend_extra(spec, kubernetes)
    backend = get_backend(spec.backend, _store(store))
    record = backend.submit(spec, program, detached=detached, source=source, extra=extra or None)
    _last_job = Job(record, backend)
    return _last_job


def submit(code: str, *, history: Sequence[HistoryCell | str] = (),
           namespace: Mapping[str, Any] | None = None, detached: bool = False,
           source: str | None = None, store: Store | None = None, **options: Any) -> Job:
    """Run ``code`` as a job and return at once with its :class:`Job`.

    ``history`` are earlier cells (strings or HistoryCell) the code may draw definitions
    from; ``namespace`` the variables those cells made (for ``ship=[...]`` and checks).
    Options are those of ``%%train``: workers, ps, gpus, name, backend, env, timeout,
    startup_timeout, max_restarts, ship; with ``backend="kubernetes"`` also
    ``kubernetes={"image": ..., "namespace": ...}`` (the keys of KubernetesOptions).
    """
    kubernetes = options.pop("kubernetes", None)
    spec = make_spec(**options)
    cells = [h if isinstance(h, HistoryCell) else HistoryCell(i + 1, h) for i, h in enumerate(history)]
    program = build_program(code, cells, namespace, spec.ship)
    return submit_program(spec, program, detached=detached, source=source, store=store,
                          kubernetes=kubernetes)


def submit_script(path: str | Path, *, store: Store | None = None, detached: bool = False,
                  **options: Any) -> Job:
    """Run a Python script as a job (``cellship train FILE.py``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UsageError(f"Cannot read {path}: {err.strerror}.") from None
    kubernetes = options.pop("kubernetes", None)
    spec = make_spec(**options)
    return submit_program(spec, program_from_script(text, str(path)), detached=detached,
                          source=str(path.resolve()), store=store, kubernetes=kubernetes)


def dry_run_text(spec: JobSpec, program: Program,
                 kubernetes: Mapping[str, Any] | None = None) -> str:
    """What ``--dry-run`` prints: the program every replica runs and each TF_CONFIG; with
    the kubernetes backend, the objects that would be created (YAML) instead.

    Addresses shown are examples: the local backend picks free ports at launch.
    """
    from cellship.train.tfconfig import tf_configs

    extra = backend_extra(spec, kubernetes)
    replicas = spec.replicas()
    addresses = {r: f"127.0.0.1:{20000 + i}" for i, r in enumerate(replicas)}
    out = [f"# dry run: {len(replicas)} replica(s), strategy {spec.strategy}, backend "
           f"{spec.backend}; nothing was started",
           "# ---------------- program.py ----------------", program.source.rstrip("\n")]
    if program.shipped:
        out.append(f"# shipped by value (cloudpickle): {', '.join(sorted(program.shipped))}")
    if "kubernetes" in extra:
        from cellship.train.kubernetes.dryrun import manifests_text

        out.append(manifests_text(spec, program, extra["kubernetes"]))
    else:
        out.append("# ---------------- TF_CONFIG per replica (ports are picked at launch) "
                   "----------------")
        for replica, config in tf_configs(spec, addresses).items():
            out.append(f"{replica.label}: {config}")
    for note in program.notes:
        out.append(f"# note: {note}")
    return "\n".join(out)
