"""``cellship build``: the command-line face of :mod:`cellship.images`.

Kept apart from :mod:`cellship.cli` so that the other commands do not pay for importing the
registry client (``requests``) at start-up; :mod:`cellship.images` is imported only when
``build`` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

KINDS = ("tf-serving", "python")


def add_build_command(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser(
        "build", help="append a model (and for --kind python, cellship's server) to a base "
                      "image and push it, without a Docker daemon",
        description="Append MODEL to the base image and push the result straight through the "
                    "registry API. Credentials come from ~/.docker/config.json (docker login).")
    build.add_argument("model", metavar="MODEL",
                       help="a model name in cellship's model repository, or a path to a "
                            "SavedModel directory (or to a directory of numbered versions)")
    build.add_argument("--base", required=True, metavar="IMAGE",
                       help="base image, e.g. tensorflow/serving:2.14.1 or "
                            "127.0.0.1:5000/python:3.11")
    build.add_argument("--tag", required=True, metavar="REF",
                       help="where to push, e.g. registry.example.com/team/digits:v1")
    build.add_argument("--kind", choices=KINDS, default=None,
                       help="tf-serving (model + MODEL_NAME; the default for tensorflow/serving "
                            "bases) or python (model + cellship's server + its dependencies)")
    build.add_argument("--name", default=None,
                       help="model name in the image (/models/NAME; default: MODEL's name)")
    build.add_argument("--version", type=int, default=None,
                       help="model version to put in (default: the highest)")
    build.add_argument("--platform", default="linux/amd64",
                       help="platform to pick from a multi-platform base (default linux/amd64)")
    build.add_argument("--insecure", action="store_true",
                       help="talk plain http to the registries (always done for localhost)")
    build.add_argument("--archive", type=Path, default=None, metavar="PATH",
                       help="also write the image as an OCI archive (podman load -i PATH)")
    build.add_argument("--no-push", action="store_true",
                       help="only write --archive; push nothing")
    build.add_argument("--python", default=None, metavar="X.Y",
                       help="python kind: the base image's Python version (default: this one's)")
    build.add_argument("--deps-from-base", action="store_true",
                       help="python kind: the base already has TensorFlow and the server's "
                            "dependencies; add no dependency layer")
    build.add_argument("--requirement", action="append", default=[], metavar="REQ",
                       help="python kind: an extra pip requirement for the dependency layer "
                            "(repeatable)")
    build.add_argument("--retries", type=int, default=5,
                       help="attempts per registry request before giving up (default 5)")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def cmd_build(args: argparse.Namespace) -> int:
    from cellship.errors import UsageError
    from cellship.images import RetryPolicy, build

    if args.retries < 1:
        raise UsageError("--retries must be at least 1")

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"cellship: {message}", file=sys.stderr, flush=True)

    result = build(args.model, base=args.base, tag=args.tag, kind=args.kind, name=args.name,
                   version=args.version, platform=args.platform, insecure=args.insecure,
                   push=not args.no_push, archive=args.archive, python=args.python,
                   deps_from_base=args.deps_from_base, requirements=args.requirement,
                   retry=RetryPolicy(attempts=args.retries), progress=progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    new = [l for l in result.layers if l.status == "uploaded"]
    parts = [f"{len(result.layers)} new layer(s), {len(new)} uploaded",
             f"{_amount(result.uploaded_bytes)} sent"]
    if result.mounted_blobs:
        parts.append(f"{len(result.mounted_blobs)} base blob(s) mounted")
    if result.copied_blobs:
        parts.append(f"{len(result.copied_blobs)} base blob(s) copied")
    what = "pushed" if result.pushed else "built"
    progress(f"{what} {result.ref} ({result.kind}, model {result.model}) in "
             f"{result.seconds:.1f} s: {'; '.join(parts)}")
    if result.archive:
        progress(f"OCI archive: {result.archive} (podman load -i {result.archive})")
    print(result.pinned if result.pushed else result.digest)
    return 0


def _amount(size: int) -> str:
    return f"{size} bytes" if size < 100_000 else f"{size / 1e6:.1f} MB"
