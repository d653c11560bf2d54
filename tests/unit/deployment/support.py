"""What the deployment unit tests share: the namespace, image and a DeploySpec maker."""

from __future__ import annotations

from typing import Any

from cellship.deployment.spec import DeploySpec

NS = "ml"
IMAGE = "registry.example.com/team/digits:v1"


def spec(**overrides: Any) -> DeploySpec:
    values: dict[str, Any] = dict(name="digits", image=IMAGE, model_name="digits", namespace=NS)
    values.update(overrides)
    return DeploySpec(**values)
