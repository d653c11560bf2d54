"""``cellship batch ...`` and ``cellship batches``: the shell face of cellship.runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cellship.store import BatchRecord, RunRecord
from cellship.train.options import add_batch_options, batch_kwargs

BATCH_ACTIONS = ("show", "retry", "cancel")

# `--backend kubernetes` flags of `cellship batch`: the pod flags every Kubernetes job takes
# (cellship.kube.flags, same parsing and checks as %%train's) except the training-only ones,
# plus what only batch runs take. All land in the batch's ``kubernetes`` dict.
TRAINING_ONLY_FLAGS = ("--launcher", "--k8s-logdir", "--k8s-output-dir", "--peer-timeout")
BATCH_K8S_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--timeout",), dict(dest="k8s_timeout", default=None, metavar="DURATION",
                          help="(kubernetes) fail a run after this long, e.g. 600, 10m, 1h "
                               "(the Job's activeDeadlineSeconds)")),
    (("--gpus",), dict(dest="k8s_gpus", type=int, default=None, metavar="G",
                       help="(kubernetes) GPUs per run")),
]

def add_batch_commands(sub: Any) -> None:
    run = sub.add_parser("batch", help="run a notebook with papermill, once per parameter set "
                         "(also: batch show|retry|cancel NAME)")
    run.add_argument("notebook", metavar="NOTEBOOK")
    add_batch_options(run)
    from cellship.kube import flags as k8s_flags

    for flags, kwargs in k8s_flags.K8S_OPTIONS + BATCH_K8S_OPTIONS:
        # Skip what the shared batch options may define already (argparse refuses twice).
        if flags[0] not in TRAINING_ONLY_FLAGS and flags[0] not in run._option_string_actions:
            run.add_argument(*flags, **kwargs)
    run.add_argument("--detach", action="store_true", help="run in the background")

    show = sub.add_parser("batch-show", help=argparse.SUPPRESS)
    show.add_argument("batch", metavar="NAME")
    show.add_argument("--sort", metavar="COLUMN", help="sort runs by this column")
    show.add_argument("--desc", action="store_true", help="sort descending")
    show.add_argument("--json", action="store_true", help="machine-readable output")

    retry = sub.add_parser("batch-retry", help=argparse.SUPPRESS)
    retry.add_argument("batch", metavar="NAME")
    retry.add_argument("--parallel", type=int, default=None, metavar="N")
    retry.add_argument("--detach", action="store_true")

    cancel = sub.add_parser("batch-cancel", help=argparse.SUPPRESS)
    cancel.add_argument("batch", metavar="NAME")

    listing = sub.add_parser("batches", help="list batch runs")
    listing.add_argument("--json", action="store_true")


def rewrite_argv(argv: list[str]) -> list[str]:
    """``batch show X`` -> ``batch-show X`` (argparse cannot tell a notebook named `show`
    from an action; actions win, `./show` still names a notebook)."""
    if len(argv) >= 2 and argv[0] == "batch" and argv[1] in BATCH_ACTIONS:
        return [f"batch-{argv[1]}"] + argv[2:]
    return argv


def print_event(kind: str, run: RunRecord, batch: BatchRecord) -> None:
    from cellship.runs.api import describe_event

    line = f"cellship: {describe_event(kind, run, batch)}"
    if kind != "started" and run.status != "succeeded":
        line += f"\n  output: {run.output_path}\n  log:    {run.log_path}"
    print(line, file=sys.stderr, flush=True)


def kubernetes_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``kubernetes`` dict of a batch from its flags (None when none was given)."""
    from cellship.kube import flags as k8s_flags
    from cellship.train.spec import parse_duration

    given = k8s_flags.from_args(args)
    if getattr(args, "k8s_timeout", None) is not None:
        given["timeout"] = parse_duration(args.k8s_timeout)
    if getattr(args, "k8s_gpus", None) is not None:
        given["gpus"] = args.k8s_gpus
    return given or None


def cmd_batch(args: argparse.Namespace) -> int:
    from cellship.runs.api import create

    kwargs = batch_kwargs(args)
    flags = kubernetes_options(args)
    if flags:
        kwargs["kubernetes"] = dict(kwargs.get("kubernetes") or {}) | flags
    batch = create(args.notebook, **kwargs)
    print(f"cellship: batch {batch.name} ({batch.id}): {len(batch.runs)} run(s), "
          f"{args.parallel} at a time", file=sys.stderr, flush=True)
    if args.detach:
        batch.start_detached()
        print(batch.id)
        return 0
    try:
        record = batch.run(print_event)
    except KeyboardInterrupt:
        print(f"\ncellship: interrupted; cancelled the remaining runs. {batch.summary()}",
              file=sys.stderr)
        return 130
    print(batch.summary(), file=sys.stderr)
    print(_table(batch))
    return 0 if record.status == "succeeded" else 1


def _table(batch: Any, sort: str | None = None, desc: bool = False) -> str:
    """The results as aligned text; built from plain rows so the shell does not pay for
    importing pandas (~0.4 s) on every batch."""
    rows = batch.rows(sort_by=sort, ascending=not desc)
    columns = [c for c in dict.fromkeys(k for row in rows for k in row) if c != "output"]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.6g}"
        return str(value)

    table = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)).rstrip() for line in table)


def cmd_batch_show(args: argparse.Namespace) -> int:
    from cellship.runs.api import get_batch

    batch = get_batch(args.batch)
    if args.json:
        rows = batch.rows(sort_by=args.sort, ascending=not args.desc)
        print(json.dumps({"id": batch.id, "name": batch.name, "status": batch.status,
                          "notebook": batch.record.notebook, "runs": rows}, indent=2, default=str))
        return 0
    print(batch.summary())
    print(_table(batch, args.sort, args.desc))
    return 0


def cmd_batch_retry(args: argparse.Namespace) -> int:
    from cellship.runs.api import get_batch

    batch = get_batch(args.batch)
    try:
        record = batch.retry(parallel=args.parallel, on_event=print_event, detach=args.detach)
    except KeyboardInterrupt:
        print(f"\ncellship: interrupted. {batch.summary()}", file=sys.stderr)
        return 130
    if args.detach:
        print(batch.id)
        return 0
    print(batch.summary(), file=sys.stderr)
    print(_table(batch))
    return 0 if record.status == "succeeded" else 1


def cmd_batch_cancel(args: argparse.Namespace) -> int:
    from cellship.runs.api import get_batch

    batch = get_batch(args.batch)
    record = batch.cancel()
    print(batch.summary())
    return 0 if record.status in ("cancelled", "succeeded", "failed") else 1


def cmd_batches(args: argparse.Namespace) -> int:
    from cellship.runs.api import batches

    found = batches()
    if args.json:
        print(json.dumps([{"id": b.id, "name": b.name, "status": b.status,
                           "notebook": b.record.notebook, "runs": len(b.runs)} for b in found],
                         indent=2))
        return 0
    if not found:
        print("no batches yet: `cellship batch NOTEBOOK -p NAME VALUE`")
    for b in found:
        print(b.summary())
    return 0


BATCH_COMMANDS = {"batch": cmd_batch, "batch-show": cmd_batch_show,
                  "batch-retry": cmd_batch_retry, "batch-cancel": cmd_batch_cancel,
                  "batches": cmd_batches}
