"""Kubernetes plumbing for the ``kubernetes`` backend, one job per module.

* :mod:`.names` - job names -> object names and label values Kubernetes accepts;
* :mod:`.options` - the ``kubernetes`` options of a job (namespace, image, ...);
* :mod:`.manifests` - pure functions: JobSpec + Program + options -> object dicts;
* :mod:`.client` - the ONE place every API call goes through, with typed errors;
* :mod:`.diagnose` - pod status + events -> why a pod cannot start, in plain words;
* :mod:`.errors` - the typed errors (403 is not 404);
* :mod:`.flags` - the ``%%train``/``cellship train`` flags -> options, environment defaults;
* :mod:`.dryrun` - ``--dry-run``: the objects that would be created, as YAML;
* :mod:`.listing` - ``cellship jobs --backend kubernetes``: cluster jobs found by label;
* :mod:`.batch` - batch runs as batch/v1 Jobs (papermill in the image);
* :mod:`.pod_bootstrap` - the first thing every pod runs: waits for peers' DNS names.

Only :mod:`.client` imports the ``kubernetes`` package, so everything else works (and is
tested) without it.
"""
