"""The deployment endpoints: cellship's served models on Kubernetes (through
:func:`cellship.deployment.deployments`) and undeploying one (the panel's Undeploy button).

Without a cluster (no kubeconfig, an API server that does not answer within
:data:`LIST_TIMEOUT_SECONDS`, a ServiceAccount that may not list Deployments) the list is
empty, with a ``reason``: the panel shows the sentence, never a 500.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import tornado.web

from cellship.errors import CellshipError
from cellship.jupyter.base import CellshipHandler

LIST_TIMEOUT_SECONDS = 5.0


def _deployment_list(namespace: str | None) -> dict[str, Any]:
    from cellship.deployment import deployments

    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["items"] = deployments(namespace=namespace)
        except CellshipError as err:  # no kubeconfig, unreachable, forbidden, no client
            outcome["error"] = err

    thread = threading.Thread(target=ask, name="cellship-deployments", daemon=True)
    thread.start()
    thread.join(LIST_TIMEOUT_SECONDS)
    if thread.is_alive():
        return {"deployments": [], "count": 0,
                "reason": f"The cluster did not answer within {LIST_TIMEOUT_SECONDS:g} s."}
    if "error" in outcome:
        return {"deployments": [], "count": 0, "reason": str(outcome["error"])}
    if "items" not in outcome:  # an unexpected failure: its traceback is in the server's log
        return {"deployments": [], "count": 0,
                "reason": "Listing the cluster's deployments failed; the Jupyter server's "
                          "log has the traceback."}
    items = [d.to_dict() for d in outcome["items"]]
    return {"deployments": items, "count": len(items), "reason": None}


def _undeploy(name: str, namespace: str | None) -> dict[str, Any]:
    from cellship.deployment import undeploy

    result = undeploy(name, namespace=namespace, wait=False)
    return {"name": result.name, "namespace": result.namespace, "kind": result.kind,
            "message": result.summary()}


def _namespace(given: str | None) -> str | None:
    """The namespace asked for, else ``$CELLSHIP_K8S_NAMESPACE`` (where the jobs list looks
    for cluster jobs too), else None: the context's."""
    from cellship.kube.flags import ENV_DEFAULTS

    return given or os.environ.get(ENV_DEFAULTS["namespace"]) or None


class DeploymentsHandler(CellshipHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        namespace = _namespace(self.get_query_argument("namespace", None))
        self.reply(await self.call(_deployment_list, namespace))


class DeploymentHandler(CellshipHandler):
    @tornado.web.authenticated
    async def delete(self, name: str) -> None:
        namespace = _namespace(self.get_query_argument("namespace", None))
        self.reply(await self.call(_undeploy, name, namespace))
