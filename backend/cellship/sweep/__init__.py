"""Papermill batch runs and parameter sweeps: one notebook, many parameter sets, each run
its own papermill execution with its own kernel, recorded in the job store.

Named ``sweep`` so that ``cellship.batch(...)`` can be the public function."""
