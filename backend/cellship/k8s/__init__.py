"""Kubernetes plumbing for the ``kubernetes`` backend, one job per module.

* :mod:`.names` - job names -> object names and label values Kubernetes accepts;
* :mod:`.options` - the ``kubernetes`` options of a job (namespace, image, ...);
* :mod:`.manifests` - pure functions: JobSpec + Program + options -> object dicts;
* :mod:`.client` - the ONE place every API call goes through, with typed errors;
* :mod:`.diagnose` - pod status + events -> why a pod cannot start, in plain words;
* :mod:`.errors` - the typed errors (403 is not 404).

Only :mod:`.client` imports the ``kubernetes`` package, so everything else works (and is
tested) without it.
"""
