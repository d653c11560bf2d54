"""TF_CONFIG for every replica of a job.

The layout TensorFlow's cluster resolvers expect: MultiWorkerMirroredStrategy takes a
``worker`` list; ParameterServerStrategy takes ``chief``, ``worker`` and ``ps`` lists. The
same function serves every backend: the local one passes ``127.0.0.1:port`` addresses, the
Kubernetes one stable DNS names.
"""

from __future__ import annotations

import json
from typing import Mapping

from cellship.train.spec import JobSpec, Replica


def cluster_def(spec: JobSpec, addresses: Mapping[Replica, str]) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for replica in spec.replicas():
        cluster.setdefault(replica.type, []).append(addresses[replica])
    return cluster


def tf_config(spec: JobSpec, addresses: Mapping[Replica, str], replica: Replica) -> dict:
    """The TF_CONFIG dict of one replica."""
    missing = [r.label for r in spec.replicas() if r not in addresses]
    if missing:
        raise ValueError(f"no address for replicas {missing}")
    return {"cluster": cluster_def(spec, addresses),
            "task": {"type": replica.type, "index": replica.index}}


def tf_configs(spec: JobSpec, addresses: Mapping[Replica, str]) -> dict[Replica, str]:
    """TF_CONFIG JSON strings for every replica, ready to put in the environment."""
    return {r: json.dumps(tf_config(spec, addresses, r), sort_keys=True) for r in spec.replicas()}
