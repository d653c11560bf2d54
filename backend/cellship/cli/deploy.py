"""``cellship deploy``, ``undeploy`` and ``deployments``: the shell face of
:mod:`cellship.deployment`.

Kept apart from :mod:`cellship.cli` so the other commands do not import the deployment code
(and, through it, the Kubernetes client) at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default=None,
                        help="namespace (default: the kubeconfig context's, else 'default')")
    parser.add_argument("--context", default=None, help="kubeconfig context (default: current)")


def add_deploy_commands(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy", help="serve a model image on Kubernetes (Deployment + Service, or a KServe "
                       "InferenceService); updates it if NAME exists",
        description="Run IMAGE (made by `cellship build`, or any TF-Serving-REST image) as a "
                    "served model on Kubernetes, wait until it is ready and print how to reach "
                    "it. Deploying an existing NAME rolls out the new image.")
    deploy.add_argument("target", metavar="MODEL_OR_IMAGE",
                        help="an image reference (registry/repo:tag), a model of the "
                             "repository together with --base and --tag to build it first, "
                             "or an s3://BUCKET/PREFIX SavedModel served by --image with no "
                             "build")
    deploy.add_argument("--name", required=True,
                        help="name of the Deployment and Service (a DNS label, e.g. digits)")
    deploy.add_argument("--replicas", type=int, default=1, help="server pods (default 1)")
    _cluster_options(deploy)
    deploy.add_argument("--port", type=int, default=None,
                        help="port the server listens on in the container (default: from the "
                             "image's ExposedPorts, else 8501)")
    deploy.add_argument("--model-name", default=None, metavar="M",
                        help="the M in /v1/models/M (default: read from the image's labels/"
                             "MODEL_NAME; giving it skips reading the image from its registry)")
    deploy.add_argument("--model-path", default=None, metavar="PATH",
                        help="run `cellship serve PATH` with the image's own cellship instead "
                             "of its command (mount PATH with --volume)")
    deploy.add_argument("--volume", action="append", default=[], metavar="SOURCE:PATH",
                        help="mount read-only: a PersistentVolumeClaim (models:/models) or a "
                             "directory on the node (/srv/models:/models); repeatable")
    deploy.add_argument("--cpu", default=None, help="CPU request per pod (e.g. 500m, 2)")
    deploy.add_argument("--memory", default=None, help="memory request per pod (e.g. 2Gi)")
    deploy.add_argument("--cpu-limit", default=None, help="CPU limit per pod")
    deploy.add_argument("--memory-limit", default=None, help="memory limit per pod")
    deploy.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu per pod (default 0)")
    deploy.add_argument("--image-pull-policy", default=None, metavar="POLICY",
                        help="Always, IfNotPresent or Never (default: Kubernetes' choice)")
    deploy.add_argument("--image-pull-secret", action="append", default=[], metavar="SECRET",
                        help="Secret with registry credentials (repeatable)")
    deploy.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable of the server (repeatable)")
    deploy.add_argument("--run-as-user", type=int, default=1000,
                        help="non-root uid of the server (default 1000)")
    deploy.add_argument("--kind", choices=("auto", "deployment", "kserve"), default="auto",
                        help="auto (default): a KServe InferenceService where KServe is "
                             "installed, else a Deployment and a Service")
    deploy.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                        help="wait until every replica is ready (default) or a diagnosis says "
                             "it cannot start")
    deploy.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                        help="how long --wait waits (default 300)")
    deploy.add_argument("--base", default=None, metavar="IMAGE",
                        help="with a model: build it onto this base image first")
    deploy.add_argument("--tag", default=None, metavar="REF",
                        help="with a model: push the built image here (the nodes must be able "
                             "to pull it)")
    deploy.add_argument("--image", default=None, metavar="IMAGE",
                        help="with an s3:// model: the server image (cellship and boto3 in it); "
                             "its pods download the model first")
    deploy.add_argument("--storage-secret", default=None, metavar="NAME",
                        help="with an s3:// model: the Secret with the store's "
                             "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL")
    deploy.add_argument("--json", action="store_true", help="print the result as JSON")
    deploy.add_argument("-q", "--quiet", action="store_true", help="no progress lines")

    undeploy = sub.add_parser("undeploy", help="delete a served model and wait until its pods "
                                               "are gone")
    undeploy.add_argument("name", metavar="NAME")
    _cluster_options(undeploy)
    undeploy.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                          help="wait until its pods are gone (default)")
    undeploy.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                          help="how long --wait waits (default 120)")

    listing = sub.add_parser("deployments", help="list served models cellship deployed")
    _cluster_options(listing)
    listing.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_deploy(args: argparse.Namespace) -> int:
    from cellship.deployment import deploy
    from cellship.deployment.spec import parse_env

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"cellship: {message}", file=sys.stderr, flush=True)

    try:
        result = deploy(args.target, args.name, replicas=args.replicas, namespace=args.namespace,
                        context=args.context, port=args.port, model_name=args.model_name,
                        model_path=args.model_path, cpu=args.cpu, memory=args.memory,
                        cpu_limit=args.cpu_limit, memory_limit=args.memory_limit,
                        gpus=args.gpus, image_pull_policy=args.image_pull_policy,
                        image_pull_secrets=args.image_pull_secret, env=parse_env(args.env),
                        volumes=args.volume, run_as_user=args.run_as_user, kind=args.kind,
                        wait=args.wait, timeout=args.timeout, base=args.base, tag=args.tag,
                        progress=progress, image=args.image, storage_secret=args.storage_secret)
    except KeyboardInterrupt:
        print(f"\ncellship: stopped waiting; {args.name} keeps rolling out in the cluster "
              "(`cellship deployments` shows it, `cellship undeploy` removes it)",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.how_to_reach())
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    from cellship.deployment import undeploy

    result = undeploy(args.name, namespace=args.namespace, context=args.context,
                      wait=args.wait, timeout=args.timeout)
    print(f"cellship: {result.summary()}")
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    from cellship.deployment import deployments, table

    items = deployments(namespace=args.namespace, context=args.context)
    if args.json:
        print(json.dumps([d.to_dict() for d in items], indent=2))
    else:
        print(table(items))
    return 0


DEPLOY_COMMANDS = {"deploy": cmd_deploy, "undeploy": cmd_undeploy,
                   "deployments": cmd_deployments}
