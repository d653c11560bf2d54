"""What runs INSIDE a job's replicas and pods, before and beside the user's code.

- :mod:`.job`           the helpers users call (``cellship.job.is_chief()``, ``save()``, ...)
- :mod:`.bootstrap`     the first lines every replica runs (shipped values, PS servers, relay)
- :mod:`.relay`         the metric relay's wire format (writer here, reader in ``watch``)
- :mod:`.eventfile`     reading TensorBoard event files as they grow, without TensorFlow
- :mod:`.pod_bootstrap` a training pod's entry: waits for its peers' DNS names
- :mod:`.podrun`        a batch run's pod: papermill, then the notebook home through the log

Rules: standard library only at module level (pods promise Python + TensorFlow, nothing
more; the shim ships these files as they are); never import pandas, matplotlib, IPython or
TensorFlow of its own, nor any other cellship package but :mod:`cellship.errors`.
"""
