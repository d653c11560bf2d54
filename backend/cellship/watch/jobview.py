"""The live job view's model: what the notebook's job widget shows, kept apart from the
widget so it can be tested (and reused by any other display) without IPython.

It is fed what following a job yields (log lines, relayed scalars, progress events, the
job's record) and keeps:

* a row per replica (state, restarts, where it runs, why it cannot start);
* a progress bar per replica for the current epoch (steps done / total, steps per second,
  ETA), computed from the Keras callback's events (:mod:`cellship.inside.bootstrap`);
* the curves (a :class:`~cellship.watch.metrics.MetricsBuffer`): the TensorBoard scalars
  the relay brings, plus per-batch and per-epoch points taken from progress events for the
  curves the job does not write to TensorBoard itself;
* the log, with a line that several replicas print identically (MultiWorkerMirrored
  workers print the same Keras line each) kept once, marked with every replica that
  printed it.

A display asks for :meth:`JobViewModel.drain` (what changed since the last call, small)
and :meth:`JobViewModel.snapshot` (everything, for a new view or the saved notebook).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from cellship.watch.logstream import LogLine
from cellship.watch.metrics import MetricsBuffer, ScalarPoint, downsample

if TYPE_CHECKING:  # pragma: no cover - typing only
    from cellship.store import JobRecord, ReplicaRecord

MAX_LOG_ENTRIES = 5000       # the view keeps the last lines; the full log stays on disk
DEDUP_WINDOW_LINES = 256     # how far back an identical line from another replica merges
DEDUP_WINDOW_SECONDS = 30.0
SNAPSHOT_POINTS = 2000       # per curve in a snapshot (min-max decimated)

_ERROR = re.compile(r"^(Traceback \(most recent call last\)|[A-Za-z_][\w.]*(Error|Exception)\b"
                    r"|E\d{4} |ERROR\b|FATAL\b|CRITICAL\b|cellship: .*(fail|error))")
# A half-drawn Keras progress bar ("  3/47 ━━━━..."), cut into a line by output around it.
_PARTIAL_BAR = re.compile(r"^\s*(\d+)/(\d+) [━=.>\[]")


# Keras's epoch line ("16/16 - 2s - loss: 0.3 - 97ms/step"): workers print the same
# numbers with their own timings, so timings are left out when comparing lines.
_KERAS_LINE = re.compile(r"^\s*\d+/\d+ ")
_TIMING = re.compile(r"\b\d+(?:\.\d+)?(?:ms|us|µs|s)(?:/(?:step|epoch|sample))?(?=\s|$)")


def dedup_key(text: str) -> str:
    """What two replicas' lines must share to be shown once: the text, except that a
    Keras progress line's timings do not count."""
    return _TIMING.sub("#", text) if _KERAS_LINE.match(text) else text


def replica_order(label: str) -> tuple[int, str, int]:
    """chief, then workers, then parameter servers, by index (``worker 10`` after ``worker 2``)."""
    kind, _, index = label.partition(" ")
    rank = {"chief": 0, "worker": 1, "ps": 2}.get(kind, 3)
    return rank, kind, int(index) if index.isdigit() else 0


def is_error(text: str) -> bool:
    """Whether a log line reports an error (highlighted in the view)."""
    return bool(_ERROR.match(text.lstrip()))


def is_partial_bar(text: str) -> bool:
    """A Keras progress bar caught before its last step: the progress bar shows that."""
    match = _PARTIAL_BAR.match(text)
    return match is not None and int(match.group(1)) < int(match.group(2))


@dataclass
class LogEntry:
    """One line of the view's log: ``replicas`` (in :func:`replica_order`) printed ``text``."""

    id: int
    text: str
    replicas: list[str]
    error: bool
    time: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "replicas": list(self.replicas),
                "error": self.error}

    def __str__(self) -> str:
        return f"[{', '.join(self.replicas)}] {self.text}"


