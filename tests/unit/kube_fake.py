"""An in-memory stand-in for cellship's one Kubernetes client (:class:`cellship.kube.api.KubeAPI`).

It implements exactly the client's interface (tests/unit/kube/test_fake_conformance.py
compares the signatures), with the API server's habits that matter here: uids and
resourceVersions, 409 on duplicates and stale replaces, 404 on missing objects and on
custom kinds whose CRD is not installed, ownerReference garbage collection on delete, and
watches fed by every change made through it. What is public beyond the interface is listed
in :data:`HELPERS`: the test's own hands on the "cluster" (a kubelet, a controller).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Mapping, Sequence

from cellship.kube import kinds
from cellship.kube.api import ADDED, DELETED, MODIFIED, KubeAPI, Obj, ObjList, initial_events_end
from cellship.kube.client import translate
from cellship.kube.errors import KubernetesConflict, KubernetesError, KubernetesNotFound
from cellship.kube.podspec import CONTAINER

Key = tuple[str, str, str]  # (kind, namespace, name)

# The fake's public names that are not the client's: what tests use to play the cluster.
HELPERS = frozenset({"set_pod", "set_status", "set_events", "add", "names", "add_job_pod",
                     "set_job_condition", "set_exec", "deny"})

# What RBAC calls each of the fake's calls (the real client's verbs): method -> verb.
RBAC_VERBS = {"create": "create", "get": "get", "list": "list", "replace": "update",
              "delete": "delete", "events": "list", "watch": "watch"}


def api_error(status: int, reason: str, message: str, namespace: str | None = None,
              details: dict[str, Any] | None = None) -> Any:
    """What the real client's gate catches: an error with the API server's Status body."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": status}
    if details is not None:
        body["details"] = details
    return SimpleNamespace(status=status, reason=reason, body=json.dumps(body))


def _matches(obj: Mapping[str, Any], selector: str) -> bool:
    want = dict(part.split("=", 1) for part in selector.split(",") if part)
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())


