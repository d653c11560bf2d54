"""``cellship batch ...`` and ``cellship batches``: the shell face of cellship.runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cellship.store import BatchRecord, RunRecord
from cellship.train.options import add_batch_options, batch_kwargs
from cellship.watch.follow import follow

BATCH_ACTIONS = ("show", "retry", "cancel")


def add_batch_commands(sub: Any) -> None:
    run = sub.add_parser("batch", help="run a notebook with papermill, once per parameter set "
                         "(also: batch show|retry|cancel NAME)")
    run.add_argument("notebook", metavar="NOTEBOOK")
    add_batch_options(run)  # the Kubernetes flags of --backend kubernetes included
    run.add_argument("--detach", action="store_true", help="run in the background")

    # `batch show|retry|cancel NAME` (see rewrite_argv) under names of their own. Added
    # without help= so `cellship --help` does not list them: argparse would print
    # help=SUPPRESS literally as "==SUPPRESS==".
    show = sub.add_parser("batch-show")
    show.add_argument("batch", metavar="NAME")
    show.add_argument("--sort", metavar="COLUMN", help="sort runs by this column")
    show.add_argument("--desc", action="store_true", help="sort descending")
    show.add_argument("--json", action="store_true", help="machine-readable output")

    retry = sub.add_parser("batch-retry")
    retry.add_argument("batch", metavar="NAME")
    retry.add_argument("--parallel", type=int, default=None, metavar="N")
    retry.add_argument("--detach", action="store_true")

    cancel = sub.add_parser("batch-cancel")
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


def cmd_batch(args: argparse.Namespace) -> int:
    from cellship.runs.api import create

    batch = create(args.notebook, **batch_kwargs(args))
    print(f"cellship: batch {batch.name} ({batch.id}): {len(batch.runs)} run(s), "
          f"{args.parallel} at a time", file=sys.stderr, flush=True)
    if args.detach:
        batch.start_detached()
        print(batch.id)
        return 0
    outcome = follow(batch, lambda: batch.run(print_event))
    if outcome.interrupted:
        print(f"\ncellship: interrupted; cancelled the remaining runs. {batch.summary()}",
              file=sys.stderr)
        return outcome.exit_code
    print(batch.summary(), file=sys.stderr)
    print(_table(batch))
    return outcome.exit_code


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
    outcome = follow(batch, lambda: batch.retry(parallel=args.parallel, on_event=print_event,
                                                detach=args.detach))
    if outcome.interrupted:
        print(f"\ncellship: interrupted. {batch.summary()}", file=sys.stderr)
        return outcome.exit_code
    if args.detach:
        print(batch.id)
        return 0
    print(batch.summary(), file=sys.stderr)
    print(_table(batch))
    return outcome.exit_code


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
