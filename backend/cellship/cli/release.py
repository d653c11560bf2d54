"""``cellship release``, ``cellship releases MODEL`` and ``cellship rollback MODEL``: the
shell face of :mod:`cellship.release`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_release_commands(sub: Any) -> None:
    run = sub.add_parser("release", help="run a notebook, gate it, canary and promote its model "
                         "as the next served version (or write a CI definition that does)")
    run.add_argument("notebook", metavar="NOTEBOOK", nargs="?")
    run.add_argument("--model", "-m", default=None, metavar="MODEL",
                     help="the model the new version belongs to (required)")
    run.add_argument("--resume", default=None, metavar="MODEL",
                     help="finish MODEL's interrupted release (its process was killed) instead: "
                          "its staged version is moved aside, what is served stays served")
    run.add_argument("--to", default="local", choices=("local", "kubernetes"),
                     help="where to release: the local model repository, or a Kubernetes "
                          "namespace (an image per version, a canary Deployment beside the "
                          "serving one)")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="notebook parameter (repeatable; VALUE parsed as YAML)")
    run.add_argument("--gate", action="append", default=[], metavar="EXPR",
                     help="'metric:TAG OP NUMBER' or 'record:NAME OP NUMBER' (repeatable), e.g. "
                          "'metric:validation/epoch_accuracy >= 0.95'")
    run.add_argument("--example", default=None, metavar="REQUEST.json",
                     help="a TF Serving request body: the smoke test and the canary's traffic")
    run.add_argument("--allow-signature-change", action="store_true",
                     help="release even if the serving signature differs from the served version's")
    run.add_argument("--repository", default=None, metavar="DIR",
                     help="the local model repository (default $CELLSHIP_HOME/models)")
    run.add_argument("--server", default=None, metavar="URL",
                     help="the `cellship serve` serving this repository: the release waits until "
                          "it serves the promoted version")
    run.add_argument("--canary-window", type=float, default=5.0, metavar="SECONDS",
                     help="how long the canary is watched (default 5)")
    run.add_argument("--max-error-rate", type=float, default=0.0, metavar="FRACTION",
                     help="failed requests the canary may answer (default 0)")
    run.add_argument("--max-p99-ms", type=float, default=1000.0, metavar="MS",
                     help="the canary's p99 latency limit (default 1000)")
    run.add_argument("--max-difference", type=float, default=None, metavar="X",
                     help="largest |new - current| answer to the example (default: reported only)")
    run.add_argument("--model-dir", default=None, metavar="DIR",
                     help="which SavedModel, when the notebook wrote several")
    run.add_argument("--kernel", default=None, help="Jupyter kernel to run the notebook with")
    k8s = run.add_argument_group("--to kubernetes")
    k8s.add_argument("--registry", default=None, metavar="HOST[:PORT][/PREFIX]",
                     help="where the new version's image is pushed (the nodes pull it from there)")
    k8s.add_argument("--base", default=None, metavar="IMAGE",
                     help="the image the serving image is built on (python3; see --deps-from-base)")
    k8s.add_argument("--deps-from-base", action="store_true", default=None,
                     help="the base has TensorFlow and the server's requirements already")
    _cluster_flags(k8s)
    k8s.add_argument("--replicas", type=int, default=None, metavar="N",
                     help="the new version's replicas once promoted (default 1)")
    k8s.add_argument("--canary", type=float, default=None, metavar="PERCENT",
                     help="the canary's replicas: ceil(N * PERCENT / 100) beside the serving "
                          "version's (default 50); KServe: its canaryTrafficPercent")
    k8s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="how long pods may take to be ready (default 300)")
    k8s.add_argument("--pod-access", dest="reach", choices=("proxy", "direct"), default=None,
                     help="how the canary's requests reach its pods: the API server's pod proxy "
                          "(default) or the pod IPs")
    run.add_argument("--ci", choices=("github", "gitlab", "jenkins"), default=None,
                     help="write this CI's definition of the same release instead of running it")
    run.add_argument("--ci-output", default=None, metavar="PATH",
                     help="where to write it (default: where that CI looks)")
    run.add_argument("--ci-secret", action="append", default=[], metavar="NAME",
                     help="an environment variable the release needs, read from the CI's secret "
                          "store (repeatable)")

    listing = sub.add_parser("releases", help="a model's releases and rollbacks")
    listing.add_argument("model", metavar="MODEL")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    back = sub.add_parser("rollback", help="serve an earlier version again, in one step")
    back.add_argument("model", metavar="MODEL")
    back.add_argument("--to", type=int, default=None, metavar="VERSION",
                      help="the version to serve (default: the one before the current)")
    back.add_argument("--repository", default=None, metavar="DIR",
                      help="the local model repository (default $CELLSHIP_HOME/models)")
    back.add_argument("--server", default=None, metavar="URL",
                      help="wait until this `cellship serve` serves VERSION")
    back.add_argument("--target", choices=("local", "kubernetes"), default=None,
                      help="where the model is released (default: where its last release went)")
    _cluster_flags(back)


def _cluster_flags(group: Any) -> None:
    group.add_argument("-n", "--namespace", default=None,
                       help="the namespace (default: the kubeconfig context's)")
    group.add_argument("--context", default=None, help="the kubeconfig context")


KUBERNETES_OPTIONS = ("registry", "base", "deps_from_base", "namespace", "context", "replicas",
                      "canary", "timeout", "reach")


def _kubernetes(args: argparse.Namespace) -> dict[str, Any]:
    """The --to kubernetes options given (a UsageError when they come without it)."""
    from cellship.errors import UsageError

    given = {k: getattr(args, k) for k in KUBERNETES_OPTIONS if getattr(args, k) is not None}
    if given and args.to != "kubernetes":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags} go with --to kubernetes (this release goes to --to {args.to}).")
    return given if args.to == "kubernetes" else {}


def _say(text: str) -> None:
    print(f"cellship: {text}", file=sys.stderr, flush=True)


def _ci_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of this command without its --ci options: what the CI job runs."""
    argv = [args.notebook, "--model", args.model, "--to", args.to]
    for name, value in args.parameter or []:
        argv += ["-p", name, value]
    for gate in args.gate:
        argv += ["--gate", gate]
    for flag, value in (("--example", args.example), ("--repository", args.repository),
                        ("--server", args.server), ("--model-dir", args.model_dir),
                        ("--kernel", args.kernel)):
        if value is not None:
            argv += [flag, value]
    if args.allow_signature_change:
        argv.append("--allow-signature-change")
    for key, value in _kubernetes(args).items():
        flag = "--pod-access" if key == "reach" else "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, f"{value:g}" if isinstance(value, float)
                                              else str(value)]
    for flag, value, default in (("--canary-window", args.canary_window, 5.0),
                                 ("--max-error-rate", args.max_error_rate, 0.0),
                                 ("--max-p99-ms", args.max_p99_ms, 1000.0),
                                 ("--max-difference", args.max_difference, None)):
        if value != default:
            argv += [flag, f"{value:g}"]
    return argv


