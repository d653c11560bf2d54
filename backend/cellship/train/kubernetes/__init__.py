"""The ``kubernetes`` training backend: a job's replicas as pods (or a Kubeflow TFJob).

- :mod:`.backend`   KubernetesBackend: launch with rollback, follow logs and states, cancel
- :mod:`.manifests` pure functions: JobSpec + Program + options -> object dicts
- :mod:`.pods`      pure readers of pod dicts: the program's phase, run times, replica keys,
                    a job's status from its pods, the GPU shortfall behind an unschedulable pod
- :mod:`.artifacts` a job's files home: from which pod and container, which folders, the copy
- :mod:`.files`     when the files come home and what follows (release, the chief's bounded
                    linger), the live TensorBoard mirror of a running job's logdir
- :mod:`.dryrun`    ``--dry-run``: the objects that would be created, as YAML
- :mod:`.listing`   ``cellship jobs --backend kubernetes``: the cluster's jobs by label

What all Kubernetes code shares (the one client, errors, names, flags, diagnosis, the pod
spec) lives in :mod:`cellship.kube`.
"""
