"""What all of cellship's Kubernetes code shares; the features' own code lives with them
(:mod:`cellship.train.kubernetes`, :mod:`cellship.runs.kubernetes`, :mod:`cellship.deployment`).

* :mod:`.api` - the interface of the one client (the real one and the tests' fake);
* :mod:`.client` - the ONE client: every API call through one gate, typed errors, the one
  factory (:func:`~.client.connect`) and cache of clients; a kubeconfig context, or in a
  pod its ServiceAccount (token re-read as the kubelet rotates it);
* :mod:`.kinds` - the kinds cellship touches, as data (group, version, plural, RBAC name);
* :mod:`.waiting` - waiting with watch streams (gone, changed, any condition);
* :mod:`.podspec` - the one pod-spec builder (security context, scheduling, resources, volumes);
* :mod:`.meta` - the managed-by and user labels, and ownerReferences;
* :mod:`.rbac` - the least Role cellship needs, every verb with its reason (``cellship rbac``);
* :mod:`.names` - job names -> object names and label values Kubernetes accepts;
* :mod:`.options` - the ``kubernetes`` options of a job (namespace, image, ...);
* :mod:`.flags` - the Kubernetes flags -> options, environment defaults;
* :mod:`.diagnose` - pod status + events -> why a pod cannot start, in plain words;
* :mod:`.errors` - the typed errors (403 is not 404).

Must never import a feature (train, runs, deployment, serve, watch): they build on this,
not the other way round (an import contract checks it). Only :mod:`.client` imports the
``kubernetes`` package, so everything else works (and is tested) without it.
"""
