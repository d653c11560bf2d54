"""Served models on Kubernetes: ``cellship deploy``, ``undeploy``, ``deployments``.

- :mod:`.spec`      what to deploy (DeploySpec), validated before any API call
- :mod:`.source`    MODEL_OR_IMAGE: a model (needs ``cellship build``) or an image; the
                    image's config says which model it serves and on which port
- :mod:`.manifests` pure functions: Deployment + Service (owned by it), or a KServe
                    InferenceService; probes (the pod spec itself: :mod:`cellship.kube.podspec`)
- :mod:`.rollout`   waiting for a rollout (a watch) or for pods to go, diagnosing stuck pods
- :mod:`.api`       deploy(), undeploy(), deployments(): what the CLI is a thin layer over

Every API call goes through the one client (:func:`cellship.kube.client.connect`).

Named ``deployment`` (not ``deploy``) so that ``cellship.deploy`` can stay free for the
function itself.
"""

from __future__ import annotations

from cellship.deployment.api import (
           DeploymentInfo,
           DeployResult,
           UndeployResult,
           deploy,
           deployments,
           table,
           undeploy,
)
from cellship.deployment.errors import DeployError, DeployFailed, DeploymentNotFound, DeployTimeout

__all__ = ["deploy", "undeploy", "deployments", "DeployResult", "DeploymentInfo",
           "UndeployResult", "table", "DeployError", "DeployFailed", "DeployTimeout",
           "DeploymentNotFound"]