class LogDedup:
    """Merges identical lines printed by different replicas at about the same time.

    A line merges into an earlier entry with the same text (:func:`dedup_key`) when that entry is among the
    last ``window_lines`` distinct texts, is younger than ``window_seconds``, and does not
    already list this replica (a replica printing the same line twice gets two entries).
    """

    def __init__(self, window_lines: int = DEDUP_WINDOW_LINES,
                 window_seconds: float = DEDUP_WINDOW_SECONDS,
                 max_entries: int = MAX_LOG_ENTRIES) -> None:
        self.window_lines = window_lines
        self.window_seconds = window_seconds
        self.max_entries = max_entries
        self.entries: OrderedDict[int, LogEntry] = OrderedDict()
        self._recent: OrderedDict[str, LogEntry] = OrderedDict()
        self._next_id = 0
        self.dropped = 0  # entries pushed out of the view by max_entries

    def add(self, line: LogLine, now: float | None = None) -> tuple[LogEntry, bool]:
        """File ``line``; returns its entry and whether the entry is new (else: merged)."""
        now = time.time() if now is None else now
        key = dedup_key(line.text)
        entry = self._recent.get(key)
        if (entry is not None and line.replica not in entry.replicas
                and now - entry.time <= self.window_seconds and entry.id in self.entries):
            entry.replicas = sorted([*entry.replicas, line.replica], key=replica_order)
            self._recent.move_to_end(key)
            return entry, False
        entry = LogEntry(self._next_id, line.text, [line.replica], is_error(line.text), now)
        self._next_id += 1
        self.entries[entry.id] = entry
        self._recent[key] = entry
        self._recent.move_to_end(key)
        while len(self._recent) > self.window_lines:
            self._recent.popitem(last=False)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
            self.dropped += 1
        return entry, True

    def text(self) -> str:
        """The log as text (the fallback for front ends without widgets)."""
        head = [f"[cellship] ... {self.dropped} earlier line(s) not shown"] if self.dropped else []
        return "\n".join(head + [str(e) for e in self.entries.values()])


