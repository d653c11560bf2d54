"""The one route table of the REST API: every endpoint of ``openapi.yaml`` is here."""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from cellship.jupyter import handlers as h

PREFIX = "cellship/api"
_ID = r"(?P<{}>[^/]+)"

ROUTES: list[tuple[str, type]] = [
    ("version", h.VersionHandler),
    ("jobs", h.JobsHandler),
    (f"jobs/{_ID.format('job_id')}", h.JobHandler),
    (f"jobs/{_ID.format('job_id')}/logs", h.JobLogsHandler),
    (f"jobs/{_ID.format('job_id')}/metrics", h.JobMetricsHandler),
    (f"jobs/{_ID.format('job_id')}/cancel", h.JobCancelHandler),
    (f"jobs/{_ID.format('job_id')}/tensorboard", h.JobTensorBoardHandler),
    (f"jobs/{_ID.format('job_id')}/files", h.JobFilesHandler),
    ("batches", h.BatchesHandler),
    (f"batches/{_ID.format('batch_id')}", h.BatchHandler),
    (f"batches/{_ID.format('batch_id')}/cancel", h.BatchCancelHandler),
    ("models", h.ModelsHandler),
    (f"models/{_ID.format('name')}", h.ModelHandler),
    ("(?P<path>.*)", h.NotFoundHandler),  # last: a JSON 404 for anything else
]


def handlers(base_url: str) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado handler specs under ``base_url`` (``/`` or JupyterHub's ``/user/NAME/``)."""
    return [(url_path_join(base_url, PREFIX, pattern) + "/?$", handler, {})
            for pattern, handler in ROUTES]
