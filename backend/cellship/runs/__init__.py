"""Batch runs: papermill executions of a notebook, one per parameter set (grids, sweeps),
each with its own kernel, recorded in the job store.

- :mod:`.api`          ``cellship.batch()`` / ``batches()`` / ``Batch``: the public API
- :mod:`.params`       parameters and grids -> the runs' parameter sets
- :mod:`.notebook`     checks on the input notebook (parameters cell, kernel)
- :mod:`.coordinator`  the detached process that runs a batch's runs, ``--parallel`` at a time
- :mod:`.executors`    where a run executes (the ``cellship.executors`` entry points)
- :mod:`.executor_base` the RunExecutor base class
- :mod:`.runner`       one local run: papermill in a child process
- :mod:`.scraps`       ``cellship.record()``: values a run hands back
- :mod:`.kubernetes`   runs as batch/v1 Jobs (papermill in the pod)

Named ``runs`` (not ``batch``) so that ``cellship.batch(...)`` stays the public function:
a subpackage of that name would replace it as soon as it is imported.
Rules: never imports IPython, :mod:`cellship.cli` or :mod:`cellship.jupyter`.
"""
