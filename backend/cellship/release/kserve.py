"""A release where KServe is installed: one InferenceService per model, its newest revision
given ``canaryTrafficPercent`` of the traffic (KServe keeps the previous revision serving
the rest), instead of two Deployments sharing a Service by replica ratio.

Pure functions over the InferenceService's JSON (nothing here talks to a cluster):

* while a canary runs, the object's labels and annotations still describe the version
  served (so :func:`cellship.release.kube_manifests.version_of` reads the serving one);
  its predictor is the new version's, with ``canaryTrafficPercent``; annotations say which
  version and release the canary is and keep the previous predictor, so a rejection, or a
  later process finishing an interrupted release, can put it back;
* promotion: the new version's manifest without ``canaryTrafficPercent``, labelled stable;
* rejection: the previous predictor back, the canary annotations gone (the first version
  of a model has no previous one: its InferenceService is deleted instead).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Mapping

from cellship.deployment.spec import DeploySpec
from cellship.release import kube_manifests as km

CANARY_VERSION = "cellship.io/canary-version"
CANARY_RELEASE = "cellship.io/canary-release"
PREVIOUS = "cellship.io/previous-predictor"
CANARY_KEYS = (CANARY_VERSION, CANARY_RELEASE, PREVIOUS)


def _keep_version(body: dict[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    version = (current.get("metadata") or {}).get("resourceVersion")
    if version:
        body["metadata"]["resourceVersion"] = version
    return body


def canary_body(current: Mapping[str, Any] | None, new: DeploySpec, model: str,
                percent: int) -> dict[str, Any]:
    """The InferenceService while ``new`` is the canary (``current`` None: the model's
    first version, which takes all the traffic there is: none is served yet)."""
    desired = km.inference_service(new, model, None if current is None else percent)
    if current is None:
        desired["metadata"]["labels"][km.TRACK] = km.CANARY
        return desired
    body = copy.deepcopy(dict(current))
    body.pop("status", None)
    body["spec"] = {**(body.get("spec") or {}), "predictor": desired["spec"]["predictor"]}
    notes = dict(body["metadata"].get("annotations") or {})
    notes |= {CANARY_VERSION: new.extra_labels.get(km.VERSION, ""),
              CANARY_RELEASE: new.extra_labels.get(km.RELEASE_ID, ""),
              PREVIOUS: json.dumps((current.get("spec") or {}).get("predictor") or {},
                                   sort_keys=True)}
    body["metadata"]["annotations"] = notes
    return body


def promoted_body(current: Mapping[str, Any], new: DeploySpec, model: str) -> dict[str, Any]:
    """``new`` serving all the traffic, described by the object's labels (stable)."""
    body = km.inference_service(new, model, None)
    body["metadata"]["labels"][km.TRACK] = km.STABLE
    return _keep_version(body, current)


def reverted_body(current: Mapping[str, Any]) -> dict[str, Any] | None:
    """The previous predictor back (None: there was none; delete the object)."""
    notes = (current.get("metadata") or {}).get("annotations") or {}
    if PREVIOUS not in notes:
        return None
    body = copy.deepcopy(dict(current))
    body.pop("status", None)
    body["spec"] = {**(body.get("spec") or {}), "predictor": json.loads(notes[PREVIOUS])}
    body["metadata"]["annotations"] = {k: v for k, v in notes.items() if k not in CANARY_KEYS}
    return body


def canary_release(isvc: Mapping[str, Any]) -> str | None:
    """The release whose canary the InferenceService runs now (None: none)."""
    meta = isvc.get("metadata") or {}
    notes = meta.get("annotations") or {}
    if CANARY_RELEASE in notes:
        return notes[CANARY_RELEASE]
    labels = meta.get("labels") or {}
    return labels.get(km.RELEASE_ID) if labels.get(km.TRACK) == km.CANARY else None


def canary_pods(pods: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """The pods of the InferenceService that run ``image`` (the canary revision's)."""
    return [p for p in pods
            if any(c.get("image") == image for c in (p.get("spec") or {}).get("containers") or [])]
