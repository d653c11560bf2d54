"""``cellship rbac``: the least Role (and RoleBinding) cellship needs in a namespace,
printed as YAML for ``kubectl apply -f -`` or, with ``--apply``, created.

Kept apart from :mod:`cellship.cli.main` so other commands do not import the Kubernetes
code at start-up.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from cellship.errors import MissingDependency


def add_rbac_command(sub: Any) -> None:
    rbac = sub.add_parser(
        "rbac", help="print (or --apply) the least Role and RoleBinding cellship needs",
        description="Print the Role and RoleBinding that give a ServiceAccount exactly the "
                    "rights cellship uses in one namespace (every verb with the feature "
                    "that needs it), as YAML for `kubectl apply -f -`; --apply creates them "
                    "(and the ServiceAccount, if missing) with your own credentials.")
    rbac.add_argument("-n", "--namespace", default=None, metavar="NS",
                      help="namespace (default $CELLSHIP_K8S_NAMESPACE, else the kubeconfig "
                           "context's or the pod's own, else 'default')")
    rbac.add_argument("--service-account", default=None, metavar="SA",
                      help="ServiceAccount to bind (default 'default', what notebook pods "
                           "run as unless their spec names another)")
    rbac.add_argument("--apply", action="store_true",
                      help="create (or update) them in the cluster instead of printing")
    rbac.add_argument("--context", default=None, metavar="NAME",
                      help="kubeconfig context (default $CELLSHIP_K8S_CONTEXT)")


def _namespace(args: argparse.Namespace) -> str:
    """The namespace given, else the client's (context or pod); printing needs no
    cluster, so without any configuration it is ``default``."""
    from cellship.kube.client import connect
    from cellship.kube.errors import NoKubeconfig
    from cellship.kube.flags import ENV_DEFAULTS
    from cellship.kube.names import check_namespace

    given = args.namespace or os.environ.get(ENV_DEFAULTS["namespace"])
    if given:
        return check_namespace(given)
    try:
        return connect(args.context).namespace()
    except (NoKubeconfig, MissingDependency):
        if args.apply:
            raise
        return "default"


def cmd_rbac(args: argparse.Namespace) -> int:
    from cellship.kube import rbac
    from cellship.kube.client import connect
    from cellship.kube.flags import ENV_DEFAULTS
    from cellship.kube.names import check_object_name

    args.context = args.context or os.environ.get(ENV_DEFAULTS["context"]) or None
    namespace = _namespace(args)
    account = check_object_name(args.service_account or rbac.DEFAULT_SERVICE_ACCOUNT,
                                "--service-account")
    if not args.apply:
        print(rbac.to_yaml(namespace, account), end="")
        return 0
    for line in rbac.apply(connect(args.context), namespace, account):
        print(f"cellship: {line} in namespace {namespace}")
    return 0


RBAC_COMMANDS = {"rbac": cmd_rbac}
