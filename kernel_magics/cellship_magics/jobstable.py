"""``%jobs`` as a table widget: sortable, filterable, and a click on a row opens that
job's view below the table (the text table stays beside it for front ends without
widgets)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import anywidget
import ipywidgets
import traitlets
from IPython.display import display

from cellship.errors import CellshipError
from cellship.train import api
from cellship_magics.view import WIDGET_MIME, job_bundle, widget_mime, widget_source

HERE = Path(__file__).parent


class JobsWidget(anywidget.AnyWidget):
    _esm = widget_source("jobstable.js")
    _css = HERE / "view.css"
    rows: traitlets.List[Any] = traitlets.List([]).tag(sync=True)


def job_row(job: api.Job) -> dict[str, Any]:
    r = job.record
    return {"id": r.id, "name": r.name, "status": r.status, "backend": r.backend,
            "user": job.user or "-", "replicas": len(r.replicas),
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created)),
            "created_ts": r.created, "duration": api.format_duration(r.duration),
            "seconds": r.duration}


def cluster_row(job: api.ClusterJob) -> dict[str, Any]:
    """A cluster-only job's row: ``origin`` says so (no local job dir, no view to open)."""
    from cellship.train.kubernetes.listing import pods_summary

    created = "-" if job.created is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                            time.localtime(job.created))
    return {"id": job.id, "name": f"{job.name} (cluster)", "status": job.status or "-",
            "backend": "kubernetes", "user": job.user or "-", "replicas": len(job.pods),
            "created": created, "created_ts": job.created or 0.0,
            "duration": pods_summary(job.pods), "seconds": None, "origin": job.origin}


def show_jobs(jobs: Sequence[api.Job], cluster: Sequence[api.ClusterJob] = (),
              note: str | None = None) -> ipywidgets.VBox:
    """Display the table (and its text beside it); returns the widget. ``cluster``: jobs
    found only in the cluster, listed after the store's; ``note``: why the cluster was not
    asked, printed as one line."""
    table = JobsWidget(rows=[job_row(j) for j in jobs] + [cluster_row(j) for j in cluster])
    detail = ipywidgets.Output()
    by_id = {j.id: j for j in cluster}

    def on_message(widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "open":
            return
        with detail:  # a widget message's output goes to the Output widget it is sent in
            detail.clear_output()
            elsewhere = by_id.get(str(content.get("id")))
            if elsewhere is not None:
                print(f"Job {elsewhere.name} ({elsewhere.id}) was submitted from another kernel "
                      f"or machine: it runs in namespace {elsewhere.namespace}, and this "
                      "machine has no job dir, logs or view of it.")
                return
            try:
                job = api.get_job(str(content.get("id")))
            except CellshipError as err:
                print(err)
                return
            display(job_bundle(job), raw=True)

    table.on_msg(on_message)
    box = ipywidgets.VBox([table, detail])
    text = api.listing_text(api.JobListing(list(jobs), list(cluster), note))
    display({WIDGET_MIME: widget_mime(box), "text/plain": text}, raw=True)
    if note:
        print(f"cellship: {note}")
    return box
