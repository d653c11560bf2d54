"""The job view under a ``%%train`` cell: one widget with a row per replica, a progress
bar per worker, live curves, the deduplicated log and Cancel/Detach/TensorBoard/Copy
buttons; beside it, static outputs for front ends that render no widgets.

Why anywidget: the view is one custom ES module (``view.js``, no build step, no CDN) that
ships inside this Python package, so ``pip install cellship`` is all it takes, offline, in
JupyterLab, Notebook 7 and VS Code alike (anywidget's own front end comes as a prebuilt
labextension in its wheel). Its traits and custom messages are ipywidgets 8's. The curves
are drawn as SVG by that module: a plotting widget (bqplot, plotly) would resend whole
series on each update, while here the kernel sends only new points as small deltas (the
traffic goal is 20 kB/s at 10 scalars/s).

What is computed (progress, ETA, merging identical lines) lives in
:mod:`cellship.watch.jobview`, which knows nothing of IPython; this module only displays.

Two outputs are displayed:

* the view: the widget, plus (once following ends) the final curves as ``image/png`` and
  their text summary as ``text/plain`` in the same bundle, so a notebook executed by
  papermill, or rendered by nbconvert, keeps the picture;
* the log: ``text/plain`` only for front ends without widgets, marked as an (empty) widget
  output, which JupyterLab and Notebook 7 hide while the view shows the same lines.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from IPython.display import display

from cellship.train import api
from cellship.watch.jobview import JobViewModel
from cellship.watch.logstream import LogLine
from cellship.watch.metrics import ScalarPoint

HERE = Path(__file__).parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SEND_INTERVAL = 0.25   # seconds between two deltas to the browser
RECORD_INTERVAL = 1.0  # seconds between two looks at the job's record (replica states)


def widget_source(module: str) -> str:
    """An anywidget module's text with the shared DOM helpers (dom.js) in front: anywidget
    loads one ES source per widget, with no bundler to resolve a sibling import."""
    return (HERE / "dom.js").read_text() + "\n" + (HERE / module).read_text()


class JobWidget(anywidget.AnyWidget):
    """The browser side's model: the kernel's deltas arrive as custom messages; ``state``
    holds the final snapshot (so a saved notebook's widget state can draw it again)."""

    _esm = widget_source("view.js")
    _css = HERE / "view.css"
    key = traitlets.Unicode("").tag(sync=True)
    job_id = traitlets.Unicode("").tag(sync=True)
    job_name = traitlets.Unicode("").tag(sync=True)
    kernel_id = traitlets.Unicode("").tag(sync=True)
    following = traitlets.Bool(False).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Dict({}).tag(sync=True)


def widget_mime(widget: Any) -> dict[str, Any]:
    """The widget-view part of a widget's display bundle (the reference to its model)."""
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    return dict(data[WIDGET_MIME])


def kernel_id() -> str:
    """This kernel's id as the Jupyter server knows it (its connection file is
    ``kernel-<id>.json``), for the view's Detach button to interrupt it; empty when this
    is not a kernel started by a Jupyter server."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except (ImportError, RuntimeError, AttributeError):
        return ""
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-"):-len(".json")]
    return ""


def widgets_wanted(shell: Any) -> bool:
    """Whether to show the widget view: in a kernel (a front end may render widgets)
    unless ``CELLSHIP_VIEW=text``; plain IPython in a terminal gets the text view."""
    mode = os.environ.get("CELLSHIP_VIEW", "auto").strip().lower()
    if mode == "text":
        return False
    return mode == "widget" or getattr(shell, "kernel", None) is not None


def _chief_label(job: api.Job) -> str | None:
    labels = [r.label for r in job.record.replicas]
    for label in ("chief", "worker 0"):
        if label in labels:
            return label
    return labels[0] if labels else None


class JobView:
    """A job's view in the cell and the follower's callbacks that keep it current.

    ``line``, ``metric`` and ``event`` file what following yields into the
    :class:`JobViewModel`; ``tick`` (called by them and while idle) sends what changed at
    most every :data:`SEND_INTERVAL`; ``finish`` sends the final snapshot and writes the
    static outputs.
    """

    def __init__(self, job: api.Job, *, following: bool) -> None:
        self.job = job
        self.model = JobViewModel(chief=_chief_label(job))
        self.widget = JobWidget(key=uuid.uuid4().hex, job_id=job.id, job_name=job.name,
                                kernel_id=kernel_id(), following=following)
        self.widget.on_msg(self._on_message)
        self.last_send = 0.0
        self.last_record = 0.0
        self.view_handle: Any = None
        self.log_handle: Any = None
        self.finished = False

    # -- display --------------------------------------------------------------------------
    def _widget_bundle(self) -> dict[str, Any]:
        return {WIDGET_MIME: widget_mime(self.widget)}

    def show(self) -> None:
        self.model.set_record(self.job.record)
        waiting = (f"job {self.job.name} ({self.job.id}): its live view needs a front end "
                   "that renders widgets; the curves and logs follow here when it ends")
        self.view_handle = display({**self._widget_bundle(), "text/plain": waiting}, raw=True,
                                   display_id=True)
        self.log_handle = display(self._log_bundle(""), raw=True, display_id=True)

    @staticmethod
    def _log_bundle(text: str) -> dict[str, Any]:
        # model_id "": the widget renderer of JupyterLab/Notebook 7 hides this output (the
        # view shows the log); nbconvert, papermill's notebook and text front ends show text.
        return {WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": ""},
                "text/plain": text}

    # -- feeding ----------------------------------------------------------------------------
    def line(self, line: LogLine) -> None:
        self.model.add_line(line)
        self.tick()

    def metric(self, point: ScalarPoint) -> None:
        self.model.add_point(point)
        self.tick()

    def event(self, replica: str, event: dict[str, Any]) -> None:
        self.model.add_event(replica, event)
        self.tick()

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last_record >= RECORD_INTERVAL:
            self.last_record = now
            self.model.set_record(self.job.record)
        if not force and now - self.last_send < SEND_INTERVAL:
            return
        self.last_send = now
        delta = self.model.drain()
        if delta:
            self.widget.send({"type": "delta", "sent": time.time() * 1000, **delta})

    def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
        """A view that starts from nothing asks for everything (answered once the kernel
        is free to read widget messages: after following, or for a displayed Job)."""
        if isinstance(content, dict) and content.get("type") == "hello":
            self.widget.send({"type": "snapshot", "state": self.model.snapshot()})

    # -- the end ----------------------------------------------------------------------------
    def finish(self, message: str = "") -> None:
        """Final state to the browser (also kept as the widget's ``state`` for a saved
        notebook), the final picture and text for front ends without widgets."""
        if self.finished:
            return
        self.finished = True
        self.tick(force=True)
        snapshot = self.model.snapshot()
        with self.widget.hold_sync():
            self.widget.following = False
            self.widget.message = message
            self.widget.state = snapshot
        bundle = self._widget_bundle()
        if len(self.model.buffer):
            from cellship.watch.charts import render_png, render_text

            bundle["image/png"] = render_png(self.model.buffer,
                                             title=f"{self.job.name} ({self.job.id})")
            bundle["text/plain"] = render_text(self.model.buffer)
        else:
            bundle["text/plain"] = f"job {self.job.name} wrote no metrics"
        if self.view_handle is not None:
            self.view_handle.update(bundle, raw=True)
        if self.log_handle is not None:
            log = self.model.logs.text()
            progress = self.model.progress_text()
            self.log_handle.update(self._log_bundle(log + ("\n" + progress if progress else "")),
                                   raw=True)


def follow_in_background(job: api.Job, view: JobView, tf_noise: bool = False) -> threading.Thread:
    """Keep a displayed Job's view current from a thread while the kernel is free (a
    widget's messages may be sent from any thread); ends when the job does."""

    def run() -> None:
        try:
            job.follow(view.line, tf_noise=tf_noise, on_metric=view.metric,
                       on_idle=view.tick, on_event=view.event)
        except Exception as err:  # a thread's last word goes to the view
            view.finish(f"stopped following: {type(err).__name__}: {err}")
            return
        view.finish()

    thread = threading.Thread(target=run, name=f"cellship-view-{job.id}", daemon=True)
    thread.start()
    return thread


def job_bundle(job: api.Job, include: Any = None, exclude: Any = None) -> dict[str, Any]:
    """What displaying a :class:`cellship.Job` shows: its view, with the history replayed
    and, while it runs, kept current in the background."""
    view = JobView(job, following=False)
    view.model.set_record(job.record)
    follow_in_background(job, view)
    return {WIDGET_MIME: widget_mime(view.widget), "text/plain": job.status_text()}

