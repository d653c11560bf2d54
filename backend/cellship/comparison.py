"""``cellship.compare(job_a, job_b, ...)``: several jobs' curves overlaid, and the options
and parameters in which they differ side by side.

A batch counts as its runs' jobs (each labelled with the run's parameters), so a sweep's
results get the same treatment: ``cellship.compare(batch)``.

No IPython here: the result displays itself through ``_repr_mimebundle_`` (a PNG of the
overlaid curves, an HTML and a text table of the differences), which a notebook, nbconvert
and papermill all understand.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from cellship.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pandas as pd

    from cellship.train.api import Job
    from cellship.watch.metrics import MetricsBuffer

_SPEC_KEYS = ("strategy", "workers", "ps", "gpus", "max_restarts", "timeout", "backend")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` returns: ``labels[i]`` names ``jobs[i]`` in the curves and
    the table; ``options`` has a row per option or parameter that differs between them."""

    jobs: tuple[Job, ...]
    labels: tuple[str, ...]
    options: pd.DataFrame
    buffer: MetricsBuffer

    def metrics(self) -> pd.DataFrame:
        """Every point of every job: columns job, run, tag, step, wall_time, value."""
        frame = self.buffer.to_dataframe()
        parts = frame["run"].str.split("/", n=1, expand=True)
        frame = frame.assign(job=parts[0], run=parts[1] if parts.shape[1] > 1 else "")
        return frame[["job", "run", "tag", "step", "wall_time", "value"]]

    def png(self) -> bytes | None:
        if not len(self.buffer):
            return None
        from cellship.watch.charts import render_png

        return render_png(self.buffer, title="compare: " + " vs ".join(self.labels))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        table = self.options
        text = table.to_string() if len(table) else "the jobs do not differ in their options"
        body = table.to_html(escape=True) if len(table) else f"<p>{html.escape(text)}</p>"
        bundle: dict[str, Any] = {"text/plain": f"{' vs '.join(self.labels)}\n{text}"}
        png = self.png()
        if png is not None:
            import base64

            bundle["image/png"] = png
            image = base64.b64encode(png).decode("ascii")
            body = f'<img src="data:image/png;base64,{image}"/>' + body
        bundle["text/html"] = body
        return bundle


def _as_jobs(item: Any) -> list[tuple[Job, str]]:
    """A job (or job reference) -> [(job, its name)]; a batch -> each run's jobs."""
    from cellship.train import api

    if isinstance(item, api.Job):
        return [(item, item.name)]
    if isinstance(item, str):
        job = api.get_job(item)
        return [(job, job.name)]
    runs = getattr(item, "runs", None)
    if runs is not None and hasattr(item, "id"):
        from cellship.runs.api import describe_params
        from cellship.store import Store
        from cellship.train.backends import get_backend

        store = Store.default()
        out = []
        for run in runs:
            for record in store.jobs_of_run(item.id, run.index):
                label = f"run {run.index + 1} ({describe_params(run.parameters)})"
                out.append((api.Job(record, get_backend(record.backend, store)), label))
        return out
    raise UsageError(f"cellship.compare takes jobs, job ids or batches, not {type(item).__name__}.")


def _options(job: Job) -> dict[str, str]:
    spec = dict(job.record.spec)
    values = {key: json.dumps(spec.get(key)) for key in _SPEC_KEYS if key in spec}
    values["backend"] = job.record.backend
    for name, value in sorted((spec.get("env") or {}).items()):
        values[f"env {name}"] = str(value)
    for name, value in sorted((spec.get("parameters") or {}).items()):
        values[f"parameter {name}"] = json.dumps(value)
    return values


def compare(*items: Any, all_options: bool = False) -> Comparison:
    """Overlay the curves of jobs (``Job`` objects, ids or names; a batch stands for its
    runs' jobs) and list the options and parameters they differ in (every option with
    ``all_options``)."""
    import pandas as pd

    from cellship.watch.metrics import MetricsBuffer

    pairs = [pair for item in items for pair in _as_jobs(item)]
    if len(pairs) < 1:
        raise UsageError("cellship.compare needs at least one job (or a batch whose runs "
                         "submitted jobs), e.g. cellship.compare(job_a, job_b).")
    labels: list[str] = []
    for _, label in pairs:  # the same name twice: tell them apart
        labels.append(label if label not in labels else f"{label} #{labels.count(label) + 1}")
    buffer = MetricsBuffer()
    for (job, _), label in zip(pairs, labels):
        frame = job.metrics_buffer().to_dataframe()
        for (run, tag), group in frame.groupby(["run", "tag"], sort=True):
            buffer.extend(f"{label}/{run}", str(tag), group["step"].to_numpy(),
                          group["value"].to_numpy(), group["wall_time"].to_numpy())
    options = {label: _options(job) for (job, _), label in zip(pairs, labels)}
    names: Sequence[str] = sorted({name for values in options.values() for name in values})
    rows = {name: [options[label].get(name, "") for label in labels] for name in names}
    if not all_options:
        rows = {name: values for name, values in rows.items() if len(set(values)) > 1}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=labels) if rows else \
        pd.DataFrame(columns=labels)
    table.index.name = "option"
    return Comparison(tuple(job for job, _ in pairs), tuple(labels), table, buffer)
