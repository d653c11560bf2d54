"""An in-memory stand-in for cellship.k8s.client.KubeClient: only the methods the
backend calls, with the API server's habits that matter here (uids, 409 on duplicates,
404 on missing objects, ownerReference garbage collection on delete)."""

from __future__ import annotations

import copy
import itertools
from typing import Any, Iterator, Mapping

from cellship.k8s.errors import KubernetesConflict, KubernetesError, KubernetesNotFound


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
        obj["metadata"]["uid"] = f"uid-{next(self._uids)}"
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

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        want = dict(part.split("=", 1) for part in label_selector.split(","))
        return [copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
                if k == kind and ns == namespace
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

    # -- test helpers --------------------------------------------------------------------
    def set_pod(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[("Pod", namespace, name)]["status"] = status
