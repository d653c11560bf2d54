"""The one route table of the REST API: every endpoint of ``openapi.yaml`` is here, each
with its handler (one module per resource: :mod:`.jobs`, :mod:`.logs`, :mod:`.batches`,
:mod:`.models`, :mod:`.servers`, :mod:`.deployments`, :mod:`.releases`, :mod:`.events` (the push channel);
the version probe and the JSON 404 in :mod:`.base`)."""

from __future__ import annotations

from typing import Any

from jupyter_server.utils import url_path_join

from cellship.jupyter import base, batches, deployments, events, jobs, logs, models, releases, servers

PREFIX = "cellship/api"
_ID = r"(?P<{}>[^/]+)"

ROUTES: list[tuple[str, type]] = [
    ("version", base.VersionHandler),
    ("jobs", jobs.JobsHandler),
    (f"jobs/{_ID.format('job_id')}", jobs.JobHandler),
    (f"jobs/{_ID.format('job_id')}/logs", logs.JobLogsHandler),
    (f"jobs/{_ID.format('job_id')}/metrics", jobs.JobMetricsHandler),
    (f"jobs/{_ID.format('job_id')}/cancel", jobs.JobCancelHandler),
    (f"jobs/{_ID.format('job_id')}/detach", jobs.JobDetachHandler),
    (f"jobs/{_ID.format('job_id')}/tensorboard", jobs.JobTensorBoardHandler),
    (f"jobs/{_ID.format('job_id')}/files", jobs.JobFilesHandler),
    ("batches", batches.BatchesHandler),
    (f"batches/{_ID.format('batch_id')}", batches.BatchHandler),
    (f"batches/{_ID.format('batch_id')}/cancel", batches.BatchCancelHandler),
    ("models", models.ModelsHandler),
    (f"models/{_ID.format('name')}", models.ModelHandler),
    ("servers", servers.ServersHandler),
    (f"servers/{_ID.format('pid')}/stop", servers.ServerStopHandler),
    ("deployments", deployments.DeploymentsHandler),
    (f"deployments/{_ID.format('name')}", deployments.DeploymentHandler),
    ("releases", releases.ReleasesHandler),
    ("events", events.EventsHandler),
    ("(?P<path>.*)", base.NotFoundHandler),  # last: a JSON 404 for anything else
]


def handlers(base_url: str) -> list[tuple[str, type, dict[str, Any]]]:
    """Tornado handler specs under ``base_url`` (``/`` or JupyterHub's ``/user/NAME/``)."""
    return [(url_path_join(base_url, PREFIX, pattern) + "/?$", handler, {})
            for pattern, handler in ROUTES]