class FakeKube(KubeAPI):
    default_namespace = "default"

    def __init__(self, tfjob_crd: bool = False) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: list[tuple] = []
        self.logs: dict[str, list[Any]] = {}
        self.event_lists: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.fail_on: dict[tuple[str, str], KubernetesError] = {}
        # Installed custom resources by RBAC name, e.g. "inferenceservices.serving.kserve.io".
        self.crds: set[str] = {kinds.TFJOB.resource} if tfjob_crd else set()
        self.lock = threading.Condition(threading.RLock())  # watcher threads call in too
        self.changes: list[tuple[str, dict[str, Any]]] = []
        self._uids = itertools.count(1)
        self._versions = itertools.count(1)
        self.exec_handler: Callable[..., Iterator[bytes]] | None = None
        # The namespaces that exist (None: every one); RBAC refusals (verb, resource).
        self.namespaces: set[str] | None = None
        self.denied: set[tuple[str, str]] = set()

    # -- the API server's bookkeeping ---------------------------------------------------------
    def _refuse(self, verb: str, resource: str, namespace: str | None, name: str | None) -> None:
        """403 as RBAC says it, through the real client's own translation."""
        if (verb, resource) in self.denied:
            where = f' in the namespace "{namespace}"' if namespace else ""
            raise translate(api_error(403, "Forbidden", f'{resource} is forbidden: User '
                                      f'"system:serviceaccount:fake:cellship" cannot {verb} '
                                      f'resource "{resource}"{where}'),
                            verb, resource, namespace, name)

    def _missing(self, verb: str, kind: str, namespace: str | None, name: str) -> KubernetesError:
        resource = kinds.of(kind).resource
        return translate(api_error(404, "NotFound", f'{resource} "{name}" not found',
                                   details={"name": name, "kind": kinds.of(kind).plural}),
                         verb, resource, namespace, name)

    def _fail(self, verb: str, kind: str, namespace: str | None = None,
              name: str | None = None) -> None:
        if (verb, kind) in self.fail_on:
            raise self.fail_on[(verb, kind)]
        if verb in RBAC_VERBS:
            resource = kinds.EVENT.resource if verb == "events" else kinds.of(kind).resource
            self._refuse(RBAC_VERBS[verb], resource, namespace, name)
        if kind in kinds.CUSTOM and kinds.of(kind).resource not in self.crds:
            raise KubernetesNotFound("the server could not find the requested resource", 404)

    def _put(self, key: Key, obj: dict[str, Any], change: str) -> dict[str, Any]:
        """Store ``obj`` under ``key`` with a new resourceVersion; watchers see it."""
        with self.lock:
            obj["metadata"]["resourceVersion"] = str(next(self._versions))
            self.objects[key] = obj
            self.changes.append((change, copy.deepcopy(obj)))
            self.lock.notify_all()
            return copy.deepcopy(obj)

    def _drop(self, key: Key) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.pop(key, None)
            if obj is not None:
                self.changes.append((DELETED, copy.deepcopy(obj)))
                self.lock.notify_all()
            return obj

    # -- the interface --------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> Obj:
        kind, meta = body["kind"], body["metadata"]
        with self.lock:
            self.calls.append(("create", kind, meta["name"]))
            self._fail("create", kind, meta.get("namespace"), meta["name"])
            ns = meta.get("namespace")
            if self.namespaces is not None and ns is not None and ns not in self.namespaces:
                raise translate(api_error(404, "NotFound", f'namespaces "{ns}" not found',
                                          details={"name": ns, "kind": "namespaces"}),
                                "create", kinds.of(kind).resource, ns, meta["name"])
            key = (kind, meta.get("namespace", ""), meta["name"])  # a Node has none
            if key in self.objects:
                raise KubernetesConflict(f"{kind} {meta['name']} exists", 409)
            obj = copy.deepcopy(dict(body))
            n = next(self._uids)
            obj["metadata"]["uid"] = f"uid-{n}"
            # Strictly increasing, so "newest first" is testable without sleeping.
            obj["metadata"]["creationTimestamp"] = f"2026-11-25T15:{n // 60 % 60:02d}:{n % 60:02d}Z"
            if kind == "Pod":
                obj["status"] = {"phase": "Pending"}
            return self._put(key, obj, ADDED)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        with self.lock:
            self._fail("get", kind, namespace, name)
            try:
                return copy.deepcopy(self.objects[(kind, namespace, name)])
            except KeyError:
                raise self._missing("get", kind, namespace, name) from None

    def list(self, kind: str, namespace: str | None, label_selector: str = "") -> ObjList:
        """namespace None: every namespace (as the real client's cluster-wide list)."""
        with self.lock:
            self.calls.append(("list", kind, namespace))
            self._fail("list", kind, namespace)
            return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                    if k == kind and (namespace is None or ns == namespace)
                    and _matches(o, label_selector)]

    def replace(self, body: Mapping[str, Any]) -> Obj:
        """PUT: 404 when missing, 409 when ``metadata.resourceVersion`` is stale; keeps the
        uid and the status, bumps resourceVersion and (when set) generation."""
        kind, meta = body["kind"], body["metadata"]
        with self.lock:
            self.calls.append(("replace", kind, meta["name"]))
            self._fail("replace", kind, meta["namespace"], meta["name"])
            key = (kind, meta["namespace"], meta["name"])
            current = self.objects.get(key)
            if current is None:
                raise self._missing("update", kind, meta["namespace"], meta["name"])
            have = current["metadata"].get("resourceVersion")
            want = meta.get("resourceVersion")
            if have is not None and want is not None and want != have:
                raise KubernetesConflict(f"{kind} {meta['name']} changed meanwhile", 409)
            obj = copy.deepcopy(dict(body))
            for field in ("uid", "creationTimestamp"):
                obj["metadata"][field] = current["metadata"][field]
            if "generation" in current["metadata"]:
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
            if "status" in current:
                obj["status"] = current["status"]
            return self._put(key, obj, MODIFIED)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground",
               grace_seconds: int | None = None) -> None:
        with self.lock:
            self.calls.append(("delete", kind, name, propagation))
            if grace_seconds is not None:
                self.calls.append(("grace", kind, name, grace_seconds))
            self._fail("delete", kind, namespace, name)
            obj = self._drop((kind, namespace, name))
            if obj is None:
                raise self._missing("delete", kind, namespace, name)
            uid = obj["metadata"]["uid"]
            for key, dep in list(self.objects.items()):  # the garbage collector, synchronously
                if any(r["uid"] == uid for r in dep["metadata"].get("ownerReferences", [])):
                    self.delete(key[0], key[1], key[2], propagation)

    def events(self, kind: str, namespace: str, name: str) -> ObjList:
        with self.lock:
            self._fail("events", kind, namespace)
            return copy.deepcopy(self.event_lists.get((kind, name), []))

    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False, container: str = CONTAINER) -> Iterator[str]:
        """Lines of ``self.logs[name]``; an item that is an exception breaks the stream
        there (the next call starts from the beginning again, as the API does)."""
        with self.lock:
            self.calls.append(("log", name, follow))
            self._refuse("get", "pods/log", namespace, name)
            if ("Pod", namespace, name) not in self.objects:
                raise KubernetesNotFound(f"pod {name} not found", 404)
            lines: list[str] = []
            broken: Exception | None = None
            for i, line in enumerate(self.logs.get(name, [])):
                if isinstance(line, Exception):
                    self.logs[name] = [x for x in self.logs[name] if x is not line]
                    broken = line
                    break
                lines.append(f"2026-11-25T15:00:{i:02d}.5Z {line}" if timestamps else line)
        yield from lines
        if broken is not None:
            raise broken

    def watch(self, kind: str, namespace: str | None, *, name: str | None = None,
              label_selector: str = "", timeout: float = 60.0) -> Iterator[Obj]:
        def wanted(obj: Mapping[str, Any]) -> bool:
            meta = obj["metadata"]
            return (obj.get("kind") == kind and (namespace is None or meta["namespace"] == namespace)
                    and (name is None or meta["name"] == name) and _matches(obj, label_selector))

        end = time.monotonic() + timeout
        with self.lock:
            self.calls.append(("watch", kind, namespace))
            self._fail("watch", kind, namespace)
            now = [copy.deepcopy(o) for o in self.objects.values() if wanted(o)]
            seen = len(self.changes)
        for obj in now:
            yield {"type": ADDED, "object": obj}
        yield initial_events_end(str(seen))
        while True:
            with self.lock:
                while seen == len(self.changes):
                    left = end - time.monotonic()
                    if left <= 0:
                        return
                    self.lock.wait(left)
                new, seen = self.changes[seen:], len(self.changes)
            for change, obj in new:
                if wanted(obj):
                    yield {"type": change, "object": copy.deepcopy(obj)}

    def exec(self, namespace: str, name: str, command: Sequence[str],
             container: str = CONTAINER, timeout: float = 60.0) -> Iterator[bytes]:
        """What the test's :meth:`set_exec` handler yields for ``command``."""
        with self.lock:
            self.calls.append(("exec", name, container, command[-2] if len(command) > 1 else ""))
            self._fail("exec", "Pod")
            self._refuse("create", "pods/exec", namespace, name)
            if ("Pod", namespace, name) not in self.objects:
                raise KubernetesNotFound(f"pod {name} not found", 404)
            handler = self.exec_handler
        if handler is None:
            raise KubernetesError(f"exec into {name}: this fake serves no exec (set_exec)")
        yield from handler(namespace, name, list(command), container)

    def has_crd(self, kind: str, namespace: str | None = None) -> bool:
        with self.lock:
            if ("has_crd", kind) in self.fail_on:
                raise self.fail_on[("has_crd", kind)]
            return kind not in kinds.CUSTOM or kinds.of(kind).resource in self.crds

    # -- the test's hands on the cluster ---------------------------------------------------------
    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """What a controller or the kubelet writes (watchers see a MODIFIED)."""
        with self.lock:
            key = (kind, namespace, name)
            self._put(key, copy.deepcopy(self.objects[key]) | {"status": status}, MODIFIED)

    def deny(self, verb: str, resource: str) -> None:
        """RBAC without ``verb`` on ``resource`` (``delete``, ``pods``; ``get``,
        ``pods/log``): those calls are refused with the real client's 403."""
        self.denied.add((verb, resource))

    def set_exec(self, handler: Callable[..., Iterator[bytes]] | None) -> None:
        """``handler(namespace, pod, command, container)`` yields what ``exec`` streams."""
        self.exec_handler = handler

    def set_pod(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.set_status("Pod", namespace, name, status)

    def set_events(self, kind: str, name: str, events: list[dict[str, Any]]) -> None:
        """The Events about an object, as :meth:`events` returns them."""
        with self.lock:
            self.event_lists[(kind, name)] = list(events)

    def add(self, body: Mapping[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create an object behind the test's back (another machine's job, an operator's
        pod), without recording it among the calls."""
        with self.lock:
            obj = self.create(body)
            self.calls.pop()
            if status is not None:
                self.set_status(obj["kind"], obj["metadata"]["namespace"],
                                obj["metadata"]["name"], status)
            return obj

    def names(self, kind: str) -> list[str]:
        with self.lock:
            return sorted(n for (k, _, n) in self.objects if k == kind)


class FakeKubeWithJobs(FakeKube):
    """FakeKube plus what batch runs meet: a Job controller that makes each Job's pod at
    once (owned by it, labelled ``job-name``, Pending) and a kubelet that "runs" it once a
    ConfigMap owned by the Job exists (``pod_script(job, config_map)`` returns the pod's
    status and log lines)."""

    def __init__(self, pod_script: Any = None) -> None:
        super().__init__()
        self.pod_script = pod_script

    def create(self, body: Mapping[str, Any]) -> Obj:
        with self.lock:
            created = super().create(body)
            meta = created["metadata"]
            if body["kind"] == "Job":
                self.set_status("Job", meta["namespace"], meta["name"], {})
                created["status"] = {}
                self.add_job_pod(created, {"phase": "Pending"})
            owners = [r for r in meta.get("ownerReferences", []) if r.get("kind") == "Job"]
            if body["kind"] == "ConfigMap" and owners and self.pod_script is not None:
                job = self.objects[("Job", meta["namespace"], owners[0]["name"])]
                for pod in self.list("Pod", meta["namespace"], f"job-name={owners[0]['name']}"):
                    status, logs = self.pod_script(copy.deepcopy(job), copy.deepcopy(created))
                    key = ("Pod", meta["namespace"], pod["metadata"]["name"])
                    if key in self.objects:  # the script may have removed it (a deadline)
                        self.logs[pod["metadata"]["name"]] = list(logs)
                        self.set_pod(meta["namespace"], pod["metadata"]["name"], status)
            return created

    def add_job_pod(self, job: Mapping[str, Any], status: dict[str, Any],
                    logs: list[Any] | None = None) -> str:
        """The pod the Job controller would make for ``job``; returns its name."""
        with self.lock:
            meta = job["metadata"]
            name = f"{meta['name']}-{next(self._uids):05d}"
            labels = dict(job["spec"]["template"]["metadata"].get("labels", {}))
            labels |= {"job-name": meta["name"], "controller-uid": meta["uid"]}
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
            self.logs[name] = list(logs or [])
            self._put(("Pod", meta["namespace"], name), {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "uid": f"uid-{next(self._uids)}", "ownerReferences": [owner],
                             "creationTimestamp": "2026-11-25T15:00:00Z"},
                "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                "status": copy.deepcopy(status)}, ADDED)
            return name

    def set_job_condition(self, namespace: str, name: str, kind: str, reason: str,
                          message: str = "") -> None:
        with self.lock:
            status = copy.deepcopy(self.objects[("Job", namespace, name)].get("status") or {})
            status.setdefault("conditions", []).append(
                {"type": kind, "status": "True", "reason": reason, "message": message})
            self.set_status("Job", namespace, name, status)


def serve(monkeypatch: Any, fake: FakeKube) -> FakeKube:
    """Make the one client factory (:func:`cellship.kube.client.connect`) hand out
    ``fake``, for every feature at once; returns it."""
    monkeypatch.setattr("cellship.kube.client.connect", lambda context=None: fake)
    return fake
