"""Talking to one pod's server: the canary's smoke test, comparison and /metrics window.

Two ways to reach a pod's port:

* ``proxy`` (the default): the API server's pod proxy,
  ``/api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH``, sent with the kube client's own
  connection (its TLS, token or client certificate, from the kubeconfig), so it works from
  anywhere the cluster's API works: a laptop, a CI runner, a pod. RBAC calls it
  ``pods/proxy``.
* ``direct``: ``http://POD_IP:PORT/PATH``, for networks where pod IPs route from here and
  the API server may not proxy (a stricter RBAC).

The canary's requests go to the canary pods themselves, never through the model's
Service (which would send most of them to the serving version), and its figures come from
each canary pod's own /metrics (:mod:`cellship.release.canary`'s reading of the server's
counters and latency histogram), taken before and after the window: the difference counts
every request those pods answered meanwhile, the canary's own and the users' share.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Mapping, Sequence

from cellship.errors import ReleaseError
from cellship.kube.api import KubeAPI

REACH = ("proxy", "direct")


class PodHTTP:
    """HTTP to pods of one namespace (see the module docstring for ``how``)."""

    def __init__(self, client: KubeAPI, namespace: str, how: str = "proxy",
                 timeout: float = 30.0) -> None:
        if how not in REACH:
            raise ReleaseError(f"Unknown way to reach pods {how!r}: use proxy or direct.", "canary")
        self.client, self.namespace, self.how, self.timeout = client, namespace, how, timeout
        self.api = getattr(client, "api_client", None)  # the real client's connection
        if how == "proxy" and self.api is None:
            self.how = "direct"  # a client without an API connection of its own (tests)

    def request(self, pod: Mapping[str, Any], port: int, method: str, path: str,
                body: Mapping[str, Any] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request to ``pod``'s ``port``; status 0 when it could not
        be sent (the reason is the body)."""
        data = None if body is None else json.dumps(body).encode()
        if self.how == "proxy":
            return self._proxied(pod["metadata"]["name"], port, method, path, data)
        url = f"http://{pod['status']['podIP']}:{port}{path}"
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError as err:
            return 0, str(err).encode()

    def _proxied(self, name: str, port: int, method: str, path: str,
                 data: bytes | None) -> tuple[int, bytes]:
        from urllib3.exceptions import HTTPError

        assert self.api is not None
        resource = f"/api/v1/namespaces/{self.namespace}/pods/{name}:{port}/proxy{path}"
        try:
            request = self.api.param_serialize(
                method=method, resource_path=resource,
                header_params={"Content-Type": "application/json", "Accept": "*/*"},
                body=json.loads(data) if data is not None else None,
                auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=self.timeout)
            return int(response.status), response.read() or b""
        except (HTTPError, OSError) as err:
            return 0, str(err).encode()

    def post_json(self, pod: Mapping[str, Any], port: int, path: str,
                  body: Mapping[str, Any]) -> tuple[int, Any]:
        status, raw = self.request(pod, port, "POST", path, body)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"error": raw.decode(errors="replace")[:300]}

    def metrics(self, pod: Mapping[str, Any], port: int) -> str:
        status, raw = self.request(pod, port, "GET", "/metrics")
        if status != 200:
            raise ReleaseError(f"Could not read /metrics of pod {pod['metadata']['name']} "
                               f"(answer {status or 'none'}: "
                               f"{raw.decode(errors='replace')[:200]}).", "canary")
        return raw.decode(errors="replace")


def said(answer: Any) -> Any:
    """The error of a failed answer, for a sentence."""
    return answer.get("error", answer) if isinstance(answer, dict) else answer


def window(http: PodHTTP, pods: Sequence[Mapping[str, Any]], port: int, path: str,
           example: Mapping[str, Any], seconds: float) -> int:
    """Send ``example`` to ``pods`` in turn for ``seconds``; how many were sent."""
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        http.request(pods[sent % len(pods)], port, "POST", path, example)
        sent += 1
    return sent
