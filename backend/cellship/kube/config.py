"""Where the one client (:mod:`.client`) gets its cluster from: a kubeconfig context, or,
in a pod with no kubeconfig, the pod's ServiceAccount (token, CA, namespace) through the
official client's own loaders. ``config`` and ``client`` are the official package's modules,
passed in so importing this module never needs it (kubernetes is an optional dependency).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cellship.kube.errors import KUBECONFIG_HINT, NoKubeconfig

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_ENV = "CELLSHIP_SERVICE_ACCOUNT_DIR"


def kubeconfig_path(kubeconfig: str | None = None) -> str:
    """The kubeconfig to read: the one given, else ``$KUBECONFIG``, else ``~/.kube/config``
    (resolved at each call, not at import, so a KUBECONFIG set later counts)."""
    return kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def read_namespace(account: Path) -> str:
    """The pod's own namespace, as the kubelet wrote it next to the token."""
    try:
        return (account / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


def service_account_dir() -> Path:
    """Where the pod's ServiceAccount files are (token, ca.crt, namespace): the kubelet's
    fixed path, unless ``$CELLSHIP_SERVICE_ACCOUNT_DIR`` names another (tests lay one out
    in a temporary directory, as the official client's ``InClusterConfigLoader`` takes its
    file names as arguments)."""
    return Path(os.environ.get(SERVICE_ACCOUNT_ENV) or SERVICE_ACCOUNT_DIR)


def in_cluster(context: str | None, kubeconfig: str) -> bool:
    """Whether to use the pod's ServiceAccount: the kubelet set KUBERNETES_SERVICE_HOST,
    and nothing asks for a kubeconfig (no KUBECONFIG, no --context, no ~/.kube/config)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not (
        os.environ.get("KUBECONFIG") or context or os.path.exists(kubeconfig))


def in_cluster_client(config: Any, client: Any, account: Path) -> Any:
    """The official in-cluster loader on a Configuration of this client's own (not the
    process-wide default). Its refresh hook re-reads the token file (the kubelet
    rotates the projected token; it expires after an hour) before a request once a
    minute has passed, so the token is never copied once: every request, exec
    websockets included, asks the Configuration for it."""
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = client.Configuration()
    try:
        InClusterConfigLoader(token_filename=str(account / "token"),
                              cert_filename=str(account / "ca.crt"),
                              try_refresh_token=True).load_and_set(configuration)
    except config.ConfigException as err:
        raise NoKubeconfig(
            f"KUBERNETES_SERVICE_HOST is set, so cellship runs in a pod and uses its "
            f"ServiceAccount, but {err} (looked in {account}: token, ca.crt). Mount the "
            f"ServiceAccount token (automountServiceAccountToken), or "
            f"{KUBECONFIG_HINT[0].lower()}{KUBECONFIG_HINT[1:]}") from err
    return client.ApiClient(configuration)


def kubeconfig_client(config: Any, context: str | None, kubeconfig: str) -> Any:
    """An ApiClient for a kubeconfig context (the current one when None)."""
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as err:
        text = str(err)
        if context and "context" in text.lower():
            raise NoKubeconfig(f"The kubeconfig has no context {context!r} ({text}); list "
                               "them with `kubectl config get-contexts`.") from err
        raise NoKubeconfig(f"No Kubernetes cluster configured ({text}). {KUBECONFIG_HINT}") from err
    except FileNotFoundError as err:
        raise NoKubeconfig(f"No kubeconfig found ({err}). {KUBECONFIG_HINT}") from err


def kubeconfig_namespace(config: Any, context: str | None, kubeconfig: str | None) -> str:
    """The context's namespace, else ``default`` (as kubectl reads it)."""
    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            active = next((c for c in contexts if c["name"] == context), active)
        return (active or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, OSError, KeyError, TypeError):
        return "default"