@dataclass
class Progress:
    """Where one replica is in its training: epoch ``epoch`` of ``epochs``, step ``step``
    of ``steps`` (None when Keras does not know the epoch's length)."""

    replica: str
    epoch: int = 0
    epochs: int | None = None
    step: int = 0
    steps: int | None = None
    rate: float | None = None      # steps per second in this epoch
    eta: float | None = None       # seconds left in this epoch
    finished: bool = False
    logs: dict[str, float] = field(default_factory=dict)
    time: float | None = None      # when the replica sent its latest event (its clock)
    _epoch_start: tuple[float, int] | None = None  # (time, step) the rate counts from

    def update(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        t = _float(event.get("t"), time.time())
        self.time = t
        if isinstance(event.get("epochs"), int):
            self.epochs = event["epochs"]
        if isinstance(event.get("steps"), int):
            self.steps = event["steps"]
        if kind == "train_begin":
            self.finished = False
        elif kind == "epoch_begin":
            self.epoch = _int(event.get("epoch"), self.epoch + 1)
            self.step, self.rate, self.eta = 0, None, None
            self._epoch_start = (t, 0)
        elif kind in ("progress", "epoch_end"):
            self.epoch = _int(event.get("epoch"), self.epoch)
            if kind == "progress":
                self.step = _int(event.get("step"), self.step)
            elif self.steps is not None:
                self.step = self.steps
            if self._epoch_start is None:
                self._epoch_start = (t, 0)
            start_t, start_step = self._epoch_start
            if t > start_t and self.step > start_step:
                self.rate = (self.step - start_step) / (t - start_t)
                if self.steps is not None:
                    self.eta = max(0.0, (self.steps - self.step) / self.rate)
            if isinstance(event.get("logs"), dict):
                self.logs = {k: float(v) for k, v in event["logs"].items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)
                             and math.isfinite(v)}
        elif kind == "train_end":
            self.finished = True
            self.eta = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"replica": self.replica, "epoch": self.epoch, "epochs": self.epochs,
                "step": self.step, "steps": self.steps, "rate": self.rate, "eta": self.eta,
                "finished": self.finished, "logs": dict(self.logs), "t": self.time}

    def __str__(self) -> str:
        total = "?" if self.steps is None else str(self.steps)
        epochs = "?" if self.epochs is None else str(self.epochs)
        parts = [f"epoch {self.epoch}/{epochs}", f"step {self.step}/{total}"]
        if self.rate:
            parts.append(f"{self.rate:.1f} steps/s")
        if self.eta is not None and not self.finished:
            parts.append(f"ETA {format_eta(self.eta)}")
        return f"{self.replica}: " + ", ".join(parts)


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _float(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return float(value)


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return default
    return value


def _where(replica: ReplicaRecord) -> str:
    """Where a replica runs, in a few words: ``pod on node`` on a cluster (just the pod
    while it waits for a node), the address locally."""
    if replica.pod:
        return f"{replica.pod} on {replica.node}" if replica.node else replica.pod
    return replica.address or ""


def replica_rows(record: JobRecord) -> list[dict[str, Any]]:
    """A row per replica: label, state (pending/running/restarting/succeeded/failed/...),
    restarts, exit code, where it runs (a pod and node on Kubernetes, an address locally)
    and why it cannot start.

    Why the reason is the replica's own where the backend gave one (Kubernetes): the job's
    error joins every pod's problem, and a row should say what is wrong with its pod, not
    with its neighbour's. A backend that gives none (local) keeps the job's error on
    every pending row, as before."""
    own = any(r.diagnosis for r in record.replicas)
    rows = []
    for replica in record.replicas:
        state = replica.state
        if state == "pending" and replica.restarts and not record.done:
            state = "restarting"
        row: dict[str, Any] = {"replica": replica.label, "state": state,
                               "restarts": replica.restarts, "exit_code": replica.exit_code,
                               "where": _where(replica)}
        if replica.pod:
            row["pod"], row["node"] = replica.pod, replica.node
        if replica.diagnosis:
            row["reason"], row["diagnosis"] = replica.reason, replica.diagnosis
        elif state == "pending" and record.error and not own:
            row["diagnosis"] = record.error
        rows.append(row)
    return rows


def job_header(record: JobRecord) -> dict[str, Any]:
    """The job's line above the rows. ``waiting``: why a pending job cannot start where
    the rows do not already say it all (a job-wide sentence such as "needs 3 GPUs, 1
    free" beside the pods' own), else None."""
    said = " ".join(r.diagnosis for r in record.replicas if r.diagnosis)
    waiting = (record.error if record.status == "pending" and record.error and said
               and record.error != said else None)
    return {"id": record.id, "name": record.name, "status": record.status,
            "backend": record.backend, "detached": record.detached,
            "restarts": record.restarts, "error": record.error, "waiting": waiting}


def event_points(replica_event: dict[str, Any], steps_seen: dict[int, int]) -> list[ScalarPoint]:
    """Curve points carried by one progress event: a ``progress`` event's batch logs as
    ``train/batch_<name>`` at the global step, an ``epoch_end`` event's logs as
    ``train/epoch_<name>`` and ``validation/epoch_<name>`` (``val_`` ones) at the 0-based
    epoch, as Keras's TensorBoard callback names them. ``steps_seen`` maps an epoch to
    its length, for the global step of later epochs when Keras does not know it."""
    kind = replica_event.get("kind")
    logs = replica_event.get("logs")
    if kind not in ("progress", "epoch_end") or not isinstance(logs, dict):
        return []
    t = _float(replica_event.get("t"), time.time())
    epoch = _int(replica_event.get("epoch"), 1)
    points = []
    if kind == "progress":
        step = _int(replica_event.get("step"), 0)
        steps = replica_event.get("steps")
        steps_seen[epoch] = max(steps_seen.get(epoch, 0), step)
        per_epoch = steps if isinstance(steps, int) else None
        before = ((epoch - 1) * per_epoch if per_epoch is not None
                  else sum(n for e, n in steps_seen.items() if e < epoch))
        for name, value in logs.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                points.append(ScalarPoint("train", f"batch_{name}", before + step, t,
                                          float(value)))
    else:
        for name, value in logs.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            points.append(ScalarPoint(run, f"epoch_{tag}", epoch - 1, t, float(value)))
    return points


class JobViewModel:
    """Everything the job view shows, fed from the follower's callbacks (one thread) and
    read by a display (possibly another): see the module docstring."""

    def __init__(self, chief: str | None = None) -> None:
        self.lock = threading.Lock()
        self.logs = LogDedup()
        self.buffer = MetricsBuffer()
        self.progress: dict[str, Progress] = {}
        self.replicas: list[dict[str, Any]] = []
        self.header: dict[str, Any] = {}
        self.chief = chief  # whose events give the curves (workers' metrics are all-reduced)
        self._sources: dict[tuple[str, str], str] = {}  # (run, tag) -> "relay" | "events"
        self._steps_seen: dict[int, int] = {}
        self._sent_points: dict[tuple[str, str], int] = {}
        self._pending_logs: OrderedDict[int, LogEntry] = OrderedDict()
        self._pending_progress: set[str] = set()
        self._pending_job = False

    # -- feeding ------------------------------------------------------------------------
    def add_line(self, line: LogLine) -> None:
        if is_partial_bar(line.text):
            return
        with self.lock:
            entry, _ = self.logs.add(line)
            self._pending_logs[entry.id] = entry

    def add_point(self, point: ScalarPoint) -> None:
        self._add_points([point], "relay")

    def add_event(self, replica: str, event: dict[str, Any]) -> None:
        with self.lock:
            progress = self.progress.get(replica)
            if progress is None:
                progress = self.progress[replica] = Progress(replica)
            progress.update(event)
            self._pending_progress.add(replica)
            if self.chief is None:
                self.chief = replica
            from_chief = replica == self.chief
        if from_chief:
            self._add_points(event_points(event, self._steps_seen), "events")

    def _add_points(self, points: Iterable[ScalarPoint], source: str) -> None:
        """Points of a curve come from one source: the first one that brought any (a job
        that writes TensorBoard scalars under Keras's names is not plotted twice)."""
        keep = []
        with self.lock:
            for point in points:
                key = (point.run, point.tag)
                if self._sources.setdefault(key, source) == source:
                    keep.append(point)
        if keep:
            self.buffer.add(keep)

    def set_record(self, record: JobRecord) -> None:
        rows, header = replica_rows(record), job_header(record)
        with self.lock:
            if rows != self.replicas or header != self.header:
                self.replicas, self.header = rows, header
                self._pending_job = True

    # -- reading ------------------------------------------------------------------------
    def _curves(self, since: dict[tuple[str, str], int] | None) -> dict[str, dict[str, Any]]:
        """``"run/tag" -> {"run", "tag", "steps", "values"}``: points after ``since``'s
        counts, or every curve (decimated) when ``since`` is None."""
        out: dict[str, dict[str, Any]] = {}
        for tag in self.buffer.tags():
            for run in self.buffer.runs(tag):
                steps, values = self.buffer.series(run, tag)
                key = (run, tag)
                if since is None:
                    steps, values = downsample(steps, values, SNAPSHOT_POINTS)
                    self._sent_points[key] = len(self.buffer.series(run, tag)[0])
                else:
                    sent = since.get(key, 0)
                    if len(steps) <= sent:
                        continue
                    since[key] = len(steps)
                    steps, values = steps[sent:], values[sent:]
                out[f"{run}/{tag}"] = {"run": run, "tag": tag, "steps": steps.tolist(),
                                       "values": [None if v != v else float(v)
                                                  for v in values.tolist()]}
        return out

    def drain(self) -> dict[str, Any]:
        """What changed since the last drain (or snapshot); empty dict when nothing did.
        New curve points are sent by count, so a point that arrives with a lower step than
        ones already sent (a restart resuming from a backup) is placed right only by the
        next snapshot."""
        with self.lock:
            delta: dict[str, Any] = {}
            if self._pending_logs:
                # in the order the entries were made (ids rise with arrival): the browser
                # appends an id it has not seen, so an entry merged again later in the
                # same delta (another replica's copy) must not move behind newer ones
                delta["logs"] = [e.to_dict() for e in sorted(self._pending_logs.values(),
                                                             key=lambda e: e.id)]
                self._pending_logs.clear()
            if self._pending_progress:
                delta["progress"] = {r: self.progress[r].to_dict()
                                     for r in sorted(self._pending_progress)}
                self._pending_progress.clear()
            if self._pending_job:
                delta["job"], delta["replicas"] = dict(self.header), list(self.replicas)
                self._pending_job = False
        curves = self._curves(self._sent_points)
        if curves:
            delta["curves"] = curves
        return delta

    def snapshot(self) -> dict[str, Any]:
        """Everything, for a view that starts from nothing; pending changes are included."""
        with self.lock:
            self._pending_logs.clear()
            self._pending_progress.clear()
            self._pending_job = False
            state = {"job": dict(self.header), "replicas": list(self.replicas),
                     "progress": {r: p.to_dict() for r, p in sorted(self.progress.items())},
                     "logs": [e.to_dict() for e in self.logs.entries.values()],
                     "dropped_logs": self.logs.dropped}
        state["curves"] = self._curves(None)
        return state

    def progress_text(self) -> str:
        with self.lock:
            return "\n".join(str(p) for _, p in sorted(self.progress.items()))
