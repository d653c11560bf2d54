"""Training jobs: from a notebook cell to a distributed TensorFlow job and back.

- :mod:`.api`       ``cellship.submit()`` / ``jobs()`` / ``Job``: the public Python API
- :mod:`.spec`      JobSpec: replicas, strategy, resources, durations
- :mod:`.tfconfig`  TF_CONFIG per replica for MultiWorkerMirrored / ParameterServer
- :mod:`.program`   the cell -> a standalone program (what it needs from earlier cells)
- :mod:`.scoping`   which names a cell reads before it binds them
- :mod:`.options`   the options shared by ``%%train`` and ``cellship train``
- :mod:`.backend`   the Backend base class (owns the lifecycle; a backend fills in launch)
- :mod:`.backends`  the backend registry (built-ins plus the ``cellship.backends`` entry points)
- :mod:`.local`     the embedded default: replicas as local processes under a supervisor
- :mod:`.kubernetes` replicas as pods (manifests, launch, follow, listing, dry run)

Rules: never imports IPython, :mod:`cellship.cli` or :mod:`cellship.jupyter`.
"""
