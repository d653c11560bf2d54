"""deploy / undeploy / deployments: served models on Kubernetes, from Python.

``cellship deploy``, ``undeploy`` and ``deployments`` are thin layers over these three
functions; a notebook calls them directly. Every API call goes through the one client
(:func:`cellship.kube.client.connect`, or the fake the tests hand in as ``client``).

Deploying a name that exists updates it (the Deployment and Service are replaced, so a new
image rolls out with no replica below the wanted count), because "deploy v2 over v1" is the
common case and a 409 would only make the user undeploy first and lose availability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from cellship.deployment import manifests as mf
from cellship.deployment.errors import DeployError, DeploymentNotFound, DeployTimeout
from cellship.deployment.rollout import (
    Target,
    deployment_state,
    is_ready,
    live_pods,
    wait_pods_gone,
    wait_ready,
)
from cellship.deployment.source import (
    IMAGE,
    MODELS_DIR,
    S3,
    build_image,
    check_s3_model,
    classify,
    inspect_image,
    needs_image_message,
)
from cellship.deployment.spec import KINDS, PORT, DeploySpec, VolumeMount, check_name, parse_pull_policy
from cellship.errors import CellshipError, UsageError
from cellship.kube import client as kube_client
from cellship.kube.api import KubeAPI
from cellship.kube.errors import KubernetesConflict, KubernetesForbidden, KubernetesNotFound
from cellship.kube.kinds import INFERENCE_SERVICE
from cellship.kube.meta import MANAGED_SELECTOR, USER_LABEL
from cellship.kube.names import check_namespace
from cellship.kube.waiting import wait_gone

Progress = Callable[[str], None]
DEPLOYMENT, ISVC = "Deployment", "InferenceService"
SAMPLE_BODY = '{"instances": [[...]]}'


def _quiet(_message: str) -> None:
    pass


@dataclass(frozen=True)
class _Served:
    """What names a served model and how it answers (shared by the results below)."""

    name: str
    namespace: str
    kind: str
    image: str
    model_name: str
    port: int


@dataclass(frozen=True)
class DeployResult(_Served):
    """What :func:`deploy` did (``action``: created / updated) and how to reach it."""

    replicas: int
    ready: int
    action: str
    waited: bool
    kserve_url: str | None = None

    @property
    def base_url(self) -> str:
        """The in-cluster address (KServe's own URL for an InferenceService)."""
        if self.kind == ISVC:
            return (self.kserve_url or f"http://{self.name}.{self.namespace}.svc").rstrip("/")
        return f"http://{self.name}.{self.namespace}.svc:{mf.SERVICE_PORT}"

    @property
    def url(self) -> str:
        return f"{self.base_url}{mf.status_path(self.model_name)}"

    @property
    def port_forward(self) -> str | None:
        if self.kind == ISVC:
            return None
        return (f"kubectl port-forward -n {self.namespace} svc/{self.name} "
                f"{mf.SERVICE_PORT}:{mf.SERVICE_PORT}")

    @property
    def curl(self) -> str:
        base = (f"http://localhost:{mf.SERVICE_PORT}" if self.port_forward else self.base_url)
        return (f"curl -s -X POST {base}{mf.status_path(self.model_name)}:predict "
                f"-d '{SAMPLE_BODY}'")

    def how_to_reach(self) -> str:
        state = (f"is ready: {self.ready}/{self.replicas} replica(s)" if self.waited
                 else f"was {self.action}; not waited for (see `cellship deployments -n "
                      f"{self.namespace}`)")
        lines = [f"{self.kind} {self.name} in namespace {self.namespace} {state}",
                 f"  in the cluster: {self.url}"]
        if self.port_forward:
            lines += [f"  from here:      {self.port_forward}",
                      f"  then predict:   {self.curl}"]
        else:
            lines += [f"  predict:        {self.curl}",
                      f"  (KServe's URL: kubectl get inferenceservice -n {self.namespace} {self.name})"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"url": self.url, "port_forward": self.port_forward,
                               "curl": self.curl}


@dataclass(frozen=True)
class DeploymentInfo(_Served):
    """One cellship-managed served model, as ``cellship deployments`` lists it."""

    desired: int
    ready: int
    created: str
    user: str | None = None  # its ``cellship.io/user`` label: who deployed it

    @property
    def url(self) -> str:
        if self.kind == ISVC:
            return f"(kubectl get inferenceservice -n {self.namespace} {self.name})"
        return (f"http://{self.name}.{self.namespace}.svc:{mf.SERVICE_PORT}"
                f"{mf.status_path(self.model_name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"url": self.url}


@dataclass(frozen=True)
class UndeployResult:
    name: str
    namespace: str
    kind: str
    waited: bool

    def summary(self) -> str:
        what = (f"Deployment {self.name} and its Service" if self.kind == DEPLOYMENT
                else f"InferenceService {self.name}")
        tail = "all of its pods are gone" if self.waited else "its pods are being stopped"
        return f"{what} deleted from namespace {self.namespace}; {tail}"


# -- deploy ------------------------------------------------------------------------------------
def deploy(model_or_image: str, name: str, *, replicas: int = 1, namespace: str | None = None,
           context: str | None = None, port: int | None = None, model_name: str | None = None,
           model_path: str | None = None, cpu: str | None = None, memory: str | None = None,
           cpu_limit: str | None = None, memory_limit: str | None = None, gpus: int = 0,
           image_pull_policy: str | None = None, image_pull_secrets: Sequence[str] = (),
           env: Mapping[str, str] | None = None, volumes: Iterable[str | VolumeMount] = (),
           run_as_user: int = 1000, python: str = "python3", kind: str = "auto",
           wait: bool = True, timeout: float = 300.0, base: str | None = None,
           tag: str | None = None, build_kind: str | None = None,
           progress: Progress | None = None, client: KubeAPI | None = None,
           poll: float = 1.0, image: str | None = None,
           storage_secret: str | None = None) -> DeployResult:
    """Serve ``model_or_image`` on Kubernetes as ``name`` (created, or updated if it exists).

    ``model_or_image`` is an image that serves a model (``cellship build`` makes one), or a
    model of the repository with ``base`` and ``tag`` to build that image first. The model
    name (for probes and URLs) and port are read from the image's config unless given;
    ``model_path`` runs ``cellship serve MODEL_PATH`` from the image's own cellship instead
    of the image's command (with ``volumes`` to mount the model). ``kind``: ``auto``
    (KServe InferenceService where its CRD exists, else Deployment + Service),
    ``deployment`` or ``kserve``. With ``wait``, returns once every replica is ready, or
    raises DeployFailed (with the pods' diagnosis) / DeployTimeout.

    ``model_or_image`` may also be an ``s3://`` SavedModel: served with no image build by
    ``image`` (one with cellship and boto3), whose pods download it first with the keys of
    the Secret ``storage_secret`` (checked before anything is made).
    """
    say = progress or _quiet
    check_name(name)
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}.")
    if namespace is not None:
        check_namespace(namespace)
    if timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {timeout}.")
    mounts = tuple(v if isinstance(v, VolumeMount) else VolumeMount.parse(v) for v in volumes)
    source = classify(model_or_image)
    if source.kind == S3:
        if not image or base or tag:
            raise UsageError(f"Serving {source.ref} straight from object storage needs --image "
                             "(an image with cellship and boto3, whose `cellship serve` runs the "
                             "model its pods download) and no --base/--tag: nothing is built.")
        client = client or kube_client.connect(context)
        check_s3_model(client, client.namespace(namespace), source.ref, storage_secret)
        model_name = model_name or source.model_name
        model_path = f"{MODELS_DIR}/{model_name}"
    elif source.kind != IMAGE and not (base and tag):
        raise UsageError(needs_image_message(source, name))
    if source.kind == IMAGE and (base or tag):
        raise UsageError(f"--base and --tag build a model into an image, but {model_or_image!r} "
                         "is an image already: drop them (or name a model to build).")
    client = client or kube_client.connect(context)
    if source.kind == S3:
        assert image and model_name  # set above
    elif source.kind == IMAGE:
        image = model_or_image
        if model_name is None and model_path is not None:
            model_name = _name_of_path(model_path)
        if model_name is None:
            info = inspect_image(image)
            if not info.model_name:
                raise UsageError(f"The image {image} does not say which model it serves (no "
                                 "io.cellship.model label, no MODEL_NAME): give --model-name "
                                 "NAME, the NAME in /v1/models/NAME.")
            model_name, port = info.model_name, port or info.port
    else:
        image, built = build_image(source.ref, base, tag, build_kind, say)  # type: ignore[arg-type]
        model_name = model_name or built
    spec = DeploySpec(
        name=name, image=image, model_name=model_name, port=port or PORT, replicas=replicas,
        namespace=client.namespace(namespace), model_path=model_path, cpu=cpu,
        memory=memory, cpu_limit=cpu_limit, memory_limit=memory_limit, gpus=gpus,
        image_pull_policy=parse_pull_policy(image_pull_policy),
        image_pull_secrets=tuple(image_pull_secrets), env=dict(env or {}), volumes=mounts,
        run_as_user=run_as_user, python=python,
        model_url=source.ref if source.kind == S3 else None, storage_secret=storage_secret)
    chosen = _choose_kind(client, spec, kind)
    if chosen == ISVC:
        action, obj = _apply_inference_service(client, spec)
        say(f"{action} InferenceService {spec.name} in namespace {spec.namespace} "
            f"({spec.replicas} replica(s) of {spec.image}, model {spec.model_name})")
        target = Target(ISVC, spec.namespace, spec.name, spec.replicas,
                        f"{mf.KSERVE_POD_LABEL}={spec.name}")
    else:
        action, obj = _apply_deployment(client, spec)
        say(f"{action} Deployment and Service {spec.name} in namespace {spec.namespace} "
            f"({spec.replicas} replica(s) of {spec.image}, model {spec.model_name}, "
            f"port {spec.port})")
        target = Target(DEPLOYMENT, spec.namespace, spec.name, spec.replicas,
                        mf.selector(spec.name))
    ready = 0
    if wait:
        state = wait_ready(client, target, timeout, poll=poll, progress=say)
        ready = state.ready
        obj = client.get(target.kind, spec.namespace, spec.name) if chosen == ISVC else obj
    elif chosen == DEPLOYMENT:
        ready = deployment_state(obj).ready
    return DeployResult(name=spec.name, namespace=spec.namespace, kind=chosen, image=spec.image,
                        model_name=spec.model_name, port=spec.port, replicas=spec.replicas,
                        ready=ready, action=action, waited=wait,
                        kserve_url=_kserve_url(obj) if chosen == ISVC else None)


def _name_of_path(path: str) -> str:
    """``/models/digits`` or ``/models/digits/3`` -> ``digits`` (as ``cellship serve``)."""
    parts = [p for p in path.rstrip("/").split("/") if p]
    if len(parts) > 1 and parts[-1].isdigit():
        return parts[-2]
    return parts[-1] if parts else "model"


def _get(client: KubeAPI, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return client.get(kind, namespace, name)
    except KubernetesNotFound:
        return None


def _has_kserve(client: KubeAPI, namespace: str) -> bool:
    """Whether InferenceServices can be made here. A 403 counts as no: who may not even
    list them cannot deploy them, and a plain Deployment still works."""
    try:
        return client.has_crd(ISVC, namespace)
    except KubernetesForbidden:
        return False


def _choose_kind(client: KubeAPI, spec: DeploySpec, wanted: str) -> str:
    """``auto``: whatever ``name`` already is, else an InferenceService where KServe is
    installed, else a Deployment. A name taken by the other kind is refused."""
    kserve = _has_kserve(client, spec.namespace)
    existing_dep = _get(client, DEPLOYMENT, spec.namespace, spec.name)
    existing_isvc = _get(client, ISVC, spec.namespace, spec.name) if kserve else None
    if wanted == "kserve" and not kserve:
        raise UsageError("--kind kserve needs KServe's InferenceService CRD "
                         f"({INFERENCE_SERVICE.api_version}), which this cluster does not "
                         "have (or you may not list InferenceServices): install KServe, or drop "
                         "--kind to deploy a Deployment and a Service.")
    if wanted == "deployment":
        chosen = DEPLOYMENT
    elif wanted == "kserve":
        chosen = ISVC
    else:
        chosen = DEPLOYMENT if existing_dep is not None else (
            ISVC if kserve else DEPLOYMENT)
    other = existing_isvc if chosen == DEPLOYMENT else existing_dep
    if other is not None:
        other_kind = ISVC if chosen == DEPLOYMENT else DEPLOYMENT
        raise DeployError(f"{spec.name} already exists in namespace {spec.namespace} as a(n) "
                          f"{other_kind}, so it cannot become a(n) {chosen}: undeploy it first "
                          f"(`cellship undeploy {spec.name} -n {spec.namespace}`) or choose "
                          "another --name.")
    return chosen


def _not_ours(kind: str, spec: DeploySpec) -> DeployError:
    return DeployError(f"A {kind} named {spec.name} already exists in namespace {spec.namespace} "
                       "and cellship did not make it, so cellship leaves it alone: choose "
                       f"another --name, or delete it yourself (`kubectl delete {kind.lower()} -n "
                       f"{spec.namespace} {spec.name}`) if it is not needed.")


def _replace(client: KubeAPI, desired: Mapping[str, Any],
             current: Mapping[str, Any]) -> dict[str, Any]:
    """PUT ``desired`` over ``current``; a 409 (changed meanwhile) reads it again and retries."""
    meta = desired["metadata"]
    for attempt in range(3):
        try:
            return client.replace(mf.for_update(desired, current))
        except KubernetesConflict:
            if attempt == 2:
                raise
            current = client.get(desired["kind"], meta["namespace"], meta["name"])
    raise AssertionError("unreachable")


def _apply_deployment(client: KubeAPI, spec: DeploySpec) -> tuple[str, dict[str, Any]]:
    """Create or replace the Deployment, then its Service (owned by it)."""
    current = _get(client, DEPLOYMENT, spec.namespace, spec.name)
    current_svc = _get(client, "Service", spec.namespace, spec.name)
    if current is not None and not mf.is_managed(current):
        raise _not_ours(DEPLOYMENT, spec)
    if current_svc is not None and not mf.is_managed(current_svc):
        raise _not_ours("Service", spec)
    desired = mf.deployment(spec)
    if current is None:
        owner = client.create(desired)
        action = "created"
    else:
        owner = _replace(client, desired, current)
        action = "updated"
    service = mf.service(spec, owner)
    try:
        if current_svc is None:
            client.create(service)
        else:
            _replace(client, service, current_svc)
    except CellshipError:
        if action == "created":  # no half deployments: the Service failed, take it all back
            client.delete(DEPLOYMENT, spec.namespace, spec.name)
        raise
    return action, owner


def _apply_inference_service(client: KubeAPI, spec: DeploySpec) -> tuple[str, dict[str, Any]]:
    current = _get(client, ISVC, spec.namespace, spec.name)
    if current is not None and not mf.is_managed(current):
        raise _not_ours(ISVC, spec)
    desired = mf.inference_service(spec)
    if current is None:
        return "created", client.create(desired)
    return "updated", _replace(client, desired, current)


def _kserve_url(isvc: Mapping[str, Any]) -> str | None:
    status = isvc.get("status") or {}
    return (status.get("address") or {}).get("url") or status.get("url")


# -- undeploy ----------------------------------------------------------------------------------
def undeploy(name: str, *, namespace: str | None = None, context: str | None = None,
             wait: bool = True, timeout: float = 120.0, client: KubeAPI | None = None,
             poll: float = 0.5) -> UndeployResult:
    """Delete the served model ``name`` (its Deployment, whose Service and pods the garbage
    collector removes, or its InferenceService), with foreground propagation; with
    ``wait``, return once no pod of it is left (``poll``: how long pods are still waited
    for when the object itself outlived ``timeout``)."""
    client = client or kube_client.connect(context)
    ns = client.namespace(namespace)
    kind, obj = DEPLOYMENT, _get(client, DEPLOYMENT, ns, name)
    if obj is None and _has_kserve(client, ns):
        kind, obj = ISVC, _get(client, ISVC, ns, name)
    if obj is None:
        raise DeploymentNotFound(_not_found_message(client, name, ns))
    if not mf.is_managed(obj):
        raise DeployError(f"{kind} {name} in namespace {ns} was not made by cellship, and "
                          "cellship deletes only what it made: delete it with `kubectl delete "
                          f"{kind.lower()} -n {ns} {name}` if you mean to.")
    try:
        client.delete(kind, ns, name, propagation="Foreground")
    except KubernetesNotFound:
        pass  # deleted meanwhile: the outcome asked for
    if kind == DEPLOYMENT:
        _delete_orphan_service(client, ns, name)
    if not wait:
        return UndeployResult(name, ns, kind, waited=False)
    selector = mf.selector(name) if kind == DEPLOYMENT else f"{mf.KSERVE_POD_LABEL}={name}"
    gone = wait_gone(client, kind, ns, name, timeout)
    left = wait_pods_gone(client, ns, selector, timeout if gone else poll)
    if not gone or left:
        raise DeployTimeout(f"{kind} {name} is being deleted from namespace {ns}, but after "
                            f"{timeout:g} s {left} pod(s) were still stopping. They go on "
                            f"their own; watch with `kubectl get pods -n {ns} -l {selector}`.")
    return UndeployResult(name, ns, kind, waited=True)


def _delete_orphan_service(client: KubeAPI, namespace: str, name: str) -> None:
    """The Service goes with its owner; one left from an orphaning delete goes here."""
    svc = _get(client, "Service", namespace, name)
    if svc is not None and mf.is_managed(svc) and not svc["metadata"].get("ownerReferences"):
        try:
            client.delete("Service", namespace, name)
        except KubernetesNotFound:
            pass


def _not_found_message(client: KubeAPI, name: str, namespace: str) -> str:
    try:
        names = [d.name for d in deployments(namespace=namespace, client=client)]
    except CellshipError:
        names = []
    there = (f"Deployments there: {', '.join(names)}." if names
             else "cellship has no deployment there.")
    return (f"No cellship deployment named {name!r} in namespace {namespace}. {there} "
            "Pick the namespace with -n/--namespace, or list them with `cellship deployments`.")


# -- deployments -------------------------------------------------------------------------------
def deployments(*, namespace: str | None = None, context: str | None = None,
                client: KubeAPI | None = None) -> list[DeploymentInfo]:
    """The cellship-managed served models of a namespace, by name."""
    client = client or kube_client.connect(context)
    ns = client.namespace(namespace)
    selector = MANAGED_SELECTOR
    out = [_info(DEPLOYMENT, d, deployment_state(d).ready, int(d.get("spec", {}).get("replicas", 1)))
           for d in client.list(DEPLOYMENT, ns, selector) if mf.is_managed(d)]
    if _has_kserve(client, ns):
        for isvc in client.list(ISVC, ns, selector):
            if not mf.is_managed(isvc):
                continue
            pods = live_pods(client, ns, f"{mf.KSERVE_POD_LABEL}={isvc['metadata']['name']}")
            desired = int(isvc.get("spec", {}).get("predictor", {}).get("minReplicas") or 1)
            out.append(_info(ISVC, isvc, sum(is_ready(p) for p in pods), desired))
    return sorted(out, key=lambda d: d.name)


def _info(kind: str, obj: Mapping[str, Any], ready: int, desired: int) -> DeploymentInfo:
    meta = obj.get("metadata", {})
    notes = meta.get("annotations") or {}
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if kind == DEPLOYMENT else spec.get("predictor", {})
    image = ((pod.get("containers") or [{}])[0]).get("image", "")
    port = notes.get(mf.ANNOTATION_PORT, str(PORT))
    return DeploymentInfo(name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                          kind=kind, image=image,
                          model_name=notes.get(mf.ANNOTATION_MODEL, ""),
                          port=int(port) if port.isdigit() else PORT, desired=desired,
                          ready=ready, created=str(meta.get("creationTimestamp") or ""),
                          user=(meta.get("labels") or {}).get(USER_LABEL))


def table(items: Sequence[DeploymentInfo]) -> str:
    """``cellship deployments``'s table."""
    if not items:
        return "no deployments: `cellship deploy IMAGE --name NAME` makes one"
    rows = [("NAME", "KIND", "READY", "MODEL", "IMAGE", "URL")]
    rows += [(d.name, d.kind, f"{d.ready}/{d.desired}", d.model_name, d.image, d.url) for d in items]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


__all__ = ["deploy", "undeploy", "deployments", "DeployResult", "DeploymentInfo",
           "UndeployResult", "table"]
