"""The job options, defined once and used by both the ``%%train`` magic and ``cellship train``;
likewise the batch options of ``%batch`` and ``cellship batch`` (Kubernetes flags included).

Kept as plain (flags, argparse kwargs) pairs so the CLI builds an argparse parser and the
magic builds IPython ``magic_arguments`` decorators from the very same definitions
(ipyparallel's shared-argument-group habit).
"""

from __future__ import annotations

import argparse
from typing import Any

from cellship.durations import parse_duration
from cellship.kube import flags as k8s_flags
from cellship.plugins import default_backend
from cellship.train.spec import JobSpec, parse_env, parse_ship

JOB_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--workers", "-w"), dict(type=int, default=1, metavar="N",
                               help="number of worker replicas (default 1)")),
    (("--ps",), dict(type=int, default=0, metavar="N",
                     help="parameter servers; >0 lays out a ParameterServerStrategy cluster "
                          "with a chief (default 0: MultiWorkerMirroredStrategy)")),
    (("--gpus",), dict(type=int, default=0, metavar="G", help="GPUs per worker (default 0)")),
    (("--name", "-n"), dict(default=None, help="a name for the job (default: train-<n>)")),
    (("--backend", "-b"), dict(default=None,
                               help="where to run: local (default) or kubernetes "
                                    "(default $CELLSHIP_BACKEND)")),
    (("--env", "-e"), dict(action="append", default=None, metavar="K=V",
                           help="environment variable for every replica (repeatable)")),
    (("--timeout",), dict(default=None, metavar="DURATION",
                          help="fail the job after this long, e.g. 600, 10m, 1h")),
    (("--startup-timeout",), dict(default="5m", metavar="DURATION",
                                  help="fail if the replicas have not all joined the cluster "
                                       "this long after the first one waits (default 5m)")),
    (("--max-restarts",), dict(type=int, default=0, metavar="N",
                               help="restart the whole job up to N times after a replica fails; "
                                    "with cellship.job.backup() training resumes (default 0)")),
    (("--ship",), dict(action="append", default=None, metavar="A,B",
                       help="variables of this kernel to send to the job by value (cloudpickle)")),
    (("--detach", "-d"), dict(action="store_true",
                              help="return at once; the job keeps running (%%job ID attach)")),
    (("--dry-run",), dict(action="store_true",
                          help="print the program and each replica's TF_CONFIG (with "
                               "--backend kubernetes: the manifests); run nothing")),
]
# --namespace, --image, ... (only with --backend kubernetes): see cellship.kube.flags.
JOB_OPTIONS += k8s_flags.K8S_OPTIONS


def option_names() -> list[str]:
    """Every long option, for 'valid options are ...' messages."""
    return [flags[0] for flags, _ in JOB_OPTIONS]


def add_job_options(parser: argparse.ArgumentParser) -> None:
    for flags, kwargs in JOB_OPTIONS:
        parser.add_argument(*flags, **kwargs)


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """Validate parsed options into a JobSpec (raises UsageError naming the bad value).

    Kubernetes flags given for another backend are refused here, so no caller can
    silently drop them; :func:`kubernetes_from_args` reads them."""
    spec = JobSpec(
        workers=args.workers, ps=args.ps, gpus=args.gpus, name=args.name,
        backend=default_backend(args.backend),
        env=parse_env(args.env),
        timeout=parse_duration(args.timeout) if args.timeout is not None else None,
        startup_timeout=parse_duration(args.startup_timeout),
        max_restarts=args.max_restarts,
        ship=parse_ship(args.ship),
    )
    k8s_flags.check_backend(args, spec.backend)
    return spec


def kubernetes_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The Kubernetes flags that were given, validated, as the dict the job stores under
    ``spec["kubernetes"]`` (``$CELLSHIP_K8S_*`` defaults are added at submit)."""
    return k8s_flags.from_args(args)


# `cellship batch NOTEBOOK ...` and `%batch NOTEBOOK ...` share these.
BATCH_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("-p", "--parameter"), dict(nargs=2, action="append", metavar=("NAME", "VALUE"),
                                 help="a parameter (value parsed as YAML: 0.1, true, [1, 2], text)")),
    (("-f", "--parameters-file"), dict(metavar="FILE", help="YAML mapping of parameters")),
    (("--grid",), dict(action="append", metavar="NAME=V1,V2",
                       help="sweep a parameter over values; several --grid give their product")),
    (("--parallel",), dict(type=int, default=1, metavar="N", help="runs at a time (default 1)")),
    (("--backend",), dict(default=None, help="where runs execute: local or kubernetes "
                                             "(default $CELLSHIP_BACKEND, else local)")),
    (("--name",), dict(help="a name for the batch (default: the notebook's name)")),
    (("--kernel",), dict(help="kernel to use instead of the notebook's own")),
    (("--output-dir",), dict(metavar="DIR", help="where the executed notebooks go")),
]
# `--backend kubernetes` flags of a batch: the pod flags every Kubernetes job takes
# (cellship.kube.flags, same parsing and checks as %%train's) except the training-only
# ones, plus what only batch runs take. All land in the batch's ``kubernetes`` dict.
TRAINING_ONLY_FLAGS = ("--launcher", "--k8s-logdir", "--k8s-output-dir", "--storage-secret",
                       "--peer-timeout")
BATCH_OPTIONS += [(flags, kwargs) for flags, kwargs in k8s_flags.K8S_OPTIONS
                  if flags[0] not in TRAINING_ONLY_FLAGS]
BATCH_OPTIONS += [
    (("--timeout",), dict(dest="k8s_timeout", default=None, metavar="DURATION",
                          help="(kubernetes) fail a run after this long, e.g. 600, 10m, 1h "
                               "(the Job's activeDeadlineSeconds)")),
    (("--gpus",), dict(dest="k8s_gpus", type=int, default=None, metavar="G",
                       help="(kubernetes) GPUs per run")),
]


def batch_option_names() -> list[str]:
    """Every batch option (its first spelling), for 'valid options are ...' messages."""
    return [flags[0] for flags, _ in BATCH_OPTIONS]


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    for flags, kwargs in BATCH_OPTIONS:
        parser.add_argument(*flags, **kwargs)


def batch_kubernetes_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``kubernetes`` dict of a batch from its flags (None when none was given)."""
    given = k8s_flags.from_args(args)
    if getattr(args, "k8s_timeout", None) is not None:
        given["timeout"] = parse_duration(args.k8s_timeout)
    if getattr(args, "k8s_gpus", None) is not None:
        given["gpus"] = args.k8s_gpus
    return given or None


def batch_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Parsed batch options -> keyword arguments of cellship.runs.api.create (the backend
    is resolved there, so ``cellship.batch()`` honours ``$CELLSHIP_BACKEND`` too)."""
    from cellship.runs.params import pairs_to_dict, parse_grid

    return dict(parameters=pairs_to_dict(args.parameter), grid=parse_grid(args.grid),
                parameters_file=args.parameters_file, parallel=args.parallel, name=args.name,
                backend=args.backend, kernel=args.kernel, output_dir=args.output_dir,
                kubernetes=batch_kubernetes_from_args(args))
