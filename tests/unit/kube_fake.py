"""An in-memory stand-in for cellship.kube.client.KubeClient: only the methods the
backend calls, with the API server's habits that matter here (uids, 409 on duplicates,
404 on missing objects, ownerReference garbage collection on delete)."""

from __future__ import annotations

import copy
import itertools
from typing import Any, Iterator, Mapping

from cellship.kube.errors import KubernetesConflict, KubernetesError, KubernetesNotFound


class FakeKube:
    default_namespace = "default"

    def __init__(self, tfjob_crd: bool = False) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple] = []
        self.logs: dict[str, list[str]] = {}
        self.events_by_pod: dict[str, list[dict]] = {}
        self.fail_on: dict[tuple[str, str], KubernetesError] = {}
        self.tfjob_crd = tfjob_crd
        self._uids = itertools.count(1)

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        kind, meta = body["kind"], body["metadata"]
        self.calls.append(("create", kind, meta["name"]))
        if ("create", kind) in self.fail_on:
            raise self.fail_on[("create", kind)]
        key = (kind, meta["namespace"], meta["name"])
        if key in self.objects:
            raise KubernetesConflict(f"{kind} {meta['name']} exists", 409)
        obj = copy.deepcopy(dict(body))
        n = next(self._uids)
        obj["metadata"]["uid"] = f"uid-{n}"
        # Strictly increasing, so "newest first" is testable without sleeping.
        obj["metadata"]["creationTimestamp"] = f"2026-11-25T15:{n // 60 % 60:02d}:{n % 60:02d}Z"
        if kind == "Pod":
            obj["status"] = {"phase": "Pending"}
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(kind, namespace, name)])
        except KeyError:
            raise KubernetesNotFound(f"{kind} {name} not found", 404) from None

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground") -> None:
        self.calls.append(("delete", kind, name, propagation))
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is None:
            raise KubernetesNotFound(f"{kind} {name} not found", 404)
        uid = obj["metadata"]["uid"]
        for key, dep in list(self.objects.items()):  # the garbage collector, synchronously
            if any(r["uid"] == uid for r in dep["metadata"].get("ownerReferences", [])):
                self.delete(key[0], key[1], key[2], propagation)

    def list(self, kind: str, namespace: str | None, label_selector: str) -> list[dict[str, Any]]:
        """namespace None: every namespace (as the real client's *_for_all_namespaces)."""
        self.calls.append(("list", kind, namespace))
        if ("list", kind) in self.fail_on:
            raise self.fail_on[("list", kind)]
        if kind == "TFJob" and not self.tfjob_crd:
            raise KubernetesNotFound("the server could not find the requested resource", 404)
        want = dict(part.split("=", 1) for part in label_selector.split(","))
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                if k == kind and (namespace is None or ns == namespace)
                and all(o["metadata"].get("labels", {}).get(a) == b for a, b in want.items())]

    def events(self, namespace: str, pod_name: str) -> list[dict[str, Any]]:
        return list(self.events_by_pod.get(pod_name, []))

    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False) -> Iterator[str]:
        """Lines of ``self.logs[name]``; an item that is an exception breaks the stream
        there (the next call starts from the beginning again, as the API does)."""
        self.calls.append(("log", name, follow))
        if ("Pod", namespace, name) not in self.objects:
            raise KubernetesNotFound(f"pod {name} not found", 404)
        for i, line in enumerate(self.logs.get(name, [])):
            if isinstance(line, Exception):
                self.logs[name] = [x for x in self.logs[name] if x is not line]
                raise line
            yield f"2026-11-25T15:00:{i:02d}.5Z {line}" if timestamps else line

    def has_tfjob_crd(self) -> bool:
        return self.tfjob_crd

    # -- deploy (cellship.kube.deploy_client.DeployKube's extra methods) ----------------------
    crds: frozenset[str] | set[str] = frozenset()  # e.g. {"inferenceservices.serving.kserve.io"}

    def replace(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: 404 when missing, 409 when ``metadata.resourceVersion`` is stale; keeps the
        uid and the status, bumps resourceVersion and (when set) generation."""
        kind, meta = body["kind"], body["metadata"]
        self.calls.append(("replace", kind, meta["name"]))
        if ("replace", kind) in self.fail_on:
            raise self.fail_on[("replace", kind)]
        key = (kind, meta["namespace"], meta["name"])
        current = self.objects.get(key)
        if current is None:
            raise KubernetesNotFound(f"{kind} {meta['name']} not found", 404)
        have = current["metadata"].get("resourceVersion")
        want = meta.get("resourceVersion")
        if have is not None and want is not None and want != have:
            raise KubernetesConflict(f"{kind} {meta['name']} changed meanwhile", 409)
        obj = copy.deepcopy(dict(body))
        obj["metadata"]["uid"] = current["metadata"]["uid"]
        obj["metadata"]["resourceVersion"] = str(int(have or 1) + 1)
        if "generation" in current["metadata"]:
            obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if "status" in current:
            obj["status"] = current["status"]
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def has_crd(self, group: str, version: str, plural: str, namespace: str | None = None) -> bool:
        return f"{plural}.{group}" in self.crds

    def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, namespace, name)]["status"] = status

    # -- test helpers --------------------------------------------------------------------
    def set_pod(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[("Pod", namespace, name)]["status"] = status

    def add(self, body: Mapping[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create an object behind the test's back (another machine's job, an operator's
        pod), without recording it among the calls."""
        obj = self.create(body)
        self.calls.pop()
        if status is not None:
            self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])][
                "status"] = status
        return obj