def cmd_release(args: argparse.Namespace) -> int:
    from cellship.errors import UsageError
    from cellship.release import gates
    from cellship.release.canary import CanaryLimits
    from cellship.runs.params import pairs_to_dict

    if args.resume is not None:
        return _resume(args)
    if not args.notebook or not args.model:
        raise UsageError("cellship release needs a NOTEBOOK and --model MODEL (or --resume MODEL "
                         "to finish an interrupted release).")
    if args.ci:
        from cellship.release import cigen

        gates.parse_all(args.gate)  # a CI that would fail on a typo is not written
        command = cigen.ReleaseCommand(args.model, tuple(_ci_argv(args)), tuple(args.ci_secret))
        path = cigen.write(args.ci, command, args.ci_output)
        _say(f"wrote the {args.ci} definition of `{command.shell}` to {path}")
        print(path)
        return 0
    if args.ci_output or args.ci_secret:
        raise UsageError("--ci-output and --ci-secret go with --ci github|gitlab|jenkins.")
    from cellship.release.pipeline import release

    kubernetes = _kubernetes(args)
    limits = CanaryLimits(window_s=args.canary_window, max_error_rate=args.max_error_rate,
                          max_p99_ms=args.max_p99_ms, max_difference=args.max_difference)
    outcome = release(args.notebook, model=args.model, to=args.to,
                      parameters=pairs_to_dict(args.parameter), gates=args.gate,
                      example=args.example, allow_signature_change=args.allow_signature_change,
                      repository=args.repository, server=args.server, limits=limits,
                      model_dir=args.model_dir, kernel=args.kernel, say=_say, **kubernetes)
    _say(outcome.summary())
    print(outcome.record.version)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from cellship.errors import UsageError
    from cellship.release.pipeline import resume

    if args.notebook or args.model or args.ci or args.ci_output or args.ci_secret:
        raise UsageError("--resume MODEL takes no NOTEBOOK, --model or --ci: it finishes the "
                         "interrupted release the record describes.")
    finished = resume(args.resume, repository=args.repository, say=_say)
    if not finished:
        _say(f"no interrupted release of {args.resume}: nothing to finish")
    for record in finished:
        print(f"{record.id} {record.outcome}")
    return 0


def cmd_releases(args: argparse.Namespace) -> int:
    from cellship.release.pipeline import history
    from cellship.release.records import reasons, table

    records = history(args.model)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2, default=str))
        return 0
    print(table(records))
    why = reasons(records)
    if why:
        print("\n" + why)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from cellship.release.pipeline import rollback

    record = rollback(args.model, to=args.to, repository=args.repository, server=args.server,
                      target=args.target, namespace=args.namespace, context=args.context,
                      say=_say)
    moved = ', '.join(record.details.get('moved_to', [])) or 'none'
    if record.details.get("finished"):
        _say(f"finished the interrupted release{'s' if len(record.details['finished']) > 1 else ''} "
             f"{', '.join(record.details['finished'])} of {record.model}: version "
             f"{record.version} is still served (moved aside: {moved})")
    else:
        _say(f"rolled {record.model} back from version {record.previous} to {record.version} "
             f"(newer versions moved aside: {moved})")
    print(record.version)
    return 0


RELEASE_COMMANDS = {"release": cmd_release, "releases": cmd_releases, "rollback": cmd_rollback}
