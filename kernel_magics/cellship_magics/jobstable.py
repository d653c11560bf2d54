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


def show_jobs(jobs: Sequence[api.Job]) -> ipywidgets.VBox:
    """Display the table (and its text beside it); returns the widget."""
    table = JobsWidget(rows=[job_row(j) for j in jobs])
    detail = ipywidgets.Output()

    def on_message(widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("type") != "open":
            return
        with detail:  # a widget message's output goes to the Output widget it is sent in
            detail.clear_output()
            try:
                job = api.get_job(str(content.get("id")))
            except CellshipError as err:
                print(err)
                return
            display(job_bundle(job), raw=True)

    table.on_msg(on_message)
    box = ipywidgets.VBox([table, detail])
    display({WIDGET_MIME: widget_mime(box), "text/plain": api.jobs_table(jobs)}, raw=True)
    return box