class FakeKubeWithJobs(FakeKube):
    """FakeKube plus what batch runs use: batch/v1 Jobs with a Job controller that makes
    each Job's pod at once (owned by it, labelled ``job-name``, Pending), a kubelet that
    "runs" it once a ConfigMap owned by the Job exists (``pod_script(job, config_map)``
    returns the pod's status and log lines), events of any object, and a lock, since each
    run's watcher thread calls it while the coordinator starts other runs."""

    def __init__(self, pod_script: Any = None) -> None:
        import threading

        super().__init__()
        self.lock = threading.RLock()
        self.pod_script = pod_script
        self.object_events_by_name: dict[tuple[str, str], list[dict]] = {}

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            created = super().create(body)
            meta = created["metadata"]
            if body["kind"] == "Job":
                self.objects[("Job", meta["namespace"], meta["name"])]["status"] = {}
                created["status"] = {}
                self.add_job_pod(created, {"phase": "Pending"})
            owners = [r for r in meta.get("ownerReferences", []) if r.get("kind") == "Job"]
            if body["kind"] == "ConfigMap" and owners and self.pod_script is not None:
                job = self.objects[("Job", meta["namespace"], owners[0]["name"])]
                for pod in self.list("Pod", meta["namespace"], f"job-name={owners[0]['name']}"):
                    status, logs = self.pod_script(copy.deepcopy(job), copy.deepcopy(created))
                    key = ("Pod", meta["namespace"], pod["metadata"]["name"])
                    if key in self.objects:  # the script may have removed it (a deadline)
                        self.objects[key]["status"] = status
                        self.logs[pod["metadata"]["name"]] = list(logs)
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
            self.objects[("Pod", meta["namespace"], name)] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels,
                             "uid": f"uid-{next(self._uids)}", "ownerReferences": [owner],
                             "creationTimestamp": "2026-11-25T15:00:00Z"},
                "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                "status": copy.deepcopy(status)}
            self.logs[name] = list(logs or [])
            return name

    def set_job_condition(self, namespace: str, name: str, kind: str, reason: str,
                          message: str = "") -> None:
        with self.lock:
            status = self.objects[("Job", namespace, name)].setdefault("status", {})
            status.setdefault("conditions", []).append(
                {"type": kind, "status": "True", "reason": reason, "message": message})

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return super().get(kind, namespace, name)

    def delete(self, kind: str, namespace: str, name: str, propagation: str = "Foreground",
               grace_seconds: int | None = None) -> None:
        with self.lock:
            if grace_seconds is not None:
                self.calls.append(("grace", kind, name, grace_seconds))
            super().delete(kind, namespace, name, propagation)

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        with self.lock:
            return super().list(kind, namespace, label_selector)

    def events(self, namespace: str, pod_name: str) -> list[dict[str, Any]]:
        with self.lock:
            return super().events(namespace, pod_name)

    def object_events(self, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.object_events_by_name.get((kind, name), []))

    def pod_log(self, namespace: str, name: str, follow: bool = False,
                timestamps: bool = False) -> Iterator[str]:
        with self.lock:
            return iter(list(super().pod_log(namespace, name, follow, timestamps)))

    def names(self, kind: str) -> list[str]:
        with self.lock:
            return sorted(n for (k, _, n) in self.objects if k == kind)
