"""TensorBoard over jobs: what ``%job ID tensorboard``, ``cellship tensorboard JOB...``
and the Jupyter panel's TensorBoard button call."""

from __future__ import annotations

from typing import Any, Sequence

from cellship.errors import UsageError
from cellship.watch.tensorboard.launch import start
from cellship.watch.tensorboard.server import TensorBoardServer, normalize_run_name


def job_logdirs(jobs: Sequence[Any]) -> dict[str, str]:
    """Run name -> logdir for jobs (anything with ``id``, ``name``, ``logdir``): run names
    are the jobs' names, with the id appended where two jobs share a name; a job given
    twice is shown once."""
    unique = list({job.id: job for job in jobs}.values())
    names = [normalize_run_name(job.name) for job in unique]
    out: dict[str, str] = {}
    for job, name in zip(unique, names):
        key = name if names.count(name) == 1 else f"{name}-{normalize_run_name(job.id)}"
        out[key] = str(job.logdir)
    return out


def open_tensorboard(refs: Sequence[str], port: int | None = None, host: str = "127.0.0.1",
                     reuse: bool = True) -> TensorBoardServer:
    """Start or reuse a TensorBoard over the logdirs of the jobs ``refs`` name (ids, id
    prefixes or unique names), bound to this process."""
    from cellship.train import api

    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise UsageError("Name at least one job to show in TensorBoard; `cellship jobs` lists them.")
    jobs = [api.get_job(ref) for ref in refs]
    return start(job_logdirs(jobs), host=host, port=port, reuse=reuse)
