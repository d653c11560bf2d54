"""``cellship release --to kubernetes``: an image per version, a canary Deployment beside
the serving one, traffic by replica ratio (or KServe's ``canaryTrafficPercent``).

The steps the pipeline (:mod:`cellship.release.pipeline`) runs, as this target fills them:

* ``stage``   the SavedModel is checked and exported (with its example answer) into
              ``$CELLSHIP_HOME/release-images/<model>/<version>``, then built with
              cellship's own image builder (``cellship build --kind python``: cellship's
              server, whose /metrics the canary reads) onto ``base`` and pushed to
              ``registry`` under a content-addressed tag (``<version>-<12 hex of the model
              layer's content>``); the record keeps the digest. Nothing in the cluster
              changes yet.
* ``canary``  a Deployment ``<model>-v<version>`` of ceil(replicas * percent / 100) pods is
              created beside the serving one, which is not touched; the model's Service
              selects both versions' pods, so the canary's ready pods take their share of
              the traffic. The example goes to the canary pods themselves (the API
              server's pod proxy, :mod:`.pods`), its answer is compared with a serving
              pod's, then the canary pods' /metrics are watched for the window (error rate
              and p99, :func:`cellship.release.canary.judge`'s limits).
* ``promote`` the new Deployment is scaled to ``replicas`` and waited for, then labelled
              ``stable`` (the commit), then the old one is scaled to 0 (its pods drain:
              a preStop pause while the Service drops them) and deleted. Never two
              versions serving once a release ends.
* ``reject``  the canary Deployment is deleted; its image stays in the registry and the
              record keeps its digest.

``rollback`` redeploys the recorded image of an earlier version and promotes it the same
way; ``finish_interrupted`` ends in one serving version
(:func:`.kube_manifests.finish_plan`). The registry or the cluster failing mid-release is a
:class:`ReleaseError` naming the step; the serving Deployment is never changed before the
promotion's commit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cellship.deployment.errors import DeployFailed, DeployTimeout
from cellship.deployment.rollout import Target as Rollout
from cellship.deployment.rollout import is_ready, live_pods, wait_ready
from cellship.errors import CellshipError, ReleaseError, UsageError
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesError, KubernetesNotFound
from cellship.paths import home
from cellship.release import kserve
from cellship.release import kube_manifests as km
from cellship.release import kube_ops as ops
from cellship.release.canary import CanaryLimits, CanaryReport, difference, judge, read_counts, verb_of
from cellship.release.pods import PodHTTP, said, window
from cellship.release.targets import Staged, Target
from cellship.serve.export import MANIFEST, ModelVersion, check_saved_model, export_saved_model
from cellship.store import Store

Say = Callable[[str], None]
DEPLOYMENT, SERVICE, ISVC = "Deployment", "Service", "InferenceService"
PORT = 8501


def _quiet(_text: str) -> None:
    pass


def _bind(call: Callable[[str], None], name: str) -> Callable[[], None]:
    return lambda: call(name)


class KubernetesTarget(Target):
    """Versions of a model as Deployments of one namespace (see the module docstring)."""

    name = "kubernetes"

    def __init__(self, registry: str, base: str, *, namespace: str | None = None,
                 context: str | None = None, replicas: int = 1, canary: float = 50.0,
                 deps_from_base: bool = False, timeout: float = 300.0, reach: str = "proxy",
                 say: Say = _quiet, store: Store | None = None,
                 client: KubeAPI | None = None, builds: Path | None = None) -> None:
        self.registry, self.base = registry.rstrip("/"), base
        self.context, self.replicas, self.percent = context, replicas, canary
        self.canary_pods = km.canary_replicas(replicas, canary)  # checks both
        self.deps_from_base, self.timeout, self.reach = deps_from_base, timeout, reach
        self.say, self.store = say, store
        self._client = client
        self._namespace = namespace
        self._kserve: bool | None = None
        self.builds = builds or home() / "release-images"

    @classmethod
    def from_options(cls, *, registry: str | None = None, base: str | None = None,
                     **options: Any) -> "KubernetesTarget":
        """From ``cellship release``'s options: a missing registry or base is a sentence."""
        if not registry:
            raise UsageError("--to kubernetes needs --registry HOST:PORT[/PREFIX]: the registry "
                             "the release pushes the new version's image to and the cluster's "
                             "nodes pull it from (e.g. --registry registry.example.com/team).")
        if not base:
            raise UsageError("--to kubernetes needs --base IMAGE: the image the serving image "
                             "is built on, in a registry this machine can read (a python3 image; "
                             "with TensorFlow in it already, add --deps-from-base).")
        from cellship.images.reference import parse

        parse(f"{registry.rstrip('/')}/model:1")  # BadReference says what a registry is
        options = {k: v for k, v in options.items() if v is not None}
        return cls(registry, base, **options)

    @classmethod
    def from_record(cls, details: Mapping[str, Any], **more: Any) -> "KubernetesTarget":
        """The target a release recorded (:meth:`where`), for a rollback or a resume."""
        keys = ("registry", "base", "namespace", "context", "replicas", "deps_from_base",
                "reach")
        recorded = {"registry": "", "base": ""} | {k: details[k] for k in keys
                                                   if details.get(k) is not None}
        if isinstance(details.get("canary_percent"), (int, float)):
            recorded["canary"] = details["canary_percent"]
        return cls(**recorded, **more)  # (registry and base only matter to a new build)

    def check(self, model: str) -> str:
        return km.check_model(model)

    def where(self) -> dict[str, Any]:
        return {"registry": self.registry, "base": self.base, "namespace": self.namespace,
                "context": self.context, "replicas": self.replicas, "canary_percent": self.percent,
                "deps_from_base": self.deps_from_base, "reach": self.reach}

    # -- the cluster ---------------------------------------------------------------------
    @property
    def client(self) -> KubeAPI:
        if self._client is None:
            from cellship.kube.client import connect

            self._client = connect(self.context)
        return self._client

    @property
    def namespace(self) -> str:
        return self.client.namespace(self._namespace)

    @property
    def kserve(self) -> bool:
        """Whether InferenceServices can be made here (then the release uses KServe)."""
        if self._kserve is None:
            from cellship.deployment.api import _has_kserve

            self._kserve = _has_kserve(self.client, self.namespace)
        return self._kserve

    def _isvc(self, model: str) -> dict[str, Any] | None:
        try:
            return self.client.get(ISVC, self.namespace, model)
        except KubernetesNotFound:
            return None

    def versions(self, model: str) -> list[km.Version]:
        kind = ISVC if self.kserve else DEPLOYMENT
        found = [o for o in self.client.list(kind, self.namespace, f"{km.RELEASED}={model}")
                 if not o["metadata"].get("deletionTimestamp")]  # being deleted: gone already
        return [v for v in map(km.version_of, found) if v is not None]

    def current(self, model: str) -> ModelVersion | None:
        km.check_model(model)
        try:
            serving = km.serving(self.versions(model))
        except KubernetesError as err:
            raise ReleaseError(f"Could not read what serves {model} in namespace "
                               f"{self._namespace or 'of the context'}: {err}", "contract") from None
        if serving is None:
            return None
        return ModelVersion(model, serving.version, self._build_dir(model, serving.version),
                            {"signature": dict(serving.signature), "image": serving.image})

    def signature(self, saved_model: Path) -> Mapping[str, Any]:
        import tensorflow  # noqa: F401  (loaded once: the export check runs in-process too)

        return check_saved_model(saved_model)["signatures"]["serving_default"]

    # -- stage: export, build, push ------------------------------------------------------
    def _build_dir(self, model: str, version: int) -> Path:
        return self.builds / model / str(version)

    def next_version(self, model: str, current: ModelVersion | None) -> int:
        """One more than any version the cluster runs or this machine built (numbers are
        never reused: a rejected version's image keeps its number in the registry)."""
        built = [int(p.name) for p in (self.builds / model).glob("*") if p.name.isdigit()]
        running = [v.version for v in self.versions(model)]
        return max([0, *built, *running, current.version if current else 0]) + 1

    def stage(self, saved_model: Path, model: str, release_id: str, *, current: ModelVersion | None,
              source: Mapping[str, Any], parameters: Mapping[str, Any],
              metrics: Mapping[str, Any], example: Mapping[str, Any] | None) -> Staged:
        import tensorflow  # noqa: F401

        from cellship.images import build
        from cellship.images.builder import MODEL_LEVEL
        from cellship.images.layers import content_key, tree

        km.check_model(model)
        version = self._step("stage", "read the versions in the cluster",
                             lambda: self.next_version(model, current))
        final = self._build_dir(model, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".export-{release_id}-", dir=final.parent))
        try:
            exported = export_saved_model(saved_model, model, source=source,
                                          parameters=parameters, metrics=metrics,
                                          example=example, repository=scratch)
            manifest = dict(exported.model.manifest) | {"version": version}
            (exported.model.path / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
            os.rename(exported.model.path, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        key = content_key(tree(final, f"/models/{model}/{version}"), MODEL_LEVEL)
        tag = f"{self.registry}/{model}:{version}-{key[:12]}"
        try:
            built = build(str(final), base=self.base, tag=tag, kind="python", name=model,
                          version=version, deps_from_base=self.deps_from_base,
                          progress=self.say)
        except CellshipError as err:
            raise ReleaseError(f"Building or pushing the image of version {version} failed: "
                               f"{err} Nothing changed in the cluster"
                               + (f"; version {current.version} is still served."
                                  if current else ".") + f" (The export is kept in {final}.)",
                               "stage") from None
        self.say(f"pushed {tag} ({built.digest}); {built.uploaded_bytes / 1e6:.1f} MB sent")
        record = {"image": built.pinned, "digest": built.digest, "tag": tag,
                  "deployment": km.deployment_name(model, version), "export": str(final),
                  "release": release_id}
        return Staged(ModelVersion(model, version, final, manifest), final.parent, record)

    # -- canary --------------------------------------------------------------------------
    def canary(self, staged: Staged, current: ModelVersion | None,
               example: Mapping[str, Any] | None, limits: CanaryLimits) -> CanaryReport:
        model, version = staged.model.name, staged.model.version
        name, image = staged.record["deployment"], staged.record["image"]
        if self.kserve:
            return self._kserve_canary(staged, current, example, limits)
        body = km.deployment(self._spec(model, version, image, self.canary_pods,
                                        staged.record["release"], staged.model.signature))
        self._step("canary", f"create the canary Deployment {name}",
                   lambda: self.client.create(body))
        share = km.traffic_share(self.canary_pods, self._replicas_of(current))
        self.say(f"canary Deployment {name}: {self.canary_pods} pod(s) of {image} beside "
                 + (f"version {current.version} ({share:.0%} of the Service's requests)"
                    if current else "nothing served yet"))
        early = self._ready_or_report(Rollout(DEPLOYMENT, self.namespace, name, self.canary_pods,
                                              f"{km.mf.LABEL_DEPLOYMENT}={name}"),
                                      version, current, example)
        if early is not None:
            return early
        assert example is not None  # without one the canary ended above
        pods = self._step("canary", "list the canary's pods",
                          lambda: ops.ready_pods(self.client, self.namespace, name))
        serving = [] if current is None else self._step(
            "canary", "list the serving version's pods",
            lambda: ops.ready_pods(self.client, self.namespace, km.deployment_name(model, current.version)))
        return self._watch(model, version, pods, serving, current, example, limits)

    def _ready_or_report(self, rollout: Rollout, version: int, current: ModelVersion | None,
                         example: Mapping[str, Any] | None) -> CanaryReport | None:
        """Wait for the canary's pods; the report when the canary ends here (its pods never
        became ready, or there is no example to smoke-test it with), else None."""
        try:
            wait_ready(self.client, rollout, self.timeout, progress=self.say)
        except (DeployFailed, DeployTimeout) as err:
            return CanaryReport(version, current.version if current else None,
                                failed_check="smoke", reason=f"its pods did not become ready: {err}")
        if example is None:
            return CanaryReport(version, current.version if current else None,
                                reason="no --example request: smoke test and window skipped")
        return None

    def _kserve_canary(self, staged: Staged, current: ModelVersion | None,
                       example: Mapping[str, Any] | None, limits: CanaryLimits) -> CanaryReport:
        """The canary as KServe's newest revision with ``canaryTrafficPercent``."""
        model, version, image = staged.model.name, staged.model.version, staged.record["image"]
        spec = self._spec(model, version, image, self.replicas, staged.record["release"],
                          staged.model.signature)
        existing = self._step("canary", f"read the InferenceService {model}",
                              lambda: self._isvc(model))
        body = kserve.canary_body(existing if current else None, spec, model, round(self.percent))
        if existing is None:
            self._step("canary", f"create the InferenceService {model}",
                       lambda: self.client.create(body))
        else:
            body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
            self._step("canary", f"update the InferenceService {model}",
                       lambda: self.client.replace(body))
        self.say(f"InferenceService {model}: version {version} ({image}) takes "
                 f"{self.percent:g}% of the traffic (canaryTrafficPercent)")
        selector = f"{km.mf.KSERVE_POD_LABEL}={model}"
        early = self._ready_or_report(Rollout(ISVC, self.namespace, model, self.replicas, selector),
                                      version, current, example)
        if early is not None:
            return early
        assert example is not None  # without one the canary ended above
        pods = [p for p in live_pods(self.client, self.namespace, selector) if is_ready(p)]
        new = kserve.canary_pods(pods, image)
        old = [] if current is None else kserve.canary_pods(pods, str(current.manifest.get("image")))
        return self._watch(model, version, new, old, current, example, limits)

    def _watch(self, model: str, version: int, pods: Sequence[Mapping[str, Any]],
               serving: Sequence[Mapping[str, Any]], current: ModelVersion | None,
               example: Mapping[str, Any], limits: CanaryLimits) -> CanaryReport:
        http = PodHTTP(self.client, self.namespace, self.reach)
        old = current.version if current else None
        if not pods:
            return CanaryReport(version, old, failed_check="smoke",
                                reason="none of its pods is ready to answer")
        path = f"/v1/models/{model}/versions/{version}:{verb_of(example)}"
        answers: dict[str, Any] = {}
        for pod in pods:  # every canary pod answers the example, or the canary fails
            code, answer = http.post_json(pod, PORT, path, example)
            if code != 200:
                return CanaryReport(version, old, requests=1, errors=1, failed_check="smoke",
                                    reason=f"the example request to pod {pod['metadata']['name']} "
                                           f"of version {version} answered {code or 'nothing'}: "
                                           f"{said(answer)}")
            answers.setdefault("new", answer)
        diff = None
        if current is not None:
            if serving:
                code, answer = http.post_json(serving[0], PORT,
                                              f"/v1/models/{model}:{verb_of(example)}", example)
                if code == 200:
                    diff = difference(answers["new"], answer)
                    answers["current"] = answer
        before = [read_counts(http.metrics(p, PORT), model) for p in pods]
        window(http, pods, PORT, path, example, limits.window_s)
        after = [read_counts(http.metrics(p, PORT), model) for p in pods]
        counts = sum((a - b for a, b in zip(after, before)), start=read_counts("", model))
        report = CanaryReport(version, old, diff, counts.total, counts.failed, counts.p99_ms,
                              answers=answers)
        return judge(report, limits)

    # -- promote, reject -------------------------------------------------------------------
    def promote(self, staged: Staged) -> ModelVersion:
        model = staged.model.name
        if self.kserve:
            spec = self._spec(model, staged.model.version, staged.record["image"], self.replicas,
                              staged.record["release"], staged.model.signature)
            self._kserve_promote(model, spec, "promote")
        else:
            self._promote(model, staged.record["deployment"], "promote")
        return staged.model

    def _kserve_promote(self, model: str, spec: Any, step: str) -> None:
        def put() -> None:
            existing = self.client.get(ISVC, self.namespace, model)
            self.client.replace(kserve.promoted_body(existing, spec, model))

        self._step(step, f"give version {spec.extra_labels[km.VERSION]} all of {model}'s traffic",
                   put)
        try:
            wait_ready(self.client, Rollout(ISVC, self.namespace, model, self.replicas,
                                            f"{km.mf.KSERVE_POD_LABEL}={model}"),
                       self.timeout, progress=self.say)
        except (DeployFailed, DeployTimeout) as err:
            raise ReleaseError(f"The InferenceService {model} did not become ready: {err}", step) from None

    def _promote(self, model: str, name: str, step: str) -> None:
        """Scale ``name`` to the full replicas, wait, commit it stable, then scale away and
        delete every other version of ``model``."""
        client, ns = self.client, self.namespace
        self._step(step, f"make sure the Service {model} exists",
                   lambda: ops.ensure_service(client, ns, model))
        self._step(step, f"scale {name} to {self.replicas}",
                   lambda: ops.edit(client, ns, name, lambda d: km.with_replicas(d, self.replicas)))
        try:
            wait_ready(self.client, Rollout(DEPLOYMENT, self.namespace, name, self.replicas,
                                            f"{km.mf.LABEL_DEPLOYMENT}={name}"),
                       self.timeout, progress=self.say)
        except (DeployFailed, DeployTimeout) as err:
            raise ReleaseError(f"{name} did not reach {self.replicas} ready replica(s): {err}; "
                               "the serving version was not changed.", step) from None
        self._step(step, f"label {name} stable",
                   lambda: ops.edit(client, ns, name, lambda d: km.with_track(d, km.STABLE)))
        for other in self._step(step, "list the versions", lambda: self.versions(model)):
            if other.name != name:
                self._step(step, f"scale away {other.name}", _bind(self._retire, other.name))
                self.say(f"{other.name} (version {other.version}) scaled to 0 and deleted")

    def reject(self, staged: Staged, release_id: str) -> str:
        name, image = staged.record.get("deployment"), staged.record.get("image")
        if self.kserve:
            self._step("reject", f"put the InferenceService {staged.model.name} back",
                       lambda: ops.kserve_revert(self.client, self.namespace, staged.model.name))
            return f"{image} (no longer in the InferenceService; the image stays in the registry)"
        if name:
            self._step("reject", f"delete the canary Deployment {name}", _bind(self._retire, name))
        return f"{image} (Deployment {name} deleted; the image stays in the registry)"

    # -- rollback, interrupted releases ------------------------------------------------------
    def rollback(self, model: str, to: int | None,
                 release_id: str) -> tuple[int, int, Sequence[Path | str]]:
        km.check_model(model)
        serving = km.serving(self._step("rollback", "list the versions", lambda: self.versions(model)))
        if serving is None:
            raise ReleaseError(f"Nothing of {model} is served in namespace {self.namespace}; "
                               "nothing to roll back.", "rollback")
        images = ops.promoted_images(self.store or Store.default(), model, self.name)
        chosen = km.rollback_choice(serving.version, to, images, model)
        name = km.deployment_name(model, chosen)
        spec = self._spec(model, chosen, images[chosen], self.replicas, release_id,
                          self._signature_of(model, chosen))
        if self.kserve:
            self._kserve_promote(model, spec, "rollback")
            return serving.version, chosen, [f"{serving.image} (no longer in the "
                                             "InferenceService; the image stays in the registry)"]
        self._step("rollback", f"create {name}", lambda: self.client.create(km.deployment(spec)))
        self._promote(model, name, "rollback")
        return serving.version, chosen, [f"{serving.image} (Deployment {serving.name} deleted; "
                                         "the image stays in the registry)"]

    def finish_interrupted(self, model: str, release_id: str,
                           version: int | None) -> tuple[bool, Sequence[Path | str]]:
        if self.kserve:
            isvc = self._step("cleanup", f"read the InferenceService {model}",
                              lambda: self._isvc(model))
            if isvc is not None and kserve.canary_release(isvc) == release_id:
                self._step("cleanup", f"put the InferenceService {model} back",
                           lambda: ops.kserve_revert(self.client, self.namespace, model))
                return False, [f"version {version} taken out of the InferenceService {model}"]
            labels = (isvc or {}).get("metadata", {}).get("labels") or {}
            return labels.get(km.RELEASE_ID) == release_id, []
        plan = km.finish_plan(self._step("cleanup", "list the versions",
                                         lambda: self.versions(model)), release_id)
        keep = plan.keep
        if keep is not None:  # scaled to 0 by a promotion that died half-way: serve again
            self._step("cleanup", f"scale {keep} to {self.replicas}", lambda: ops.edit(
                self.client, self.namespace, keep,
                lambda d: d if d["spec"].get("replicas") else km.with_replicas(d, self.replicas)))
        for name in plan.delete:
            self._step("cleanup", f"delete {name}", _bind(self._retire, name))
        return plan.promoted, [f"Deployment {name} deleted" for name in plan.delete]

    # -- helpers ----------------------------------------------------------------------------
    def _spec(self, model: str, version: int, image: str, replicas: int, release_id: str,
              signature: Mapping[str, Any]) -> Any:
        return km.spec(model, version, image, namespace=self.namespace, replicas=replicas,
                       release_id=release_id, signature=signature, pull_policy="IfNotPresent")

    def _step(self, step: str, what: str, call: Callable[[], Any]) -> Any:
        """``call``, with a failure of the cluster worded as the step it stopped."""
        try:
            return call()
        except KubernetesError as err:
            raise ReleaseError(f"Could not {what} in namespace {self._namespace or 'of the context'}"
                               f": {err}", step) from None

    def _replicas_of(self, current: ModelVersion | None) -> int:
        if current is None:
            return 0
        found = [v for v in self.versions(current.name) if v.version == current.version]
        return found[0].replicas if found else 0

    def _retire(self, name: str) -> None:
        ops.retire(self.client, self.namespace, name, self.timeout)

    def _signature_of(self, model: str, version: int) -> Mapping[str, Any]:
        from cellship.serve.export import _read_manifest

        return _read_manifest(self._build_dir(model, version)).get("signature") or {}
