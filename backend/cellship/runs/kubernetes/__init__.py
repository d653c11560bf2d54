"""Batch runs as Kubernetes batch/v1 Jobs, papermill in the pod.

- :mod:`.manifests` the run's Job and ConfigMap (input notebook, :mod:`cellship.inside.podrun`)
- :mod:`.executor`  KubernetesRunExecutor: create, follow, bring the notebook home, cancel
"""
