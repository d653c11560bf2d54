"""The ``cellship`` command: a thin layer over :mod:`cellship.train.api`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Sequence

from cellship.cli.batch import BATCH_COMMANDS, add_batch_commands, rewrite_argv
from cellship.cli.build import add_build_command, cmd_build
from cellship.cli.deploy import DEPLOY_COMMANDS, add_deploy_commands
from cellship.cli.rbac import RBAC_COMMANDS, add_rbac_command
from cellship.cli.release import RELEASE_COMMANDS, add_release_commands
from cellship.cli.serve import SERVING_COMMANDS, add_serving_commands
from cellship.errors import CellshipError, UsageError
from cellship.store import JOB_STATUSES
from cellship.train import api
from cellship.train.options import add_job_options, kubernetes_from_args, spec_from_args
from cellship.watch.follow import follow

if TYPE_CHECKING:
    from cellship.train.kubernetes.backend import KubernetesBackend


class _Parser(argparse.ArgumentParser):
    """argparse that names the valid options when it rejects one."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message or "invalid" in message:
            valid = [a.option_strings[0] for a in self._actions if a.option_strings
                     and a.option_strings[0] not in ("-h",)]
            if valid:
                message += f"\nvalid options: {', '.join(valid)}"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cellship", description="Ship notebook cells and scripts as "
                     "distributed TensorFlow jobs, and follow them.")
    parser.add_argument("--version", action="version", version=f"cellship {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    train = sub.add_parser("train", help="run a Python script as a job")
    train.add_argument("script", metavar="FILE.py")
    add_job_options(train)

    jobs = sub.add_parser("jobs", help="list jobs")
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.add_argument("--status", choices=JOB_STATUSES, help="only jobs with this status")
    jobs.add_argument("--limit", type=int, default=None, help="at most this many (newest first)")
    jobs.add_argument("--backend", "-b", default=None,
                      help="only this backend's jobs; kubernetes also lists the cluster's "
                           "cellship jobs, wherever they were submitted from")
    jobs.add_argument("--namespace", default=None, metavar="NS",
                      help="(kubernetes) namespace to list (default $CELLSHIP_K8S_NAMESPACE, "
                           "else the context's)")
    jobs.add_argument("--all-namespaces", "-A", action="store_true",
                      help="(kubernetes) list every namespace you may read")
    jobs.add_argument("--context", default=None, metavar="NAME",
                      help="(kubernetes) kubeconfig context (default $CELLSHIP_K8S_CONTEXT)")

    logs = sub.add_parser("logs", help="print a job's logs")
    logs.add_argument("job", metavar="JOB", help="job id or unique name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--tf-noise", action="store_true",
                      help="also show TensorFlow's C++ INFO/WARNING lines")

    status = sub.add_parser("status", help="show one job")
    status.add_argument("job", metavar="JOB", help="job id or unique name")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    cancel = sub.add_parser("cancel", help="cancel a job and stop all of its processes")
    cancel.add_argument("job", metavar="JOB", help="job id or unique name")
    cancel.add_argument("--now", action="store_true",
                        help="(kubernetes) delete at once, without first copying the chief's "
                             "files home")

    fetch = sub.add_parser("fetch", help="copy a cluster job's files (outputs, TensorBoard "
                                         "logs, backups) into its local job dir again")
    fetch.add_argument("job", metavar="JOB", help="job id or unique name")

    board = sub.add_parser("tensorboard", help="serve TensorBoard over jobs' logdirs until Ctrl-C")
    board.add_argument("jobs", metavar="JOB", nargs="+", help="job ids or unique names (one run each)")
    board.add_argument("--port", type=int, default=None, help="port to serve on (default: a free one)")
    board.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    add_batch_commands(sub)
    add_serving_commands(sub)
    add_build_command(sub)
    add_deploy_commands(sub)
    add_rbac_command(sub)
    add_release_commands(sub)
    parser.set_defaults(_subparsers=sub.choices)
    return parser


def _version() -> str:
    from cellship import __version__
    return __version__


def _print_line(line: api.LogLine) -> None:
    print(str(line), flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    kubernetes = kubernetes_from_args(args)
    if spec.ship:
        raise UsageError("--ship sends variables of a kernel; a script has none. Create the "
                         "values in the script itself.")
    if args.dry_run:
        from pathlib import Path

        from cellship.train.program import program_from_script

        try:
            text = Path(args.script).read_text()
        except OSError as err:
            raise UsageError(f"Cannot read {args.script}: {err.strerror}.") from None
        print(api.dry_run_text(spec, program_from_script(text, args.script), kubernetes))
        return 0
    job = api.submit_script(args.script, detached=args.detach, kubernetes=kubernetes,
                            **_spec_kwargs(spec))
    print(f"cellship: job {job.name} ({job.id}) submitted", file=sys.stderr, flush=True)
    if args.detach:
        print(job.id)
        return 0

    def interrupted(_cancelling: bool) -> None:
        print(f"\ncellship: interrupted; cancelling job {job.name} ({job.id})...",
              file=sys.stderr, flush=True)

    outcome = follow(job, lambda: job.follow(_print_line), on_interrupt=interrupted)
    print(job.summary(), file=sys.stderr)
    if not outcome.interrupted and not outcome.succeeded:
        print(job.failure_report(traceback=False), file=sys.stderr)
    return outcome.exit_code


def _spec_kwargs(spec: api.JobSpec) -> dict:
    return dict(workers=spec.workers, ps=spec.ps, gpus=spec.gpus, name=spec.name,
                backend=spec.backend, env=spec.env, timeout=spec.timeout,
                startup_timeout=spec.startup_timeout, max_restarts=spec.max_restarts)


def cmd_jobs(args: argparse.Namespace) -> int:
    from cellship.train.backends import available

    if args.backend is not None and args.backend not in available():
        raise UsageError(f"Unknown backend {args.backend!r}; available: "
                         f"{', '.join(sorted(available()))}.")
    if args.backend == "kubernetes":
        return _cluster_jobs(args)
    given = [flag for flag, value in (("--namespace", args.namespace), ("--context", args.context),
                                      ("--all-namespaces", args.all_namespaces)) if value]
    if given:
        raise UsageError(f"{' and '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} "
                         "to the cluster's jobs: add --backend kubernetes.")
    jobs = api.jobs(status=args.status, limit=args.limit, backend=args.backend)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    print(api.jobs_table(jobs))
    return 0


def _cluster_jobs(args: argparse.Namespace) -> int:
    """``cellship jobs --backend kubernetes``: the cluster's cellship jobs (by label) merged
    with this machine's store; jobs submitted elsewhere are marked (cluster)."""
    from cellship.kube.flags import ENV_DEFAULTS
    from cellship.train.kubernetes.backend import KubernetesBackend
    from cellship.train.kubernetes.listing import cluster_jobs, cluster_jobs_table, json_rows

    if args.namespace and args.all_namespaces:
        raise UsageError("--namespace and --all-namespaces exclude each other: give one.")
    namespace = None if args.all_namespaces else (
        args.namespace or os.environ.get(ENV_DEFAULTS["namespace"]) or None)
    context = args.context or os.environ.get(ENV_DEFAULTS["context"]) or None
    # The built-in itself (a plugin cannot take its name): listing the cluster is its own.
    backend = KubernetesBackend()
    rows = cluster_jobs(backend, namespace=namespace, context=context,
                        all_namespaces=args.all_namespaces)
    if args.status:
        rows = [r for r in rows if r["status"] == args.status]
    rows = rows[:args.limit] if args.limit is not None else rows
    if args.json:
        print(json.dumps(json_rows(rows), indent=2))
        return 0
    scope = ("all namespaces" if args.all_namespaces
             else f"namespace {backend.search_namespace(namespace, context)}")
    print(cluster_jobs_table(rows, scope))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    job = api.get_job(args.job)
    try:
        for line in job.logs(follow=args.follow, tf_noise=args.tf_noise):
            _print_line(line)
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    job = api.get_job(args.job)
    if args.json:
        print(json.dumps(job.to_dict(), indent=2))
        return 0
    print(job.status_text())
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    job = api.get_job(args.job)
    before = job.status
    record = job.cancel(now=args.now)
    if before in ("succeeded", "failed", "cancelled"):
        print(f"job {record.name} ({record.id}) had already {before}; nothing to cancel")
    else:
        print(f"job {record.name} ({record.id}) cancelled; all of its processes are stopped")
    return 0


def _kubernetes(job: api.Job) -> "KubernetesBackend":
    """The job's backend, which must be the kubernetes one (for its own commands)."""
    from cellship.train.backends import get_backend
    from cellship.train.kubernetes.backend import KubernetesBackend

    backend = get_backend(job.record.backend)
    if not isinstance(backend, KubernetesBackend):
        raise UsageError(f"Job {job.name} ({job.id}) ran on the {job.record.backend} backend: "
                         "its files are already in its job dir; fetching is for cluster "
                         "jobs only.")
    return backend


def cmd_fetch(args: argparse.Namespace) -> int:
    """``cellship fetch JOB``: the chief pod's files home again (resuming, only what is new)."""
    job = api.get_job(args.job)
    _kubernetes(job).fetch(job.record)
    return 0


def cmd_tensorboard(args: argparse.Namespace) -> int:
    """Serve TensorBoard in the foreground: it is bound to this process, so Ctrl-C, a
    closed terminal or a kill of this command all take the server down with it."""
    import signal
    import time

    from cellship.watch import tensorboard as tb

    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM/SIGHUP: stop the server as tidily as Ctrl-C does

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            _mirror_cluster_jobs(args.jobs)
            server = tb.open_tensorboard(args.jobs, port=args.port, host=args.host)
        except KeyboardInterrupt:
            return 130  # start() already stopped what it had started
        runs = ", ".join(name for name, _ in server.logdirs)
        print(f"cellship: TensorBoard (pid {server.pid}) shows {runs}; Ctrl-C stops it",
              file=sys.stderr, flush=True)
        print(server.url, flush=True)
        try:
            while tb.is_alive(server):
                time.sleep(1.0)
        except KeyboardInterrupt:
            if server.owner_pid == os.getpid():
                tb.stop(server)
            return 0
        tail = tb.log_tail(server)
        tb.stop(server)  # forget it in the registry
        print(f"cellship: error: TensorBoard (pid {server.pid}) stopped unexpectedly; its "
              f"last lines:\n{tail}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _mirror_cluster_jobs(refs: Sequence[str]) -> None:
    """Running cluster jobs' event files come home every few seconds while this runs."""
    from cellship.fetch.mirror import for_job

    for ref in refs:
        for_job(api.get_job(ref))


COMMANDS = {"train": cmd_train, "jobs": cmd_jobs, "logs": cmd_logs, "status": cmd_status,
            "cancel": cmd_cancel, "tensorboard": cmd_tensorboard, "fetch": cmd_fetch}
COMMANDS.update(BATCH_COMMANDS)
COMMANDS.update(SERVING_COMMANDS)
COMMANDS["build"] = cmd_build
COMMANDS.update(DEPLOY_COMMANDS)
COMMANDS.update(RBAC_COMMANDS)
COMMANDS.update(RELEASE_COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(rewrite_argv(list(sys.argv[1:] if argv is None else argv)))
    if extra:  # let the sub-command's parser reject them, so it names ITS valid options
        args._subparsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except CellshipError as err:
        print(f"cellship: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
