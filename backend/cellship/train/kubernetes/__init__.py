"""The ``kubernetes`` training backend: a job's replicas as pods (or a Kubeflow TFJob).

- :mod:`.backend`   KubernetesBackend: launch with rollback, follow logs and states, cancel
- :mod:`.manifests` pure functions: JobSpec + Program + options -> object dicts
- :mod:`.dryrun`    ``--dry-run``: the objects that would be created, as YAML
- :mod:`.listing`   ``cellship jobs --backend kubernetes``: the cluster's jobs by label

What all Kubernetes code shares (the one client, errors, names, flags, diagnosis, the pod
spec) lives in :mod:`cellship.kube`.
"""
