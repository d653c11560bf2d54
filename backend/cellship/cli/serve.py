"""``cellship export``, ``cellship models`` and ``cellship serve``: the shell face of
cellship.serve.export and cellship.serve."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cellship.errors import UsageError


def add_serving_commands(sub: Any) -> None:
    export = sub.add_parser(
        "export", help="run a notebook (or take a job's output), check its SavedModel and "
        "store it as the next version of a model")
    export.add_argument("notebook", metavar="NOTEBOOK", nargs="?",
                        help="notebook to execute with papermill (or a SavedModel directory)")
    export.add_argument("--name", "-n", default=None,
                        help="model name (default: the SavedModel directory's name)")
    export.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        help="notebook parameter, parsed as papermill does (repeatable)")
    export.add_argument("--job", "-j", default=None, metavar="JOB",
                        help="export the SavedModel a finished job wrote instead of running a notebook")
    export.add_argument("--model-dir", default=None, metavar="DIR",
                        help="which SavedModel when several were produced (a path or a directory name)")
    export.add_argument("--example", default=None, metavar="REQUEST.json",
                        help="a TF Serving request body the model must answer before it is stored")
    export.add_argument("--kernel", default=None, help="Jupyter kernel to run the notebook with")
    export.add_argument("--json", action="store_true", help="print the stored version as JSON")

    models = sub.add_parser("models", help="list exported models and their versions")
    models.add_argument("name", metavar="MODEL", nargs="?", help="only this model")
    models.add_argument("--json", action="store_true", help="machine-readable output")

    servers = sub.add_parser("servers", help="list the running `cellship serve` servers of "
                             "this machine, or stop one (`cellship servers stop PID|PORT`)")
    servers.add_argument("action", nargs="?", choices=("list", "stop"), default="list",
                         help="list (default) or stop")
    servers.add_argument("server", metavar="PID|PORT", nargs="?",
                         help="with stop: the server's pid, or its REST or gRPC port")
    servers.add_argument("--json", action="store_true", help="machine-readable output")

    serve = sub.add_parser("serve", help="serve models over TensorFlow Serving's REST and gRPC "
                           "APIs and the Open Inference Protocol (KServe v2, Triton)")
    serve.add_argument("models", metavar="MODEL", nargs="+",
                       help="a model name in the repository, a SavedModel directory, or a "
                            "directory of numbered versions (several may be given)")
    serve.add_argument("--port", type=int, default=8501,
                       help="port (default 8501, TF Serving's REST port; 0: any free port)")
    serve.add_argument("--grpc-port", type=int, default=None, metavar="P",
                       help="gRPC port: TF Serving's PredictionService/ModelService and the "
                            "Open Inference Protocol's GRPCInferenceService (default 8500, TF "
                            "Serving's; 0: any free port, the default with --port 0; -1: no gRPC)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--max-batch-size", type=int, default=64, metavar="N",
                       help="rows per model call when batching concurrent requests (default 64)")
    serve.add_argument("--batch-timeout-ms", type=float, default=0.0, metavar="MS",
                       help="how long a request may wait for others to batch with (default 0: "
                            "batches form from what queues while the model is busy)")
    serve.add_argument("--max-queue", type=int, default=8192, metavar="ROWS",
                       help="rows that may wait; beyond this requests get 503 (default 8192)")
    serve.add_argument("--batch-threads", type=int, default=1, metavar="N",
                       help="model calls in flight at once per signature (default 1)")
    serve.add_argument("--enable_batching", "--enable-batching", nargs="?", const="true",
                       default=None, metavar="BOOL",
                       help="TF Serving's flag: batching is on by default here; "
                            "--enable_batching=false turns it off (one request per model call)")
    serve.add_argument("--batching_parameters_file", "--batching-parameters-file", default=None,
                       metavar="FILE",
                       help="TF Serving's batching parameters (text protobuf: max_batch_size, "
                            "batch_timeout_micros, max_enqueued_batches, num_batch_threads, "
                            "allowed_batch_sizes); overrides the --max-batch-size group")
    serve.add_argument("--max-body-mb", type=float, default=64.0, metavar="MB",
                       help="largest request body; larger ones get 413 (default 64)")
    serve.add_argument("--max-request-bytes", type=int, default=None, metavar="BYTES",
                       help="largest request in bytes, REST body or gRPC message; larger ones "
                            "get 413 / RESOURCE_EXHAUSTED (overrides --max-body-mb)")
    serve.add_argument("--request-timeout", type=float, default=60.0, metavar="SECONDS",
                       help="a request whose model call takes longer gets 504 (default 60; "
                            "0: no limit)")
    serve.add_argument("--drain-grace", type=float, default=0.0, metavar="SECONDS",
                       help="after SIGTERM (readiness already false), keep answering new "
                            "requests this long before refusing them with 503; set it to your "
                            "load balancer's delay in noticing (default 0)")
    serve.add_argument("--shutdown-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long requests in flight may take to finish on stop (default 30)")
    serve.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                       help="how often to look for new versions (default 1)")
    serve.add_argument("--versions", type=int, default=0, metavar="N",
                       help="serve only the newest N versions (default 0: all)")
    serve.add_argument("--intra-op-threads", type=int, default=0, metavar="N",
                       help="TensorFlow threads per op (default 0: one per core)")
    serve.add_argument("--inter-op-threads", type=int, default=0, metavar="N",
                       help="TensorFlow ops run at once (default 0: TensorFlow's choice)")


def _print_event(kind: str, run: Any, batch: Any) -> None:
    if kind == "started":
        print(f"cellship: running {batch.notebook} with papermill (batch {batch.id}; output "
              f"{run.output_path})", file=sys.stderr, flush=True)


def cmd_export(args: argparse.Namespace) -> int:
    from cellship.serve import export as models

    if bool(args.notebook) == bool(args.job):
        raise UsageError("Give a NOTEBOOK to run, or --job JOB to export a finished job's "
                         "SavedModel (one of them).")
    if args.job:
        if args.parameter:
            raise UsageError("-p sets notebook parameters; a job has already run. Drop -p, or "
                             "export a notebook.")
        result = models.export_job(args.job, args.name, example=args.example,
                                   model_dir=args.model_dir)
    elif Path(args.notebook).is_dir():
        if args.parameter:
            raise UsageError(f"{args.notebook} is a SavedModel directory; -p is for notebooks.")
        source = Path(args.notebook).resolve()
        result = models.export_saved_model(source, models.check_name(args.name or source.name),
                                           example=args.example)
    else:
        from cellship.runs.params import pairs_to_dict

        result = models.export_notebook(args.notebook, args.name,
                                        parameters=pairs_to_dict(args.parameter),
                                        example=args.example, model_dir=args.model_dir,
                                        kernel=args.kernel, on_event=_print_event)
    if args.json:
        print(json.dumps(result.model.to_dict(), indent=2, default=str))
    else:
        print(f"cellship: {result.summary()}", file=sys.stderr)
        print(result.model.path)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from cellship.serve import export as models

    if args.name:
        models.get_model(args.name)  # names what exists when this one does not
    entries = models.list_models(args.name)
    if args.json:
        print(json.dumps([m.to_dict() for m in entries], indent=2, default=str))
        return 0
    if not entries:
        print("no models yet: `cellship export NOTEBOOK --name MODEL` stores one")
        return 0
    rows = [("MODEL", "VERSION", "CREATED", "SOURCE", "SIGNATURE", "METRICS")]
    for m in entries:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in list((m.manifest.get("metrics") or {}).items())[:3]
                            if isinstance(v, (int, float)))
        rows.append((m.name, str(m.version), (m.created or "-").replace("T", " ")[:19],
                     m.describe_source(), m.describe_signature(), metrics or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cellship.serve import export as models

    resolved: dict[str, Path] = {}
    for ref in args.models:
        name, base = models.resolve(ref)
        if name in resolved and resolved[name] != base:
            raise UsageError(f"Two models would both be served as {name!r} ({resolved[name]} and "
                             f"{base}); serve them from differently named directories.")
        resolved[name] = base
    if args.max_body_mb <= 0:
        raise UsageError(f"--max-body-mb must be > 0, got {args.max_body_mb}.")
    if args.poll <= 0:
        raise UsageError(f"--poll must be > 0 seconds, got {args.poll}.")
    for flag, value in (("--request-timeout", args.request_timeout), ("--drain-grace", args.drain_grace),
                        ("--shutdown-timeout", args.shutdown_timeout)):
        if value < 0:
            raise UsageError(f"{flag} must be >= 0 seconds, got {value:g}.")
    max_bytes = args.max_request_bytes if args.max_request_bytes is not None \
        else int(args.max_body_mb * 1_000_000)
    if max_bytes <= 0:
        raise UsageError(f"--max-request-bytes must be > 0, got {max_bytes}.")
    batching = _batching(args)
    grpc_port = args.grpc_port if args.grpc_port is not None else (0 if args.port == 0 else 8500)
    from cellship.serve.server import ServingConfig, serve_forever  # imports TensorFlow

    config = ServingConfig(host=args.host, port=args.port, batching=batching,
                           max_body_bytes=max_bytes,
                           poll_interval_s=args.poll, max_versions=max(args.versions, 0),
                           intra_op_threads=max(args.intra_op_threads, 0),
                           inter_op_threads=max(args.inter_op_threads, 0),
                           request_timeout_s=args.request_timeout, drain_grace_s=args.drain_grace,
                           shutdown_timeout_s=args.shutdown_timeout,
                           grpc_port=None if grpc_port < 0 else grpc_port)

    def announce(server: Any) -> None:
        for name, base in resolved.items():
            print(f"cellship: serving {name} from {base} at {server.url}/v1/models/{name} "
                  f"and {server.url}/v2/models/{name}", file=sys.stderr, flush=True)
        if server.grpc_target:
            print(f"cellship: gRPC (TF Serving's PredictionService, the Open Inference "
                  f"Protocol's GRPCInferenceService) at {server.grpc_target}", file=sys.stderr,
                  flush=True)
        print(f"cellship: health at {server.url}/healthz, metrics at {server.url}/metrics; "
              "Ctrl-C stops", file=sys.stderr, flush=True)
        print(server.url, flush=True)

    serve_forever(resolved, config, announce)
    return 0


def cmd_servers(args: argparse.Namespace) -> int:
    """``cellship servers [--json]`` and ``cellship servers stop PID|PORT``."""
    from cellship.serve import registry

    if args.action == "stop":
        if not args.server:
            raise UsageError("Say which server to stop: `cellship servers stop PID|PORT` "
                             "(`cellship servers` lists them).")
        stopped = registry.stop(args.server)
        if args.json:
            print(json.dumps(stopped.to_dict(), indent=2))
        else:
            print(f"cellship: stopped cellship serve (pid {stopped.pid}) at {stopped.url}, "
                  f"serving {', '.join(stopped.models)}")
        return 0
    if args.server:
        raise UsageError(f"{args.server!r}: only `cellship servers stop` takes a server.")
    servers = registry.running()
    if args.json:
        print(json.dumps([s.to_dict() for s in servers], indent=2))
    else:
        print(registry.table(servers))
    return 0


def _batching(args: argparse.Namespace) -> Any:
    """The batching knobs: TF Serving's file when given, else the --max-batch-size group;
    ``--enable_batching=false`` makes every request its own model call."""
    from cellship.serve.batching import BatchingConfig

    enable = args.enable_batching
    if enable is not None and enable.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"--enable_batching takes true or false, got {enable!r} (write "
                         "--enable_batching=true, or put the flag after the model names).")
    if args.batching_parameters_file:
        if enable is not None and enable.lower() in ("false", "0"):
            raise UsageError("--batching_parameters_file configures batching, which "
                             "--enable_batching=false turns off; drop one of them.")
        from cellship.serve.batching_file import read_batching_parameters

        batching, ignored = read_batching_parameters(args.batching_parameters_file)
        if ignored:
            print(f"cellship: {args.batching_parameters_file}: ignoring {', '.join(ignored)} "
                  "(cellship batches whole requests along the first dimension)", file=sys.stderr)
        return batching
    if enable is not None and enable.lower() in ("false", "0"):
        return BatchingConfig(max_batch_size=1, max_wait_ms=0.0, max_queue_rows=args.max_queue,
                              batch_threads=args.batch_threads)
    return BatchingConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.batch_timeout_ms,
                          max_queue_rows=args.max_queue, batch_threads=args.batch_threads)


SERVING_COMMANDS = {"export": cmd_export, "models": cmd_models, "serve": cmd_serve,
                    "servers": cmd_servers}
