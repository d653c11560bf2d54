"""Releases: a notebook to a served model version in one gated, recorded step, with a
canary, promotion, and rollback by itself when a check fails (``cellship release``,
``cellship releases``, ``cellship rollback``, ``cellship.release(...)``).

- :mod:`.gates`     ``--gate`` expressions: parsing, checking against recorded values
- :mod:`.contract`  serving-signature differences between two versions
- :mod:`.canary`    smoke test, answer comparison, error rate and p99 from /metrics
- :mod:`.targets`   the Target interface and the local model repository target
- :mod:`.kubernetes_target` ``--to kubernetes``: image per version, canary Deployment, promotion
- :mod:`.kube_manifests` its objects and decisions (pure); :mod:`.kube_ops` its cluster calls;
  :mod:`.kserve` the InferenceService variant; :mod:`.pods` requests to one pod (pod proxy)
- :mod:`.records`   who releases; the release history as a table
- :mod:`.pipeline`  the steps in order, the record, the cleanup; rollback
- :mod:`.cigen`     GitHub Actions, GitLab CI and Jenkins definitions of the same release

Why this module is callable: ``cellship.release(...)`` is the public function, and a
subpackage of the same name replaces the package attribute as soon as it is imported (the
reason batch runs live in ``cellship.runs``). Instead of a second name, the package module
itself calls :func:`cellship.release.pipeline.release`, so ``cellship.release(...)``
works whether or not ``cellship.release.pipeline`` was imported before; likewise
``cellship.release.resume(model)``.

Rules: never imports IPython, :mod:`cellship.cli` or :mod:`cellship.jupyter`.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cellship.release.pipeline import release

        return release(*args, **kwargs)


def resume(model: str, **kwargs: Any) -> Any:
    """Finish the interrupted releases of ``model``: :func:`cellship.release.pipeline.resume`."""
    from cellship.release.pipeline import resume as _resume

    return _resume(model, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
